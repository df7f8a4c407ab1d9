//! `Subnet` (aws.driftless.dev/v1alpha1): an EC2 subnet in a VPC.

use aws_sdk_ec2::types::AttributeBooleanValue;

use super::prelude::*;
use super::vpc::VpcReference;

/// The desired state of a subnet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = VpcReference::required)]
pub struct SubnetParameters {
    #[serde(flatten)]
    pub vpc: VpcReference,
    /// The IPv4 range, inside the VPC's, e.g. `10.0.1.0/24` (prefix /16 to
    /// /28). Immutable: a change is refused (Synced False) and nothing is changed.
    #[schemars(length(max = 18), extend("x-kubernetes-validations" = [cidr_rule("10.0.1.0/24")]))]
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

observation! {
    /// What AWS reports about the subnet.
    pub struct SubnetObservation {
        subnet_id: String,
        /// `pending` or `available`.
        state: String,
        available_ip_address_count: i32,
        vpc_id: String,
        availability_zone: String,
    }
}

field_keys! {
    /// What a subnet's observation compares.
    pub enum SubnetField {
        VpcId = "vpcId" immutable,
        CidrBlock = "cidrBlock" immutable,
        AvailabilityZone = "availabilityZone" immutable,
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
    references(vpc),
}

described!(sdk::Subnet, "subnet", subnet_id, describe_subnets, subnet_ids, subnets, state {
    async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
        let mut dependents = ec2.instances_where(filter("subnet-id", [id])).await?;
        dependents.extend(ec2.nat_gateways_in("subnet-id", id).await?);
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
impl Ec2Kind for Subnet {
    type Sdk = sdk::Subnet;

    async fn observe(_ec2: &Ec2, t: &Target<'_, Subnet>, subnet: &sdk::Subnet) -> Observed<Subnet> {
        let id = subnet.id().to_string();
        let vpc_id = subnet.vpc_id().unwrap_or_default();
        let zone = subnet.availability_zone().unwrap_or_default();
        let cidr = subnet.cidr_block().unwrap_or_default();
        let mut diff = Vec::new();
        diff.compare(SubnetField::VpcId, vpc_id, resolved(t, VpcReference::FIELD));
        diff.compare(SubnetField::CidrBlock, cidr, Some(&t.spec.cidr_block));
        diff.compare(
            SubnetField::AvailabilityZone,
            zone,
            t.spec.availability_zone.as_ref(),
        );
        let map_public_ip = subnet.map_public_ip_on_launch().unwrap_or(false);
        diff.compare(
            SubnetField::MapPublicIpOnLaunch,
            map_public_ip,
            t.spec.map_public_ip_on_launch,
        );
        diff.extend(tags_diff(
            SubnetField::Tags,
            subnet,
            t.identity,
            &t.spec.tags,
        ));
        let state = subnet.state().map(|s| s.as_str().to_string());
        Ok(Observation {
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
            ..Observation::exists(subnet.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, Subnet>) -> Result<Created, CloudError> {
        let vpc_id = required(t, VpcReference::FIELD, "vpcId, vpcRef or vpcSelector")?;
        let tags = tag_specification(ResourceType::Subnet, t.identity, &t.spec.tags);
        let out = ec2
            .client
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(&t.spec.cidr_block)
            .set_availability_zone(t.spec.availability_zone.clone())
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let subnet_id = out.subnet().and_then(sdk::Subnet::subnet_id);
        let id = new_id(subnet_id, "CreateSubnet returned no subnet id")?;
        let _written = ec2.created::<sdk::Subnet>(t.identity, &id);
        match t.spec.map_public_ip_on_launch {
            Some(v) => set_map_public_ip(ec2, &id, v).await?,
            // Otherwise the response is the subnet as it is.
            None => ec2.made(t.identity, &id, out.subnet()),
        }
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, Subnet>,
        subnet: &sdk::Subnet,
        fields: Vec<SubnetField>,
    ) -> Result<(), CloudError> {
        let id = subnet.id();
        for field in fields {
            match field {
                SubnetField::MapPublicIpOnLaunch => {
                    if let Some(v) = t.spec.map_public_ip_on_launch {
                        set_map_public_ip(ec2, id, v).await?;
                    }
                }
                SubnetField::Tags => ec2.sync_tags(subnet, t.identity, &t.spec.tags).await?,
                SubnetField::VpcId | SubnetField::CidrBlock | SubnetField::AvailabilityZone => {}
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, subnet: &sdk::Subnet) -> Result<Deletion, CloudError> {
        let sent = ec2
            .client
            .delete_subnet()
            .subnet_id(subnet.id())
            .send()
            .await;
        ec2.deletion(subnet, sent).await
    }
}
