//! `InternetGateway` (aws.driftless.dev/v1alpha1): an EC2 internet gateway,
//! attached to at most one VPC. Unlike a subnet's, its VPC can change: it is
//! detached from the old one and attached to the new one.

use super::prelude::*;
use super::vpc::Vpc;
use super::{is_not_found, waiting_on};
use crate::errors::code_of;

reference! {
    /// The VPC a gateway is attached to.
    pub struct AttachedVpc(one Vpc = "Vpc") {
        /// The VPC to attach to (unset: detached). Changing it moves the gateway.
        id "vpcId", by_ref "vpcRef", selector "vpcSelector"
    }
}

/// The desired state of an internet gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternetGatewayParameters {
    #[serde(flatten)]
    pub vpc: AttachedVpc,
    /// Tags of the gateway. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the internet gateway.
    pub struct InternetGatewayObservation {
        internet_gateway_id: String,
        /// The VPC it is attached to.
        vpc_id: String,
        /// The attachment's state (`available` when attached), or `detached`.
        state: String,
        /// The AWS account that owns the gateway.
        owner_id: String,
    }
}

field_keys! {
    /// What an internet gateway's observation compares.
    pub enum InternetGatewayField {
        VpcId = "vpcId",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 internet gateway and its VPC attachment. Its id is recorded in
    /// the `driftless.dev/external-name` annotation; set that annotation by
    /// hand to import an existing gateway.
    kind InternetGateway("InternetGateway"), spec InternetGatewaySpec, status InternetGatewayStatus("InternetGatewayStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider InternetGatewayParameters, at_provider InternetGatewayObservation,
    fields InternetGatewayField,
    references(vpc),
}

described!(
    sdk::InternetGateway,
    "internet gateway",
    internet_gateway_id,
    describe_internet_gateways,
    internet_gateway_ids,
    internet_gateways
);

/// The VPC the gateway is attached to (or attaching), if any.
fn attached(igw: &sdk::InternetGateway) -> Option<(&str, &str)> {
    igw.attachments().iter().find_map(|a| {
        let state = a.state().map(|s| s.as_str()).unwrap_or_default();
        (state != "detached")
            .then(|| a.vpc_id().map(|v| (v, state)))
            .flatten()
    })
}

impl Ec2 {
    /// Moves gateway `id` from the VPC it is attached to (if any) to `want`.
    async fn attach(
        &self,
        id: &str,
        have: Option<&str>,
        want: Option<&str>,
    ) -> Result<(), CloudError> {
        if have == want {
            return Ok(());
        }
        if let Some(old) = have {
            match self
                .client
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(old)
                .send()
                .await
            {
                Ok(_) => {}
                // Already detached, or the VPC is gone: what we wanted.
                Err(e) if code_of(&e) == Some("Gateway.NotAttached") || is_not_found(&e) => {}
                Err(e) => return Err(cloud_error(e)),
            }
        }
        if let Some(new) = want {
            self.client
                .attach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(new)
                .send()
                .await
                .map_err(cloud_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Ec2Kind for InternetGateway {
    type Sdk = sdk::InternetGateway;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, InternetGateway>,
        igw: &sdk::InternetGateway,
    ) -> Observed<InternetGateway> {
        let id = igw.id().to_string();
        let have = attached(igw);
        let mut diff = Vec::new();
        let want = resolved(t, AttachedVpc::FIELD);
        diff.compare(
            InternetGatewayField::VpcId,
            have.map(|(vpc, _)| vpc),
            Some(want),
        );
        diff.extend(tags_diff(
            InternetGatewayField::Tags,
            igw,
            t.identity,
            &t.spec.tags,
        ));
        // Ready: not attaching or detaching (where to is the diff's business).
        let ready = have.is_none_or(|(_, state)| state == "available");
        let mut details = BTreeMap::from([("internetGatewayId".to_string(), id.clone())]);
        details.extend(have.map(|(vpc, _)| ("vpcId".to_string(), vpc.to_string())));
        Ok(Observation {
            diff,
            ready,
            at_provider: Some(InternetGatewayObservation {
                internet_gateway_id: Some(id),
                vpc_id: have.map(|(vpc, _)| vpc.to_string()),
                state: Some(have.map_or("detached", |(_, s)| s).to_string()),
                owner_id: igw.owner_id().map(str::to_string),
            }),
            connection_details: details,
            ..Observation::exists(igw.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, InternetGateway>) -> Result<Created, CloudError> {
        let tags = tag_specification(ResourceType::InternetGateway, t.identity, &t.spec.tags);
        let out = ec2
            .client
            .create_internet_gateway()
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let igw_id = out
            .internet_gateway()
            .and_then(sdk::InternetGateway::internet_gateway_id);
        let id = new_id(igw_id, "CreateInternetGateway returned no gateway id")?;
        let _written = ec2.created::<sdk::InternetGateway>(t.identity, &id);
        ec2.attach(&id, None, resolved(t, AttachedVpc::FIELD))
            .await?;
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, InternetGateway>,
        igw: &sdk::InternetGateway,
        fields: Vec<InternetGatewayField>,
    ) -> Result<(), CloudError> {
        for field in fields {
            match field {
                InternetGatewayField::VpcId => {
                    let have = attached(igw).map(|(vpc, _)| vpc);
                    ec2.attach(igw.id(), have, resolved(t, AttachedVpc::FIELD))
                        .await?
                }
                InternetGatewayField::Tags => ec2.sync_tags(igw, t.identity, &t.spec.tags).await?,
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, igw: &sdk::InternetGateway) -> Result<Deletion, CloudError> {
        let id = igw.id();
        // A gateway is deleted detached. Detaching fails while the VPC has
        // public addresses mapped: that is a wait, not an error.
        let have = attached(igw).map(|(vpc, _)| vpc);
        match ec2.attach(id, have, None).await {
            Err(e) if e.code == "DependencyViolation" => {
                let why = waiting_on(sdk::InternetGateway::WHAT, id, &[], &e.to_string());
                return Ok(Deletion::Waiting(why));
            }
            other => other?,
        }
        let sent = ec2
            .client
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await;
        ec2.deletion(igw, sent).await
    }
}
