//! `Subnet` (aws.driftless.dev/v1alpha1): an EC2 subnet in a VPC.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::{self as sdk, AttributeBooleanValue, ResourceType};
use driftless_provider::{
    managed_resource, CloudError, Created, Deletion, External, FieldDiff, ObjectRef, Observation,
    Reference, References, Selector, Target,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vpc::Vpc;
use super::{
    desired_tags, filter, is_dependency_violation, is_not_found, required, resolved, tag_map,
    tag_specification, tags_diff, waiting_on, Described, Ec2, Ec2Snapshots, Snapshot, PAGE_SIZE,
};
use crate::errors::cloud_error;
use crate::{AwsKind, AwsSession};

/// The desired state of a subnet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.vpcId) || has(self.vpcRef) || has(self.vpcSelector)",
    "message": "one of vpcId, vpcRef or vpcSelector is required"
}]))]
pub struct SubnetParameters {
    /// The VPC's id. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// A Vpc object in this namespace, instead of vpcId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_ref: Option<ObjectRef>,
    /// The first Vpc (by name) in this namespace with these labels, instead of vpcId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_selector: Option<Selector>,
    /// The IPv4 range, inside the VPC's, e.g. `10.0.1.0/24` (prefix /16 to
    /// /28). Immutable: a change is refused (Synced False) and nothing is changed.
    #[schemars(length(max = 18))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(1[6-9]|2[0-8])$')",
        "message": "cidrBlock must be an IPv4 CIDR block with a prefix from /16 to /28, e.g. 10.0.1.0/24"
    }]))]
    pub cidr_block: String,
    /// e.g. `us-east-1a` (unset: AWS picks one, and it is not compared). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Give instances launched here a public IPv4 address; unset leaves it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_public_ip_on_launch: Option<bool>,
    /// Tags of the subnet. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

/// What AWS reports about the subnet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetObservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// `pending` or `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_ip_address_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
}

