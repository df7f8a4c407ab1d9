//! `Instance` (aws.driftless.dev/v1alpha1): an EC2 instance. Ready when
//! running; deleting the object terminates it.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{AttributeValue, InstanceStateName, InstanceType};
use driftless_provider::Identity;

use super::key_pair::KeyPair;
use super::prelude::*;
use super::security_group::SecurityGroup;
use super::subnet::Subnet;
use super::{is_not_found, split_ids, PAGE_SIZE};

reference! {
    /// The subnet an instance is launched in.
    pub struct SubnetReference(one Subnet = "Subnet") {
        /// The subnet's id. Immutable.
        id "subnetId", by_ref "subnetRef", selector "subnetSelector"
    }
}

reference! {
    /// The security groups of an instance.
    pub struct SecurityGroupsReference(many SecurityGroup = "SecurityGroup") {
        /// Security group ids (unset: the VPC's default group, and not compared).
        ids "securityGroupIds", by_ref "securityGroupRefs", selector "securityGroupSelector"
    }
}

reference! {
    /// The key pair an instance is launched with: EC2 names it by name, so a
    /// reference resolves to the KeyPair's `status.atProvider.keyName`.
    pub struct KeyPairReference(one KeyPair = "KeyPair", value "/status/atProvider/keyName") {
        /// An EC2 key pair's name (unset: none). Immutable.
        id "keyName", by_ref "keyPairRef", selector "keyPairSelector"
    }
}

/// The desired state of an instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = SubnetReference::required)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.userData) == has(oldSelf.userData) && (!has(self.userData) || self.userData == oldSelf.userData)",
     "message": "userData is immutable: it is used only when the instance is launched"}
]))]
pub struct InstanceParameters {
    /// The AMI, e.g. `ami-0abcdef1234567890`. Immutable.
    #[schemars(length(min = 1))]
    pub image_id: String,
    /// e.g. `t3.micro`. Changing it stops the instance, changes its type and
    /// starts it again.
    #[schemars(length(min = 1))]
    pub instance_type: String,
    #[serde(flatten)]
    pub subnet: SubnetReference,
    #[serde(flatten)]
    pub security_groups: SecurityGroupsReference,
    #[serde(flatten)]
    pub key_pair: KeyPairReference,
    /// A script or cloud-init config, plain text (driftless encodes it).
    /// Used at launch only, so it cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub user_data: Option<String>,
    /// Tags of the instance. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the instance.
    pub struct InstanceObservation {
        instance_id: String,
        /// pending, running, stopping, stopped, shutting-down or terminated.
        state: String,
        private_ip_address: String,
        public_ip_address: String,
        availability_zone: String,
    }
}

