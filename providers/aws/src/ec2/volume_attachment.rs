//! `VolumeAttachment` (aws.driftless.dev/v1alpha1): an EBS volume attached
//! to an instance at a device. AWS gives an attachment neither an id nor
//! tags, so it is not an [`Ec2Kind`] (found by owner tags) but implements
//! [`External`] itself: its external name is `<volume-id>:<instance-id>`,
//! known from the spec alone, and it is observed in its volume's entry of the
//! `Volume` kind's batched DescribeVolumes listing (the same call: nothing
//! more per poll for a volume driftless manages; a volume it does not manage
//! is read by id). An existing attachment of that volume to that instance is
//! adopted, so a create whose answer was lost is never repeated.

use std::sync::Arc;

use driftless_provider::{External, Owned};

use super::instance::Instance;
use super::is_not_found;
use super::prelude::*;
use super::volume::{attached_to, Volume};
use crate::errors::code_of;

reference! {
    /// The volume to attach.
    pub struct AttachedVolume(one Volume = "Volume") {
        /// The volume's id. Immutable.
        id "volumeId", by_ref "volumeRef", selector "volumeSelector"
    }
}

reference! {
    /// The instance it is attached to (in the volume's zone).
    pub struct AttachedInstance(one Instance = "Instance") {
        /// The instance's id. Immutable.
        id "instanceId", by_ref "instanceRef", selector "instanceSelector"
    }
}

/// The desired state of a volume attachment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = AttachedVolume::required, transform = AttachedInstance::required)]
pub struct VolumeAttachmentParameters {
    #[serde(flatten)]
    pub volume: AttachedVolume,
    #[serde(flatten)]
    pub instance: AttachedInstance,
    /// The device name the instance sees, e.g. `/dev/sdf` (`xvdf` on
    /// Windows). Immutable.
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^(/dev/(sd|xvd|hd)[a-z]{1,2}|xvd[a-z]{1,2})$')", "message": "device must be a device name such as /dev/sdf, /dev/xvdf or xvdf"},
        {"rule": "self == oldSelf", "message": "device is immutable: delete the VolumeAttachment and create another"}
    ]))]
    pub device: String,
}

observation! {
    /// What AWS reports about the attachment.
    pub struct VolumeAttachmentObservation {
        volume_id: String,
        instance_id: String,
        device: String,
        /// attaching, attached, detaching or busy.
        state: String,
        delete_on_termination: bool,
    }
}

field_keys! {
    /// What an attachment's observation compares: all of it is immutable.
    pub enum VolumeAttachmentField {
        VolumeId = "volumeId" immutable,
        InstanceId = "instanceId" immutable,
        Device = "device" immutable,
    }
}

managed_resource! {
    /// An EBS volume attached to an EC2 instance. Its external name is
    /// `<volume-id>:<instance-id>`.
    kind VolumeAttachment("VolumeAttachment"), spec VolumeAttachmentSpec, status VolumeAttachmentStatus("VolumeAttachmentStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider VolumeAttachmentParameters, at_provider VolumeAttachmentObservation,
    fields VolumeAttachmentField,
    references(volume, instance),
}

impl crate::AwsKind for VolumeAttachment {
    fn external(
        session: &crate::AwsSession,
        _: &VolumeAttachmentParameters,
    ) -> Arc<dyn External<Self>> {
        Arc::new(Ec2::new(session))
    }
}

/// The external name: the annotation, else what the spec's references resolve to.
fn name_of(t: &Target<'_, VolumeAttachment>) -> Option<String> {
    let from_spec = || {
        let volume = resolved(t, AttachedVolume::FIELD)?;
        Some(format!(
            "{volume}:{}",
            resolved(t, AttachedInstance::FIELD)?
        ))
    };
    t.external_name.map(str::to_string).or_else(from_spec)
}

fn split(name: &str) -> Result<(&str, &str), CloudError> {
    name.split_once(':').ok_or_else(|| {
        let why = format!("external name {name:?} is not <volume-id>:<instance-id>");
        CloudError::terminal("InvalidExternalName", why)
    })
}

/// The attachment of `v` to `instance`, unless detached.
fn attachment<'a>(v: &'a sdk::Volume, instance: &str) -> Option<&'a sdk::VolumeAttachment> {
    let detached = |a: &sdk::VolumeAttachment| a.state().is_some_and(|s| s.as_str() == "detached");
    v.attachments()
        .iter()
        .find(|a| a.instance_id() == Some(instance) && !detached(a))
}

fn state_of(a: &sdk::VolumeAttachment) -> &str {
    a.state().map_or("", sdk::VolumeAttachmentState::as_str)
}