managed_resource! {
    /// An EC2 subnet. Its id is recorded in the `driftless.dev/external-name`
    /// annotation; set that annotation by hand to import an existing subnet.
    kind Subnet("Subnet"), spec SubnetSpec, status SubnetStatus("SubnetStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider SubnetParameters, at_provider SubnetObservation,
}

impl References for SubnetParameters {
    fn references(&self) -> Vec<Reference> {
        Reference::single::<Vpc>(
            "vpcId",
            self.vpc_id.as_ref(),
            self.vpc_ref.as_ref(),
            self.vpc_selector.as_ref(),
        )
        .into_iter()
        .collect()
    }
}

impl AwsKind for Subnet {
    fn external(session: &AwsSession, _spec: &SubnetParameters) -> Arc<dyn External<Self>> {
        Arc::new(Ec2::new(session))
    }
}

#[async_trait]
impl Described for sdk::Subnet {
    const WHAT: &'static str = "subnet";

    fn state(&self) -> (String, bool) {
        let state = self
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let ready = state == "available";
        (state, ready)
    }

    fn id(&self) -> &str {
        self.subnet_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::Subnet::tags(self)
    }

    fn snapshot(s: &Ec2Snapshots) -> &Snapshot<Self> {
        &s.subnets
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        ec2.describe_subnets()
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
        match ec2.describe_subnets().subnet_ids(id).send().await {
            Ok(out) => Ok(out.subnets().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

async fn set_map_public_ip(ec2: &Ec2, id: &str, value: bool) -> Result<(), CloudError> {
    ec2.client
        .modify_subnet_attribute()
        .subnet_id(id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
        .send()
        .await
        .map_err(cloud_error)?;
    Ok(())
}

#[async_trait]
impl External<Subnet> for Ec2 {
    async fn list_owned(&self) -> Result<Vec<driftless_provider::Owned>, CloudError> {
        Ec2::list_owned::<sdk::Subnet>(self).await
    }

    async fn observe(
        &self,
        t: &Target<'_, Subnet>,
    ) -> Result<Observation<SubnetObservation>, CloudError> {
        let Some(subnet) = self.find::<sdk::Subnet, _>(t).await? else {
            return Ok(Observation::absent());
        };
        let id = subnet.id().to_string();
        let vpc_id = subnet.vpc_id().unwrap_or_default();
        let zone = subnet.availability_zone().unwrap_or_default();
        let cidr = subnet.cidr_block().unwrap_or_default();
        let mut diff = Vec::new();
        if let Some(want) = resolved(t, "vpcId").filter(|want| *want != vpc_id) {
            diff.push(FieldDiff::new("forProvider.vpcId", vpc_id, want).immutable());
        }
        if cidr != t.spec.cidr_block {
            diff.push(
                FieldDiff::new("forProvider.cidrBlock", cidr, &t.spec.cidr_block).immutable(),
            );
        }
        if let Some(want) = t
            .spec
            .availability_zone
            .as_ref()
            .filter(|want| *want != zone)
        {
            diff.push(FieldDiff::new("forProvider.availabilityZone", zone, want).immutable());
        }
        if let Some(want) = t.spec.map_public_ip_on_launch {
            let have = subnet.map_public_ip_on_launch().unwrap_or(false);
            if have != want {
                diff.push(FieldDiff::new(
                    "forProvider.mapPublicIpOnLaunch",
                    have,
                    want,
                ));
            }
        }
        diff.extend(tags_diff(
            &tag_map(subnet.tags()),
            &desired_tags(t.identity, &t.spec.tags),
        ));
        let state = subnet.state().map(|s| s.as_str().to_string());
        Ok(Observation {
            exists: true,
            external_name: Some(id.clone()),
            diff,
            ready: state.as_deref() == Some("available"),
            at_provider: Some(SubnetObservation {
                subnet_id: Some(id.clone()),
                state,
                available_ip_address_count: subnet.available_ip_address_count(),
                vpc_id: Some(vpc_id.to_string()),
                availability_zone: Some(zone.to_string()),
            }),
            connection_details: BTreeMap::from([
                ("subnetId".to_string(), id),
                ("vpcId".to_string(), vpc_id.to_string()),
                ("availabilityZone".to_string(), zone.to_string()),
                ("cidrBlock".to_string(), cidr.to_string()),
            ]),
        })
    }

    async fn create(&self, t: &Target<'_, Subnet>) -> Result<Created, CloudError> {
        let vpc_id = required(t, "vpcId", "vpcId, vpcRef or vpcSelector")?;
        let tags = desired_tags(t.identity, &t.spec.tags);
        let out = self
            .client
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(&t.spec.cidr_block)
            .set_availability_zone(t.spec.availability_zone.clone())
            .tag_specifications(tag_specification(ResourceType::Subnet, &tags))
            .send()
            .await
            .map_err(cloud_error)?;
        let id = out
            .subnet()
            .and_then(sdk::Subnet::subnet_id)
            .ok_or_else(|| {
                CloudError::retryable("InvalidResponse", "CreateSubnet returned no subnet id")
            })?
            .to_string();
        let _written = self.created::<sdk::Subnet>(t.identity, &id);
        if let Some(v) = t.spec.map_public_ip_on_launch {
            set_map_public_ip(self, &id, v).await?;
        }
        Ok(Created { external_name: id })
    }

    async fn update(
        &self,
        t: &Target<'_, Subnet>,
        observed: &Observation<SubnetObservation>,
    ) -> Result<(), CloudError> {
        let Some(subnet) = self.find::<sdk::Subnet, _>(t).await? else {
            return Ok(());
        };
        let id = subnet.id();
        let _written = self.writing::<sdk::Subnet>(id);
        for d in &observed.diff {
            match d.field.as_str() {
                "forProvider.mapPublicIpOnLaunch" => {
                    if let Some(v) = t.spec.map_public_ip_on_launch {
                        set_map_public_ip(self, id, v).await?;
                    }
                }
                "forProvider.tags" => {
                    self.sync_tags(
                        id,
                        &tag_map(subnet.tags()),
                        &desired_tags(t.identity, &t.spec.tags),
                    )
                    .await?
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn delete(&self, t: &Target<'_, Subnet>) -> Result<Deletion, CloudError> {
        let Some(subnet) = self.find::<sdk::Subnet, _>(t).await? else {
            return Ok(Deletion::Done);
        };
        let id = subnet.id();
        let _written = self.writing::<sdk::Subnet>(id);
        match self.client.delete_subnet().subnet_id(id).send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_not_found(&e) => Ok(Deletion::Done),
            Err(e) if is_dependency_violation(&e) => {
                let mut dependents = self.instances_where(filter("subnet-id", [id])).await?;
                dependents.extend(self.interfaces_where(filter("subnet-id", [id])).await?);
                Ok(Deletion::Waiting(waiting_on(
                    "subnet",
                    id,
                    &dependents,
                    &cloud_error(e).to_string(),
                )))
            }
            Err(e) => Err(cloud_error(e)),
        }
    }
}
