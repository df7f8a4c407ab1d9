//! `NatGateway` (aws.driftless.dev/v1alpha1): an EC2 NAT gateway in a
//! subnet, public (with an Elastic IP) or private. Ready once `available`;
//! its deletion waits until the gateway is `deleted`, so the ElasticIp and
//! the subnet it holds go after it.

use aws_sdk_ec2::types::{ConnectivityType, NatGatewayState};

use super::elastic_ip::ElasticIp;
use super::prelude::*;
use super::subnet::Subnet;
use super::{is_not_found, PAGE_SIZE};

reference! {
    /// The subnet a NAT gateway is in.
    pub struct NatSubnet(one Subnet = "Subnet") {
        /// The subnet's id. Immutable.
        id "subnetId", by_ref "subnetRef", selector "subnetSelector"
    }
}

reference! {
    /// The Elastic IP of a public NAT gateway.
    pub struct NatAllocation(one ElasticIp = "ElasticIp") {
        /// The Elastic IP's allocation id (`eipalloc-...`). Required for a
        /// public gateway, forbidden for a private one. Immutable.
        id "allocationId", by_ref "allocationRef", selector "allocationSelector"
    }
}

/// Whether the gateway reaches the internet (through its Elastic IP) or
/// only other networks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    #[default]
    Public,
    Private,
}

impl Connectivity {
    fn as_str(self) -> &'static str {
        match self {
            Connectivity::Public => "public",
            Connectivity::Private => "private",
        }
    }
}

/// The desired state of a NAT gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = NatSubnet::required)]
// At admission: a public gateway needs an Elastic IP, a private one takes none.
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.connectivityType) && self.connectivityType == 'private') || has(self.allocationId) || has(self.allocationRef) || has(self.allocationSelector)",
     "message": "a public NAT gateway needs an Elastic IP: give allocationId, allocationRef or allocationSelector"},
    {"rule": "!has(self.connectivityType) || self.connectivityType != 'private' || !(has(self.allocationId) || has(self.allocationRef) || has(self.allocationSelector))",
     "message": "a private NAT gateway takes no Elastic IP: remove allocationId, allocationRef and allocationSelector"}
]))]
pub struct NatGatewayParameters {
    #[serde(flatten)]
    pub subnet: NatSubnet,
    #[serde(flatten)]
    pub allocation: NatAllocation,
    /// `public` (the default) or `private`. Immutable.
    #[serde(default)]
    pub connectivity_type: Connectivity,
    /// Tags of the gateway. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the NAT gateway.
    pub struct NatGatewayObservation {
        nat_gateway_id: String,
        /// `pending`, `available`, `failed`, `deleting` or `deleted`.
        state: String,
        subnet_id: String,
        vpc_id: String,
        public_ip: String,
        private_ip: String,
        allocation_id: String,
        /// `public` or `private`.
        connectivity_type: String,
        /// Why it failed (state `failed`): AWS's code and message. A failed
        /// gateway does not recover: delete the object, fix the cause, re-apply.
        failure_message: String,
    }
}

field_keys! {
    /// What a NAT gateway's observation compares.
    pub enum NatGatewayField {
        SubnetId = "subnetId" immutable,
        AllocationId = "allocationId" immutable,
        ConnectivityType = "connectivityType" immutable,
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 NAT gateway. Its id (`nat-...`) is recorded in the
    /// `driftless.dev/external-name` annotation; set that annotation by hand
    /// to import an existing gateway.
    kind NatGateway("NatGateway"), spec NatGatewaySpec, status NatGatewayStatus("NatGatewayStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider NatGatewayParameters, at_provider NatGatewayObservation,
    fields NatGatewayField,
    references(subnet, allocation),
}

/// The NAT gateways that hold, or held (`deleted`), Elastic IP `allocation`
/// on network interface `eni`: an address names only the interface, and
/// DescribeNatGateways has no allocation filter.
pub(crate) async fn holding(
    ec2: &aws_sdk_ec2::Client,
    allocation: &str,
    eni: &str,
) -> Result<Vec<sdk::NatGateway>, CloudError> {
    let all = describe(ec2, Vec::new()).await?;
    let holds = |a: &sdk::NatGatewayAddress| {
        a.allocation_id() == Some(allocation) && a.network_interface_id() == Some(eni)
    };
    Ok(all
        .into_iter()
        .filter(|g| g.nat_gateway_addresses().iter().any(holds))
        .collect())
}

/// AWS reports a public gateway as `public`; LocalStack reports `None`.
fn connectivity_of(ng: &sdk::NatGateway) -> &'static str {
    match ng.connectivity_type() {
        Some(ConnectivityType::Private) => "private",
        _ => "public",
    }
}

/// The gateway's primary address (its Elastic IP, when public).
fn primary(ng: &sdk::NatGateway) -> Option<&sdk::NatGatewayAddress> {
    let all = ng.nat_gateway_addresses();
    let first = all.first();
    all.iter().find(|a| a.is_primary() == Some(true)).or(first)
}

/// `code: message` of a failed gateway.
fn failure(ng: &sdk::NatGateway) -> Option<String> {
    let parts = [ng.failure_code(), ng.failure_message()].map(|s| s.filter(|s| !s.is_empty()));
    let parts: Vec<&str> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(": "))
}