#[async_trait]
impl External<VolumeAttachment> for Ec2 {
    async fn observe(&self, t: &Target<'_, VolumeAttachment>) -> Observed<VolumeAttachment> {
        let Some(name) = name_of(t) else {
            return Ok(Observation::absent());
        };
        let (volume, instance) = split(&name)?;
        let v = self.by_id::<sdk::Volume>(volume).await?;
        let Some(a) = v.as_ref().and_then(|v| attachment(v, instance)) else {
            return Ok(Observation::absent());
        };
        let device = a.device().unwrap_or_default();
        let mut diff = Vec::new();
        diff.compare(
            VolumeAttachmentField::VolumeId,
            volume,
            resolved(t, AttachedVolume::FIELD),
        );
        let want = resolved(t, AttachedInstance::FIELD);
        diff.compare(VolumeAttachmentField::InstanceId, instance, want);
        diff.compare(VolumeAttachmentField::Device, device, Some(&t.spec.device));
        let ids = [
            ("volumeId", volume),
            ("instanceId", instance),
            ("device", device),
        ];
        Ok(Observation {
            diff,
            ready: state_of(a) == "attached",
            at_provider: Some(VolumeAttachmentObservation {
                volume_id: Some(volume.to_string()),
                instance_id: Some(instance.to_string()),
                device: Some(device.to_string()),
                state: Some(state_of(a).to_string()),
                delete_on_termination: a.delete_on_termination(),
            }),
            connection_details: ids.map(|(k, v)| (k.to_string(), v.to_string())).into(),
            ..Observation::exists(&name)
        })
    }

    async fn create(&self, t: &Target<'_, VolumeAttachment>) -> Result<Created, CloudError> {
        let how = "volumeId, volumeRef or volumeSelector";
        let volume = required(t, AttachedVolume::FIELD, how)?;
        let how = "instanceId, instanceRef or instanceSelector";
        let instance = required(t, AttachedInstance::FIELD, how)?;
        let _written = self.writing::<sdk::Volume>(volume);
        let req = self
            .client
            .attach_volume()
            .volume_id(volume)
            .instance_id(instance);
        match req.device(&t.spec.device).send().await {
            Ok(_) => {}
            // Attached already: here (a create whose answer was lost: adopt
            // it; LocalStack answers success instead) or elsewhere.
            Err(e) if code_of(&e) == Some("VolumeInUse") => {
                let v = sdk::Volume::describe_one(&self.client, volume).await?;
                let on = v.as_ref().map(attached_to).unwrap_or_default();
                if !on.contains(&instance) {
                    let why = format!(
                        "volume {volume} is attached to instance {}: detach it there first",
                        on.join(", instance ")
                    );
                    return Err(CloudError::retryable("VolumeInUse", why));
                }
            }
            Err(e) => return Err(cloud_error(e)),
        }
        Ok(Created {
            external_name: format!("{volume}:{instance}"),
        })
    }

    /// Everything compared is immutable: a difference is refused before this.
    async fn update(
        &self,
        _: &Target<'_, VolumeAttachment>,
        _: &Observation<VolumeAttachment>,
    ) -> Result<(), CloudError> {
        Ok(())
    }

    /// Detaches, then waits (read fresh) until the attachment is gone.
    async fn delete(&self, t: &Target<'_, VolumeAttachment>) -> Result<Deletion, CloudError> {
        let Some(name) = name_of(t) else {
            return Ok(Deletion::Done);
        };
        let (volume, instance) = split(&name)?;
        let _written = self.writing::<sdk::Volume>(volume);
        let v = sdk::Volume::describe_one(&self.client, volume).await?;
        let Some(a) = v.as_ref().and_then(|v| attachment(v, instance)) else {
            return Ok(Deletion::Done);
        };
        let detaching = Deletion::Waiting(format!("volume attachment {name} is detaching"));
        if state_of(a) == "detaching" {
            return Ok(detaching);
        }
        let req = self
            .client
            .detach_volume()
            .volume_id(volume)
            .instance_id(instance);
        match req.set_device(a.device().map(str::to_string)).send().await {
            Ok(_) => Ok(detaching),
            // InvalidAttachment.NotFound: detached meanwhile.
            Err(e) if is_not_found(&e) => Ok(Deletion::Done),
            Err(e) => Err(cloud_error(e)),
        }
    }

    /// An attachment carries no tags, so push mode's `get` and `--prune`
    /// cannot find it: it goes when its instance or volume is deleted.
    async fn list_owned(&self) -> Result<Vec<Owned>, CloudError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_name_is_volume_then_instance() {
        assert_eq!(split("vol-1:i-2").unwrap(), ("vol-1", "i-2"));
        let err = split("vol-1").unwrap_err();
        assert!(err.message.contains("<volume-id>:<instance-id>"), "{err}");
    }

    #[test]
    fn a_detached_attachment_does_not_count() {
        let on = |i: &str, state: &str| {
            let state = sdk::VolumeAttachmentState::from(state);
            sdk::VolumeAttachment::builder()
                .instance_id(i)
                .state(state)
                .build()
        };
        let v = sdk::Volume::builder()
            .attachments(on("i-1", "detached"))
            .attachments(on("i-2", "attached"))
            .build();
        assert!(attachment(&v, "i-1").is_none());
        assert_eq!(
            attachment(&v, "i-2").and_then(|a| a.instance_id()),
            Some("i-2")
        );
        assert_eq!(attached_to(&v), ["i-2"]);
    }
}
