//! `ElasticIp` (aws.driftless.dev/v1alpha1): an EC2 Elastic IP address in
//! the VPC domain. Its allocation id is its external name. It is released
//! only once nothing uses it: while it is associated (with an instance, a
//! NAT gateway, a network interface) its deletion waits and says with what.

use super::prelude::*;
use super::{is_not_found, label, nat_gateway, waiting_on};
use crate::errors::code_of;

/// Where an address can be used: `vpc`, the only domain driftless supports
/// (EC2-Classic is retired).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    #[default]
    Vpc,
}

/// The desired state of an Elastic IP address.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElasticIpParameters {
    /// `vpc` (the default and only value). Immutable.
    #[serde(default)]
    pub domain: Domain,
    /// The zone group the address is advertised from, e.g. `us-east-1`
    /// (unset: the region's, and not compared). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub network_border_group: Option<String>,
    /// Tags of the address. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the address.
    pub struct ElasticIpObservation {
        allocation_id: String,
        /// The public IPv4 address.
        public_ip: String,
        /// `vpc`.
        domain: String,
        /// Its association with an instance or network interface, if any.
        association_id: String,
    }
}

field_keys! {
    /// What an Elastic IP's observation compares.
    pub enum ElasticIpField {
        Domain = "domain" immutable,
        NetworkBorderGroup = "networkBorderGroup" immutable,
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 Elastic IP address. Its allocation id (`eipalloc-...`) is
    /// recorded in the `driftless.dev/external-name` annotation; set that
    /// annotation by hand to import an existing address.
    kind ElasticIp("ElasticIp"), spec ElasticIpSpec, status ElasticIpStatus("ElasticIpStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider ElasticIpParameters, at_provider ElasticIpObservation,
    fields ElasticIpField,
    references(),
}

/// LocalStack reports unset ids as empty strings.
fn set(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// What the address is associated with, by name, if anything.
fn associated_with(a: &sdk::Address) -> Option<String> {
    let (eni, instance) = (set(a.network_interface_id()), set(a.instance_id()));
    let assoc = set(a.association_id());
    match (instance, eni) {
        (Some(i), _) => Some(format!("instance {i}")),
        (None, Some(n)) => Some(format!("network interface {n}")),
        (None, None) => assoc.map(|id| format!("association {id}")),
    }
}

/// Why address `a` cannot be released yet, if it cannot. An address on a
/// network interface of no instance may be a NAT gateway's: named then. One
/// held only by a `deleted` gateway is free (AWS disassociates it; LocalStack
/// leaves the association behind).
async fn in_use(ec2: &Ec2, a: &sdk::Address) -> Result<Option<String>, CloudError> {
    let Some(what) = associated_with(a) else {
        return Ok(None);
    };
    let (id, eni) = (a.id(), set(a.network_interface_id()));
    let gateways = match eni.filter(|_| set(a.instance_id()).is_none()) {
        Some(eni) => nat_gateway::holding(&ec2.client, id, eni).await?,
        None => Vec::new(),
    };
    Ok(match gateways.iter().find(|g| !g.gone()) {
        Some(g) => Some(format!(
            "in use by {}; delete that NAT gateway first",
            label("NAT gateway", g.id(), g.tags())
        )),
        None if !gateways.is_empty() => None,
        None => Some(format!("associated with {what}; disassociate it first")),
    })
}

// `DescribeAddresses` has no pagination: one call returns every match.
#[async_trait]
impl Described for sdk::Address {
    const WHAT: &'static str = "Elastic IP";

    fn id(&self) -> &str {
        self.allocation_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::Address::tags(self)
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        let req = ec2.describe_addresses().set_filters(Some(filters));
        let out = req.send().await.map_err(cloud_error)?;
        Ok(out.addresses().to_vec())
    }

    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError> {
        match ec2.describe_addresses().allocation_ids(id).send().await {
            Ok(out) => Ok(out.addresses().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

#[async_trait]
impl Ec2Kind for ElasticIp {
    type Sdk = sdk::Address;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, ElasticIp>,
        a: &sdk::Address,
    ) -> Observed<ElasticIp> {
        let id = a.id().to_string();
        let domain = a.domain().map(|d| d.as_str().to_string());
        let mut diff = Vec::new();
        diff.compare(
            ElasticIpField::Domain,
            domain.as_deref().unwrap_or_default(),
            Some("vpc"),
        );
        let group = t.spec.network_border_group.as_deref();
        let have = a.network_border_group().unwrap_or_default();
        diff.compare(ElasticIpField::NetworkBorderGroup, have, group);
        diff.extend(tags_diff(ElasticIpField::Tags, a, t.identity, &t.spec.tags));
        let public_ip = set(a.public_ip()).map(str::to_string);
        let mut details = BTreeMap::from([("allocationId".to_string(), id.clone())]);
        details.extend(public_ip.clone().map(|ip| ("publicIp".to_string(), ip)));
        Ok(Observation {
            diff,
            ready: public_ip.is_some(),
            at_provider: Some(ElasticIpObservation {
                allocation_id: Some(id),
                public_ip,
                domain,
                association_id: set(a.association_id()).map(str::to_string),
            }),
            connection_details: details,
            ..Observation::exists(a.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, ElasticIp>) -> Result<Created, CloudError> {
        let tags = tag_specification(ResourceType::ElasticIp, t.identity, &t.spec.tags);
        let req = ec2.client.allocate_address().domain(sdk::DomainType::Vpc);
        let req = req.set_network_border_group(t.spec.network_border_group.clone());
        let out = req
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let id = new_id(
            out.allocation_id(),
            "AllocateAddress returned no allocation id",
        )?;
        let _written = ec2.created::<sdk::Address>(t.identity, &id);
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, ElasticIp>,
        a: &sdk::Address,
        fields: Vec<ElasticIpField>,
    ) -> Result<(), CloudError> {
        for field in fields {
            match field {
                ElasticIpField::Tags => ec2.sync_tags(a, t.identity, &t.spec.tags).await?,
                ElasticIpField::Domain | ElasticIpField::NetworkBorderGroup => {} // immutable
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, a: &sdk::Address) -> Result<Deletion, CloudError> {
        let id = a.id();
        // Released only unused: driftless never disassociates what another
        // owner associated (a NAT gateway, an instance). Read fresh: the
        // snapshot may predate an association (and LocalStack releases an
        // associated address without complaint).
        let Some(fresh) = sdk::Address::describe_one(&ec2.client, id).await? else {
            return Ok(Deletion::Done);
        };
        if let Some(why) = in_use(ec2, &fresh).await? {
            return Ok(Deletion::Waiting(waiting_on(
                sdk::Address::WHAT,
                id,
                &[],
                &why,
            )));
        }
        let sent = ec2.client.release_address().allocation_id(id).send().await;
        match sent {
            // Associated since it was read.
            Err(e) if matches!(code_of(&e), Some("InvalidIPAddress.InUse")) => {
                let why = waiting_on(sdk::Address::WHAT, id, &[], &cloud_error(e).to_string());
                Ok(Deletion::Waiting(why))
            }
            sent => ec2.deletion(a, sent).await,
        }
    }
}
