//! `Vpc` (aws.driftless.dev/v1alpha1): an EC2 VPC.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    self as sdk, AttributeBooleanValue, ResourceType, Tenancy, VpcAttributeName,
};
use driftless_provider::{
    managed_resource, CloudError, Created, Deletion, External, FieldDiff, Observation, References,
    Target,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    desired_tags, is_dependency_violation, is_not_found, tag_map, tag_specification, tags_diff,
    waiting_on, Described, Ec2, Ec2Snapshots, Snapshot, PAGE_SIZE,
};
use crate::errors::cloud_error;
use crate::{AwsKind, AwsSession};

/// Where the VPC's instances run by default.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InstanceTenancy {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "dedicated")]
    Dedicated,
}

/// The desired state of a VPC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcParameters {
    /// The IPv4 range, e.g. `10.0.0.0/16` (prefix /16 to /28). Immutable: a
    /// change is refused (Synced False) and nothing is changed.
    #[schemars(length(max = 18))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(1[6-9]|2[0-8])$')",
        "message": "cidrBlock must be an IPv4 CIDR block with a prefix from /16 to /28, e.g. 10.0.0.0/16"
    }]))]
    pub cidr_block: String,
    /// DNS resolution through the Amazon DNS server; unset leaves it alone.
    /// Not part of the batched describe: setting it costs one call per observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_dns_support: Option<bool>,
    /// Public DNS hostnames for instances (needs enableDnsSupport); unset
    /// leaves it alone. Setting it costs one call per observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_dns_hostnames: Option<bool>,
    /// `default` or `dedicated` (unset: `default`, and not compared). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_tenancy: Option<InstanceTenancy>,
    /// Tags of the VPC. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

/// What AWS reports about the VPC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcObservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// `pending` or `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The AWS account that owns the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