/// Every gateway matching `filters`, all pages. Unlike the other describe
/// calls, this one's parameter is `Filter`.
async fn describe(
    ec2: &aws_sdk_ec2::Client,
    filters: Vec<sdk::Filter>,
) -> Result<Vec<sdk::NatGateway>, CloudError> {
    let req = ec2.describe_nat_gateways().set_filter(Some(filters));
    let pages = req.into_paginator().page_size(PAGE_SIZE).items().send();
    pages.try_collect().await.map_err(cloud_error)
}

#[async_trait]
impl Described for sdk::NatGateway {
    const WHAT: &'static str = "NAT gateway";

    fn id(&self) -> &str {
        self.nat_gateway_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::NatGateway::tags(self)
    }

    /// Deleted gateways stay listed for about an hour.
    fn gone(&self) -> bool {
        self.state() == Some(&NatGatewayState::Deleted)
    }

    fn state(&self) -> (String, bool) {
        let state = self.state().map(|s| s.as_str()).unwrap_or_default();
        (state.to_string(), state == "available")
    }

    fn not_ready_because(&self) -> Option<String> {
        let state = Described::state(self).0;
        let why = failure(self).map_or(String::new(), |f| {
            format!(
                " ({f}); it does not recover: fix the cause, delete this object and apply it again"
            )
        });
        (state != "available").then(|| format!("NAT gateway {} is {state}{why}", self.id()))
    }

