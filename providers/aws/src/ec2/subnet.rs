//! `Subnet` (aws.driftless.dev/v1alpha1): an EC2 subnet in a VPC.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::{self as sdk, AttributeBooleanValue, ResourceType};
use driftless_provider::{
    field_keys, managed_resource, CloudError, Created, Deletion, External, FieldDiff, Observation,
    Reference, References, Target,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vpc::VpcReference;
use super::{
    described, desired_tags, ec2_kind, filter, required, resolved, tag_specification, tags_diff,
    Described, Ec2,
};
use crate::errors::cloud_error;

/// The desired state of a subnet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = VpcReference::required)]
pub struct SubnetParameters {
    #[serde(flatten)]
    pub vpc: VpcReference,
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

field_keys! {
    /// What a subnet's observation compares.
    pub enum SubnetField {
        VpcId = "vpcId",
        CidrBlock = "cidrBlock",
        AvailabilityZone = "availabilityZone",
        MapPublicIpOnLaunch = "mapPublicIpOnLaunch",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 subnet. Its id is recorded in the `driftless.dev/external-name`
    /// annotation; set that annotation by hand to import an existing subnet.
    kind Subnet("Subnet"), spec SubnetSpec, status SubnetStatus("SubnetStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider SubnetParameters, at_provider SubnetObservation, fields SubnetField,
}

impl References for SubnetParameters {
    fn references(&self) -> Vec<Reference> {
        self.vpc.reference().into_iter().collect()
    }
}

ec2_kind!(Subnet);

described!(sdk::Subnet, "subnet", subnet_id, describe_subnets, subnet_ids, subnets, state {
    async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
        let mut dependents = ec2.instances_where(filter("subnet-id", [id])).await?;
        dependents.extend(ec2.interfaces_where(filter("subnet-id", [id])).await?);
        Ok(dependents)
    }
});

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

    async fn observe(&self, t: &Target<'_, Subnet>) -> Result<Observation<Subnet>, CloudError> {
        let Some(subnet) = self.find::<sdk::Subnet, _>(t).await? else {
            return Ok(Observation::absent());
        };
        let id = subnet.id().to_string();
        let vpc_id = subnet.vpc_id().unwrap_or_default();
        let zone = subnet.availability_zone().unwrap_or_default();
        let cidr = subnet.cidr_block().unwrap_or_default();
        let mut diff = Vec::new();
        if let Some(want) = resolved(t, VpcReference::FIELD).filter(|want| *want != vpc_id) {
            diff.push(FieldDiff::new(SubnetField::VpcId, vpc_id, want).immutable());
        }
        if cidr != t.spec.cidr_block {
            diff.push(FieldDiff::new(SubnetField::CidrBlock, cidr, &t.spec.cidr_block).immutable());
        }
        if let Some(want) = t
            .spec
            .availability_zone
            .as_ref()
            .filter(|want| *want != zone)
        {
            diff.push(FieldDiff::new(SubnetField::AvailabilityZone, zone, want).immutable());
        }
        if let Some(want) = t.spec.map_public_ip_on_launch {
            let have = subnet.map_public_ip_on_launch().unwrap_or(false);
            if have != want {
                diff.push(FieldDiff::new(SubnetField::MapPublicIpOnLaunch, have, want));
            }
        }
        diff.extend(tags_diff(
            SubnetField::Tags,
            &subnet,
            t.identity,
            &t.spec.tags,
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
        let vpc_id = required(t, VpcReference::FIELD, "vpcId, vpcRef or vpcSelector")?;
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
        observed: &Observation<Subnet>,
    ) -> Result<(), CloudError> {
        let Some(subnet) = self.find::<sdk::Subnet, _>(t).await? else {
            return Ok(());
        };
        let id = subnet.id();
        let _written = self.writing::<sdk::Subnet>(id);
        for d in &observed.diff {
            match d.field {
                SubnetField::MapPublicIpOnLaunch => {
                    if let Some(v) = t.spec.map_public_ip_on_launch {
                        set_map_public_ip(self, id, v).await?;
                    }
                }
                SubnetField::Tags => self.sync_tags(&subnet, t.identity, &t.spec.tags).await?,
                SubnetField::VpcId | SubnetField::CidrBlock | SubnetField::AvailabilityZone => {}
            }
        }
        Ok(())
    }

    async fn delete(&self, t: &Target<'_, Subnet>) -> Result<Deletion, CloudError> {
        self.delete_guarded::<sdk::Subnet, _, _, _, _>(t, |c, id| {
            c.delete_subnet().subnet_id(id).send()
        })
        .await
    }
}
