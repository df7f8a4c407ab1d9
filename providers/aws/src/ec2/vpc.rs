//! `Vpc` (aws.driftless.dev/v1alpha1): an EC2 VPC.

use aws_sdk_ec2::types::{AttributeBooleanValue, Tenancy, VpcAttributeName};

use super::prelude::*;

/// Where the VPC's instances run by default.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceTenancy {
    Default,
    Dedicated,
}

/// The desired state of a VPC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcParameters {
    /// The IPv4 range, e.g. `10.0.0.0/16` (prefix /16 to /28). Immutable: a
    /// change is refused (Synced False) and nothing is changed.
    #[schemars(length(max = 18), extend("x-kubernetes-validations" = [cidr_rule("10.0.0.0/16")]))]
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

observation! {
    /// What AWS reports about the VPC.
    pub struct VpcObservation {
        vpc_id: String,
        /// `pending` or `available`.
        state: String,
        /// The AWS account that owns the VPC.
        owner_id: String,
    }
}

reference! {
    /// The VPC a subnet or security group is in.
    pub struct VpcReference(one Vpc = "Vpc") {
        /// The VPC's id. Immutable.
        id "vpcId", by_ref "vpcRef", selector "vpcSelector"
    }
}

field_keys! {
    /// What a VPC's observation compares.
    pub enum VpcField {
        CidrBlock = "cidrBlock" immutable,
        InstanceTenancy = "instanceTenancy" immutable,
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
    references(),
}

described!(sdk::Vpc, "VPC", vpc_id, describe_vpcs, vpc_ids, vpcs, state, dependents Ec2::vpc_dependents);

/// The DNS flags the spec sets (`DescribeVpcs` does not return them).
fn dns_flags(spec: &VpcParameters) -> impl Iterator<Item = (VpcField, bool)> {
    let support = (VpcField::DnsSupport, spec.enable_dns_support);
    let hostnames = (VpcField::DnsHostnames, spec.enable_dns_hostnames);
    let flags = [support, hostnames];
    flags.into_iter().filter_map(|(f, v)| Some((f, v?)))
}

async fn dns(ec2: &Ec2, id: &str, field: VpcField) -> Result<Option<bool>, CloudError> {
    let name = match field == VpcField::DnsSupport {
        true => VpcAttributeName::EnableDnsSupport,
        false => VpcAttributeName::EnableDnsHostnames,
    };
    let req = ec2.client.describe_vpc_attribute().vpc_id(id);
    let out = req.attribute(name).send().await.map_err(cloud_error)?;
    // Only the attribute asked for is returned.
    let value = out.enable_dns_support().or(out.enable_dns_hostnames());
    Ok(value.and_then(AttributeBooleanValue::value))
}

/// Sets `flags`, one per call (the API refuses two). Hostnames need
/// support: support goes on first and off last.
async fn set_dns(ec2: &Ec2, id: &str, mut flags: Vec<(VpcField, bool)>) -> Result<(), CloudError> {
    if flags.contains(&(VpcField::DnsSupport, false)) {
        flags.reverse();
    }
    for (field, value) in flags {
        let v = AttributeBooleanValue::builder().value(value).build();
        let req = ec2.client.modify_vpc_attribute().vpc_id(id);
        let req = match field == VpcField::DnsSupport {
            true => req.enable_dns_support(v),
            false => req.enable_dns_hostnames(v),
        };
        req.send().await.map_err(cloud_error)?;
    }
    Ok(())
}

impl InstanceTenancy {
    fn as_str(self) -> &'static str {
        match self {
            InstanceTenancy::Default => "default",
            InstanceTenancy::Dedicated => "dedicated",
        }
    }
}

#[async_trait]
impl Ec2Kind for Vpc {
    type Sdk = sdk::Vpc;

    async fn observe(ec2: &Ec2, t: &Target<'_, Vpc>, vpc: &sdk::Vpc) -> Observed<Vpc> {
        let id = vpc.id().to_string();
        let mut diff = Vec::new();
        let cidr = vpc.cidr_block().unwrap_or_default();
        diff.compare(VpcField::CidrBlock, cidr, Some(&t.spec.cidr_block));
        let tenancy = vpc.instance_tenancy().map_or("default", Tenancy::as_str);
        let want = t.spec.instance_tenancy.map(InstanceTenancy::as_str);
        diff.compare(VpcField::InstanceTenancy, tenancy, want);
        for (field, want) in dns_flags(t.spec) {
            let have = dns(ec2, &id, field).await?;
            if have != Some(want) {
                diff.push(FieldDiff::new(field, have, want));
            }
        }
        diff.extend(tags_diff(VpcField::Tags, vpc, t.identity, &t.spec.tags));
        let state = vpc.state().map(|s| s.as_str().to_string());
        Ok(Observation {
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
            ..Observation::exists(vpc.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, Vpc>) -> Result<Created, CloudError> {
        let tags = tag_specification(ResourceType::Vpc, t.identity, &t.spec.tags);
        let tenancy = t.spec.instance_tenancy.map(|i| Tenancy::from(i.as_str()));
        let req = ec2.client.create_vpc().cidr_block(&t.spec.cidr_block);
        let req = req.set_instance_tenancy(tenancy).tag_specifications(tags);
        let out = req.send().await.map_err(cloud_error)?;
        let vpc_id = out.vpc().and_then(sdk::Vpc::vpc_id);
        let id = new_id(vpc_id, "CreateVpc returned no VPC id")?;
        let _written = ec2.created::<sdk::Vpc>(t.identity, &id);
        set_dns(ec2, &id, dns_flags(t.spec).collect()).await?;
        ec2.made(t.identity, &id, out.vpc());
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, Vpc>,
        vpc: &sdk::Vpc,
        fields: Vec<VpcField>,
    ) -> Result<(), CloudError> {
        let mut dns = Vec::new();
        for field in fields {
            match field {
                VpcField::DnsSupport | VpcField::DnsHostnames => {
                    dns.extend(dns_flags(t.spec).filter(|(f, _)| *f == field))
                }
                VpcField::Tags => ec2.sync_tags(vpc, t.identity, &t.spec.tags).await?,
                VpcField::CidrBlock | VpcField::InstanceTenancy => {} // immutable: never updated
            }
        }
        set_dns(ec2, vpc.id(), dns).await
    }

    async fn delete(ec2: &Ec2, vpc: &sdk::Vpc) -> Result<Deletion, CloudError> {
        let sent = ec2.client.delete_vpc().vpc_id(vpc.id()).send().await;
        ec2.deletion(vpc, sent).await
    }
}