field_keys! {
    /// What an instance's observation compares.
    pub enum InstanceField {
        ImageId = "imageId" immutable,
        SubnetId = "subnetId" immutable,
        KeyName = "keyName" immutable,
        InstanceType = "instanceType",
        SecurityGroupIds = "securityGroupIds",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 instance. Its id is recorded in the `driftless.dev/external-name`
    /// annotation; set that annotation by hand to import an existing instance.
    kind Instance("Instance"), spec InstanceSpec, status InstanceStatus("InstanceStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider InstanceParameters, at_provider InstanceObservation, fields InstanceField,
    references(subnet, security_groups, key_pair),
}

fn state_of(i: &sdk::Instance) -> Option<&InstanceStateName> {
    i.state().and_then(sdk::InstanceState::name)
}

#[async_trait]
impl Described for sdk::Instance {
    const WHAT: &'static str = "instance";

    fn id(&self) -> &str {
        self.instance_id().unwrap_or_default()
    }

    fn tags(&self) -> &[sdk::Tag] {
        sdk::Instance::tags(self)
    }

    fn gone(&self) -> bool {
        state_of(self) == Some(&InstanceStateName::Terminated)
    }

    fn state(&self) -> (String, bool) {
        let state = state_of(self)
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let ready = state_of(self) == Some(&InstanceStateName::Running);
        (state, ready)
    }

    fn not_deletable_yet(&self) -> Option<String> {
        (state_of(self) == Some(&InstanceStateName::ShuttingDown))
            .then(|| format!("instance {} is shutting down", self.id()))
    }

    async fn list(
        ec2: &aws_sdk_ec2::Client,
        mut filters: Vec<sdk::Filter>,
    ) -> Result<Vec<Self>, CloudError> {
        // Terminated instances stay listed for a while: leave them out.
        let live = ["pending", "running", "shutting-down", "stopping", "stopped"];
        filters.push(filter("instance-state-name", live));
        let reservations = ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .page_size(PAGE_SIZE)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(cloud_error)?;
        Ok(reservations
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
            .collect())
    }

    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError> {
        match ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

/// FNV-1a: a hash that, unlike std's, is fixed forever, so a token computed
/// after a restart equals the one computed before it.
fn fnv1a(basis: u64, data: &str) -> u64 {
    data.bytes().fold(basis, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The RunInstances ClientToken: the same object asking for the same
/// instance sends the same token, so AWS returns the instance an earlier,
/// lost call made instead of launching another. 35 characters.
fn client_token(parts: &[&str]) -> String {
    let data = parts.join("\u{1f}");
    format!(
        "dl-{:016x}{:016x}",
        fnv1a(0xcbf2_9ce4_8422_2325, &data),
        fnv1a(0x6c62_272e_07bb_0142, &data)
    )
}

fn launch_token(
    identity: &Identity,
    t: &Target<'_, Instance>,
    subnet: &str,
    groups: &[String],
) -> String {
    let spec = t.spec;
    client_token(&[
        &identity.owner(),
        &identity.kind,
        &spec.image_id,
        &spec.instance_type,
        subnet,
        &groups.join(","),
        resolved(t, KeyPairReference::FIELD).unwrap_or_default(),
        spec.user_data.as_deref().unwrap_or_default(),
    ])
}

#[async_trait]
impl Ec2Kind for Instance {
    type Sdk = sdk::Instance;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, Instance>,
        i: &sdk::Instance,
    ) -> Observed<Instance> {
        let id = i.id().to_string();
        let state = state_of(i).cloned();
        let mut diff = Vec::new();
        // Going away: nothing to change (once terminated, it is recreated).
        if state != Some(InstanceStateName::ShuttingDown) {
            let image = i.image_id().unwrap_or_default();
            diff.compare(InstanceField::ImageId, image, Some(&t.spec.image_id));
            let subnet = i.subnet_id().unwrap_or_default();
            diff.compare(
                InstanceField::SubnetId,
                subnet,
                resolved(t, SubnetReference::FIELD),
            );
            let key = i.key_name().unwrap_or_default();
            let want = resolved(t, KeyPairReference::FIELD);
            diff.compare(InstanceField::KeyName, key, want);
            let instance_type = i.instance_type().map_or("", InstanceType::as_str);
            diff.compare(
                InstanceField::InstanceType,
                instance_type,
                Some(&t.spec.instance_type),
            );
            let groups: BTreeSet<String> = i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect();
            let want = resolved(t, SecurityGroupsReference::FIELD);
            let want = want.map(|w| split_ids(w).into_iter().collect::<BTreeSet<_>>());
            diff.compare(InstanceField::SecurityGroupIds, groups, want);
            diff.extend(tags_diff(InstanceField::Tags, i, t.identity, &t.spec.tags));
        }
        let private_ip = i.private_ip_address().map(str::to_string);
        let public_ip = i.public_ip_address().map(str::to_string);
        let mut details = BTreeMap::from([("instanceId".to_string(), id.clone())]);
        details.extend(
            private_ip
                .clone()
                .map(|ip| ("privateIpAddress".to_string(), ip)),
        );
        details.extend(
            public_ip
                .clone()
                .map(|ip| ("publicIpAddress".to_string(), ip)),
        );
        Ok(Observation {
            diff,
            ready: state == Some(InstanceStateName::Running),
            at_provider: Some(InstanceObservation {
                instance_id: Some(id),
                state: state.map(|s| s.as_str().to_string()),
                private_ip_address: private_ip,
                public_ip_address: public_ip,
                availability_zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .map(str::to_string),
            }),
            connection_details: details,
            ..Observation::exists(i.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, Instance>) -> Result<Created, CloudError> {
        let subnet = required(
            t,
            SubnetReference::FIELD,
            "subnetId, subnetRef or subnetSelector",
        )?;
        let groups = resolved(t, SecurityGroupsReference::FIELD)
            .map(split_ids)
            .unwrap_or_default();
        let tags = tag_specification(ResourceType::Instance, t.identity, &t.spec.tags);
        let mut token = launch_token(t.identity, t, subnet, &groups);
        // A token is remembered after its instance is terminated: if it names
        // an earlier incarnation of this object, derive the next one from it
        // (deterministically, so a retry after a crash derives the same).
        for _ in 0..8 {
            let out = ec2
                .client
                .run_instances()
                .image_id(&t.spec.image_id)
                .instance_type(InstanceType::from(t.spec.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet)
                .set_security_group_ids((!groups.is_empty()).then(|| groups.clone()))
                .set_key_name(resolved(t, KeyPairReference::FIELD).map(str::to_string))
                .set_user_data(
                    t.spec
                        .user_data
                        .as_ref()
                        .map(aws_smithy_types::base64::encode),
                )
                .client_token(&token)
                .tag_specifications(tags.clone())
                .send()
                .await
                .map_err(cloud_error)?;
            let i = out.instances().first().ok_or_else(|| {
                CloudError::retryable("InvalidResponse", "RunInstances returned no instance")
            })?;
            let id = i.id().to_string();
            if matches!(
                state_of(i),
                Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
            ) {
                token = client_token(&[&token, &id]);
                continue;
            }
            let _written = ec2.created::<sdk::Instance>(t.identity, &id);
            return Ok(Created { external_name: id });
        }
        Err(CloudError::retryable(
            "ClientTokenExhausted",
            "RunInstances kept returning terminated instances for this object's client tokens",
        ))
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, Instance>,
        i: &sdk::Instance,
        fields: Vec<InstanceField>,
    ) -> Result<(), CloudError> {
        let id = i.id();
        for field in fields {
            match field {
                InstanceField::Tags => ec2.sync_tags(i, t.identity, &t.spec.tags).await?,
                InstanceField::SecurityGroupIds => {
                    let groups = resolved(t, SecurityGroupsReference::FIELD)
                        .map(split_ids)
                        .unwrap_or_default();
                    ec2.client
                        .modify_instance_attribute()
                        .instance_id(id)
                        .set_groups(Some(groups))
                        .send()
                        .await
                        .map_err(cloud_error)?;
                }
                InstanceField::InstanceType => {
                    ec2.resize(id, state_of(i), &t.spec.instance_type).await?
                }
                InstanceField::ImageId | InstanceField::SubnetId | InstanceField::KeyName => {}
            }
        }
        Ok(())
    }

    /// Nothing blocks a termination: no dependents to wait for.
    async fn delete(ec2: &Ec2, i: &sdk::Instance) -> Result<Deletion, CloudError> {
        let req = ec2.client.terminate_instances().instance_ids(i.id());
        match req.send().await {
            Ok(_) => Ok(Deletion::Done),
            Err(e) if is_not_found(&e) => Ok(Deletion::Done),
            Err(e) => Err(cloud_error(e)),
        }
    }
}

impl Ec2 {
    /// One step of an instance type change, which AWS allows only while the
    /// instance is stopped: stop it, then (on a later reconcile, once
    /// stopped) change the type and start it.
    async fn resize(
        &self,
        id: &str,
        state: Option<&InstanceStateName>,
        instance_type: &str,
    ) -> Result<(), CloudError> {
        match state {
            Some(InstanceStateName::Running) => {
                self.client
                    .stop_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(cloud_error)?;
            }
            Some(InstanceStateName::Stopped) => {
                self.client
                    .modify_instance_attribute()
                    .instance_id(id)
                    .instance_type(AttributeValue::builder().value(instance_type).build())
                    .send()
                    .await
                    .map_err(cloud_error)?;
                self.client
                    .start_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(cloud_error)?;
            }
            // pending, stopping: wait for the next reconcile.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_and_fit() {
        let a = client_token(&["infra/web", "Instance", "ami-1", "t3.micro"]);
        assert_eq!(
            a,
            client_token(&["infra/web", "Instance", "ami-1", "t3.micro"])
        );
        assert_ne!(
            a,
            client_token(&["infra/web2", "Instance", "ami-1", "t3.micro"])
        );
        // Parts are delimited: moving a character between parts changes the token.
        assert_ne!(client_token(&["ab", "c"]), client_token(&["a", "bc"]));
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
        // Fixed forever: a restarted controller must compute the same token.
        assert_eq!(client_token(&["x"]), "dl-af63f54c86021707e5c9cd3722c3158e");
    }
}
