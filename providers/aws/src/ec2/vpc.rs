//! `Vpc` (aws.driftless.dev/v1alpha1): an EC2 VPC.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    self as sdk, AttributeBooleanValue, ResourceType, Tenancy, VpcAttributeName,
};
use driftless_provider::{
    field_keys, managed_resource, CloudError, Created, Deletion, External, FieldDiff, Observation,
    References, Target,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{described, desired_tags, ec2_kind, tag_specification, tags_diff, Described, Ec2};
use crate::errors::cloud_error;

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

driftless_provider::reference! {
    /// The VPC a subnet or security group is in.
    pub struct VpcReference(one Vpc = "Vpc") {
        /// The VPC's id. Immutable.
        id "vpcId", by_ref "vpcRef", selector "vpcSelector"
    }
}

field_keys! {
    /// What a VPC's observation compares.
    pub enum VpcField {
        CidrBlock = "cidrBlock",
        InstanceTenancy = "instanceTenancy",
        DnsSupport = "enableDnsSupport",
        DnsHostnames = "enableDnsHostnames",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 VPC. Its id is recorded in the `driftless.dev/external-name`
    /// annotation; set that annotation by hand to import an existing VPC.
    kind Vpc("Vpc"), spec VpcSpec, status VpcStatus("VpcStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider VpcParameters, at_provider VpcObservation, fields VpcField,
}

impl References for VpcParameters {}

ec2_kind!(Vpc);

described!(sdk::Vpc, "VPC", vpc_id, describe_vpcs, vpc_ids, vpcs, state {
    async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
        ec2.vpc_dependents(id).await
    }
});

/// The two DNS flags, which `DescribeVpcs` does not return.
#[derive(Clone, Copy)]
enum Dns {
    Support,
    Hostnames,
}

impl Dns {
    fn field(self) -> VpcField {
        match self {
            Dns::Support => VpcField::DnsSupport,
            Dns::Hostnames => VpcField::DnsHostnames,
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
    only: &[VpcField],
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

    async fn observe(&self, t: &Target<'_, Vpc>) -> Result<Observation<Vpc>, CloudError> {
        let Some(vpc) = self.find::<sdk::Vpc, _>(t).await? else {
            return Ok(Observation::absent());
        };
        let id = vpc.id().to_string();
        let mut diff = Vec::new();
        let cidr = vpc.cidr_block().unwrap_or_default();
        if cidr != t.spec.cidr_block {
            diff.push(FieldDiff::new(VpcField::CidrBlock, cidr, &t.spec.cidr_block).immutable());
        }
        if let Some(want) = t.spec.instance_tenancy.map(tenancy) {
            let have = vpc
                .instance_tenancy()
                .map(Tenancy::as_str)
                .unwrap_or("default");
            if have != want.as_str() {
                diff.push(
                    FieldDiff::new(VpcField::InstanceTenancy, have, want.as_str()).immutable(),
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
        diff.extend(tags_diff(VpcField::Tags, &vpc, t.identity, &t.spec.tags));
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
        observed: &Observation<Vpc>,
    ) -> Result<(), CloudError> {
        let Some(vpc) = self.find::<sdk::Vpc, _>(t).await? else {
            return Ok(()); // gone since observe: the next observe creates it
        };
        let _written = self.writing::<sdk::Vpc>(vpc.id());
        let (mut dns, mut tags) = (Vec::new(), false);
        for d in &observed.diff {
            match d.field {
                VpcField::DnsSupport | VpcField::DnsHostnames => dns.push(d.field),
                VpcField::Tags => tags = true,
                VpcField::CidrBlock | VpcField::InstanceTenancy => {} // immutable
            }
        }
        if !dns.is_empty() {
            set_dns(self, vpc.id(), t.spec, &dns).await?;
        }
        if tags {
            self.sync_tags(&vpc, t.identity, &t.spec.tags).await?;
        }
        Ok(())
    }

    async fn delete(&self, t: &Target<'_, Vpc>) -> Result<Deletion, CloudError> {
        self.delete_guarded::<sdk::Vpc, _, _, _, _>(t, |c, id| c.delete_vpc().vpc_id(id).send())
            .await
    }
}