managed_resource! {
    /// An EC2 VPC. Its id is recorded in the `driftless.dev/external-name`
    /// annotation; set that annotation by hand to import an existing VPC.
    kind Vpc("Vpc"), spec VpcSpec, status VpcStatus("VpcStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider VpcParameters, at_provider VpcObservation,
}

impl References for VpcParameters {}

impl AwsKind for Vpc {
    fn external(session: &AwsSession, _spec: &VpcParameters) -> Arc<dyn External<Self>> {
        Arc::new(Ec2::new(session))
    }
}

#[async_trait]
impl Described for sdk::Vpc {
    const WHAT: &'static str = "VPC";

    fn state(&self) -> (String, bool) {
        let state = self
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let ready = state == "available";
        (state, ready)
    }

    fn id(&self) -> &str {
        self.vpc_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::Vpc::tags(self)
    }

    fn snapshot(s: &Ec2Snapshots) -> &Snapshot<Self> {
        &s.vpcs
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        ec2.describe_vpcs()
            .set_filters(Some(filters))
            .into_paginator()
            .page_size(PAGE_SIZE)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(cloud_error)
    }

    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError> {
        match ec2.describe_vpcs().vpc_ids(id).send().await {
            Ok(out) => Ok(out.vpcs().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

/// The two DNS flags, which `DescribeVpcs` does not return.
#[derive(Clone, Copy)]
enum Dns {
    Support,
    Hostnames,
}

impl Dns {
    fn field(self) -> &'static str {
        match self {
            Dns::Support => "forProvider.enableDnsSupport",
            Dns::Hostnames => "forProvider.enableDnsHostnames",
        }
    }

    fn desired(self, spec: &VpcParameters) -> Option<bool> {
        match self {
            Dns::Support => spec.enable_dns_support,
            Dns::Hostnames => spec.enable_dns_hostnames,
        }
    }

    async fn get(self, ec2: &Ec2, id: &str) -> Result<Option<bool>, CloudError> {
        let name = match self {
            Dns::Support => VpcAttributeName::EnableDnsSupport,
            Dns::Hostnames => VpcAttributeName::EnableDnsHostnames,
        };
        let out = ec2
            .client
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(name)
            .send()
            .await
            .map_err(cloud_error)?;
        let value = match self {
            Dns::Support => out.enable_dns_support(),
            Dns::Hostnames => out.enable_dns_hostnames(),
        };
        Ok(value.and_then(AttributeBooleanValue::value))
    }

    async fn set(self, ec2: &Ec2, id: &str, value: bool) -> Result<(), CloudError> {
        let v = AttributeBooleanValue::builder().value(value).build();
        let req = ec2.client.modify_vpc_attribute().vpc_id(id);
        // One attribute per call: the API refuses two.
        let req = match self {
            Dns::Support => req.enable_dns_support(v),
            Dns::Hostnames => req.enable_dns_hostnames(v),
        };
        req.send().await.map_err(cloud_error)?;
        Ok(())
    }
}

/// Sets the DNS flags the spec gives, in an order AWS accepts: hostnames
/// need support, so support goes on first and off last.
async fn set_dns(
    ec2: &Ec2,
    id: &str,
    spec: &VpcParameters,
    only: &[&str],
) -> Result<(), CloudError> {
    let order = match spec.enable_dns_support {
        Some(false) => [Dns::Hostnames, Dns::Support],
        _ => [Dns::Support, Dns::Hostnames],
    };
    for dns in order {
        if let Some(want) = dns.desired(spec) {
            if only.is_empty() || only.contains(&dns.field()) {
                dns.set(ec2, id, want).await?;
            }
        }
    }
    Ok(())
}

fn tenancy(t: InstanceTenancy) -> Tenancy {
    match t {
        InstanceTenancy::Default => Tenancy::Default,
        InstanceTenancy::Dedicated => Tenancy::Dedicated,
    }
}

#[async_trait]
impl External<Vpc> for Ec2 {
    async fn list_owned(&self) -> Result<Vec<driftless_provider::Owned>, CloudError> {
        Ec2::list_owned::<sdk::Vpc>(self).await
    }

    async fn observe(
        &self,
        t: &Target<'_, Vpc>,
    ) -> Result<Observation<VpcObservation>, CloudError> {
        let Some(vpc) = self.find::<sdk::Vpc, _>(t).await? else {
            return Ok(Observation::absent());
        };
        let id = vpc.id().to_string();
        let mut diff = Vec::new();
        let cidr = vpc.cidr_block().unwrap_or_default();
        if cidr != t.spec.cidr_block {
            diff.push(
                FieldDiff::new("forProvider.cidrBlock", cidr, &t.spec.cidr_block).immutable(),
            );
        }
        if let Some(want) = t.spec.instance_tenancy.map(tenancy) {
            let have = vpc
                .instance_tenancy()
                .map(Tenancy::as_str)
                .unwrap_or("default");
            if have != want.as_str() {
                diff.push(
                    FieldDiff::new("forProvider.instanceTenancy", have, want.as_str()).immutable(),
                );
            }
        }
        for dns in [Dns::Support, Dns::Hostnames] {
            if let Some(want) = dns.desired(t.spec) {
                let have = dns.get(self, &id).await?;
                if have != Some(want) {
                    diff.push(FieldDiff::new(dns.field(), have, want));
                }
            }
        }
        diff.extend(tags_diff(
            &tag_map(vpc.tags()),
            &desired_tags(t.identity, &t.spec.tags),
        ));
        let state = vpc.state().map(|s| s.as_str().to_string());
        Ok(Observation {
            exists: true,
            external_name: Some(id.clone()),
            diff,
            ready: state.as_deref() == Some("available"),
            at_provider: Some(VpcObservation {
                vpc_id: Some(id.clone()),
                state,
                owner_id: vpc.owner_id().map(str::to_string),
            }),
            connection_details: BTreeMap::from([
                ("vpcId".to_string(), id),
                ("cidrBlock".to_string(), cidr.to_string()),
            ]),
        })
    }

    async fn create(&self, t: &Target<'_, Vpc>) -> Result<Created, CloudError> {
        let tags = desired_tags(t.identity, &t.spec.tags);
        let out = self
            .client
            .create_vpc()
            .cidr_block(&t.spec.cidr_block)
            .set_instance_tenancy(t.spec.instance_tenancy.map(tenancy))
            .tag_specifications(tag_specification(ResourceType::Vpc, &tags))
            .send()
            .await
            .map_err(cloud_error)?;
        let id = out
            .vpc()
            .and_then(sdk::Vpc::vpc_id)
            .ok_or_else(|| {
                CloudError::retryable("InvalidResponse", "CreateVpc returned no VPC id")
            })?
            .to_string();
        let _written = self.created::<sdk::Vpc>(t.identity, &id);
        set_dns(self, &id, t.spec, &[]).await?;
        Ok(Created { external_name: id })
    }

    async fn update(
        &self,
        t: &Target<'_, Vpc>,
        observed: &Observation<VpcObservation>,
    ) -> Result<(), CloudError> {
        let Some(vpc) = self.find::<sdk::Vpc, _>(t).await? else {
            return Ok(()); // gone since observe: the next observe creates it
        };
        let id = vpc.id();
        let _written = self.writing::<sdk::Vpc>(id);
        let fields: Vec<&str> = observed.diff.iter().map(|d| d.field.as_str()).collect();
        let dns: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| f.contains("Dns"))
            .collect();
        if !dns.is_empty() {
            set_dns(self, id, t.spec, &dns).await?;
        }
        if fields.contains(&"forProvider.tags") {
            self.sync_tags(
                id,
                &tag_map(vpc.tags()),
                &desired_tags(t.identity, &t.spec.tags),
            )
            .await?;
        }
        Ok(())
    }

    async fn delete(&self, t: &Target<'_, Vpc>) -> Result<Deletion, CloudError> {
        let Some(vpc) = self.find::<sdk::Vpc, _>(t).await? else {
            return Ok(Deletion::Done);
        };
        let id = vpc.id();
        let _written = self.writing::<sdk::Vpc>(id);
        match self.client.delete_vpc().vpc_id(id).send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_not_found(&e) => Ok(Deletion::Done),
            Err(e) if is_dependency_violation(&e) => {
                let dependents = self.vpc_dependents(id).await?;
                Ok(Deletion::Waiting(waiting_on(
                    "VPC",
                    id,
                    &dependents,
                    &cloud_error(e).to_string(),
                )))
            }
            Err(e) => Err(cloud_error(e)),
        }
    }
}