    fn not_deletable_yet(&self) -> Option<String> {
        (self.state() == Some(&NatGatewayState::Deleting)).then(|| {
            format!(
                "NAT gateway {} is being deleted (state deleting); waiting until it is deleted",
                self.id()
            )
        })
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        mut filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        // LocalStack ignores `tag:` filters here (AWS applies them): it
        // lists every gateway, and each user of a listing checks owner tags.
        let live = ["pending", "available", "failed", "deleting"];
        filters.push(filter("state", live));
        describe(ec2, filters).await
    }

    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError> {
        match ec2.describe_nat_gateways().nat_gateway_ids(id).send().await {
            Ok(out) => Ok(out.nat_gateways().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

/// Observation fields in the order of [`NatGatewayObservation`].
fn observation_of(ng: &sdk::NatGateway) -> NatGatewayObservation {
    let owned = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let address = primary(ng);
    NatGatewayObservation {
        nat_gateway_id: owned(ng.nat_gateway_id()),
        state: Some(Described::state(ng).0).filter(|s| !s.is_empty()),
        subnet_id: owned(ng.subnet_id()),
        vpc_id: owned(ng.vpc_id()),
        public_ip: owned(address.and_then(|a| a.public_ip())),
        private_ip: owned(address.and_then(|a| a.private_ip())),
        allocation_id: owned(address.and_then(|a| a.allocation_id())),
        connectivity_type: Some(connectivity_of(ng).to_string()),
        failure_message: failure(ng),
    }
}

#[async_trait]
impl Ec2Kind for NatGateway {
    type Sdk = sdk::NatGateway;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, NatGateway>,
        ng: &sdk::NatGateway,
    ) -> Observed<NatGateway> {
        use NatGatewayField as F;
        let at = observation_of(ng);
        let have = |s: &Option<String>| s.clone().unwrap_or_default();
        let mut diff = Vec::new();
        let (subnet, eip) = (
            resolved(t, NatSubnet::FIELD),
            resolved(t, NatAllocation::FIELD),
        );
        diff.compare(F::SubnetId, have(&at.subnet_id), subnet);
        diff.compare(F::AllocationId, have(&at.allocation_id), eip);
        let connectivity = Some(t.spec.connectivity_type.as_str());
        diff.compare(F::ConnectivityType, connectivity_of(ng), connectivity);
        diff.extend(tags_diff(F::Tags, ng, t.identity, &t.spec.tags));
        let details = [
            ("natGatewayId", &at.nat_gateway_id),
            ("publicIp", &at.public_ip),
        ];
        let details = details.into_iter().chain([("privateIp", &at.private_ip)]);
        Ok(Observation {
            diff,
            ready: Described::state(ng).1,
            connection_details: (details.filter_map(|(k, v)| Some((k.to_string(), v.clone()?))))
                .collect(),
            at_provider: Some(at),
            ..Observation::exists(ng.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, NatGateway>) -> Result<Created, CloudError> {
        let subnet = required(t, NatSubnet::FIELD, "subnetId, subnetRef or subnetSelector")?;
        let connectivity = ConnectivityType::from(t.spec.connectivity_type.as_str());
        let tags = tag_specification(ResourceType::Natgateway, t.identity, &t.spec.tags);
        // AWS returns the same gateway to a retry with the same token
        // (LocalStack ignores it).
        let token = format!("{:016x}", rand::random::<u64>());
        let out = ec2
            .client
            .create_nat_gateway()
            .subnet_id(subnet)
            .set_allocation_id(resolved(t, NatAllocation::FIELD).map(str::to_string))
            .connectivity_type(connectivity)
            .client_token(token)
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let ng_id = out.nat_gateway().and_then(sdk::NatGateway::nat_gateway_id);
        let id = new_id(ng_id, "CreateNatGateway returned no NAT gateway id")?;
        let _written = ec2.created::<sdk::NatGateway>(t.identity, &id);
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, NatGateway>,
        ng: &sdk::NatGateway,
        fields: Vec<NatGatewayField>,
    ) -> Result<(), CloudError> {
        if fields.contains(&NatGatewayField::Tags) {
            ec2.sync_tags(ng, t.identity, &t.spec.tags).await?;
        }
        Ok(()) // the other fields are immutable
    }

    /// Requested here; [`Described::not_deletable_yet`] then holds the
    /// finalizer while the gateway is `deleting`, until it is `deleted`.
    async fn delete(ec2: &Ec2, ng: &sdk::NatGateway) -> Result<Deletion, CloudError> {
        let req = ec2.client.delete_nat_gateway().nat_gateway_id(ng.id());
        ec2.deletion(ng, req.send().await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(state: NatGatewayState) -> sdk::NatGateway {
        sdk::NatGateway::builder()
            .nat_gateway_id("nat-1")
            .state(state)
            .build()
    }

    #[test]
    fn only_available_is_ready_and_deleted_is_gone() {
        let pending = gateway(NatGatewayState::Pending);
        assert_eq!(Described::state(&pending), ("pending".to_string(), false));
        assert_eq!(observation_of(&pending).state.as_deref(), Some("pending"));
        assert!(Described::state(&gateway(NatGatewayState::Available)).1);
        assert!(gateway(NatGatewayState::Deleted).gone());
        assert!(!gateway(NatGatewayState::Deleting).gone());
        let why = gateway(NatGatewayState::Deleting)
            .not_deletable_yet()
            .unwrap();
        assert!(why.contains("nat-1") && why.contains("deleting"), "{why}");
    }

    #[test]
    fn a_failed_gateway_says_why() {
        let failed = sdk::NatGateway::builder()
            .state(NatGatewayState::Failed)
            .failure_code("Gateway.NotAttached")
            .failure_message("Network vpc-1 has no Internet gateway attached")
            .build();
        assert_eq!(Described::state(&failed), ("failed".to_string(), false));
        assert_eq!(
            observation_of(&failed).failure_message.as_deref(),
            Some("Gateway.NotAttached: Network vpc-1 has no Internet gateway attached")
        );
        // The Ready condition's message.
        let why = failed.not_ready_because().unwrap();
        assert!(
            why.contains("is failed (Gateway.NotAttached: Network vpc-1 has no Internet gateway attached); it does not recover"),
            "{why}"
        );
        let pending = gateway(NatGatewayState::Pending).not_ready_because();
        assert_eq!(pending.as_deref(), Some("NAT gateway nat-1 is pending"));
    }
}
