//! `Volume` (aws.driftless.dev/v1alpha1): an EBS volume. Size, type, IOPS
//! and throughput change online (ModifyVolume); a size decrease is refused at
//! admission, since EBS volumes only grow. Deletion waits while attached.

use super::prelude::*;
use super::waiting_on;
use crate::errors::code_of;

fn gp3() -> String {
    "gp3".to_string()
}

/// The desired state of an EBS volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.size) || has(self.snapshotId)", "message": "size is required unless snapshotId is set"},
    {"rule": "!(has(self.volumeType) && self.volumeType in ['io1', 'io2']) || has(self.iops)", "message": "iops is required for io1 and io2 volumes"},
    {"rule": "!has(self.iops) || !has(self.volumeType) || self.volumeType in ['gp3', 'io1', 'io2']", "message": "iops can be set only for gp3, io1 and io2 volumes"},
    {"rule": "!has(self.throughput) || !has(self.volumeType) || self.volumeType == 'gp3'", "message": "throughput can be set only for gp3 volumes"},
    {"rule": "!has(self.size) || !has(self.volumeType) || !(self.volumeType in ['st1', 'sc1']) || self.size >= 125", "message": "size of an st1 or sc1 volume must be at least 125 GiB"},
    {"rule": "!has(self.size) || !has(self.volumeType) || self.volumeType != 'standard' || self.size <= 1024", "message": "size of a standard volume must be at most 1024 GiB"},
    {"rule": "!has(self.kmsKeyId) || (has(self.encrypted) && self.encrypted)", "message": "kmsKeyId requires encrypted: true"}
]))]
pub struct VolumeParameters {
    /// The zone of the volume, e.g. `us-east-1a`: it attaches only to
    /// instances there. Immutable.
    #[schemars(length(min = 1), extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "availabilityZone is immutable: a volume cannot move to another zone"}]))]
    pub availability_zone: String,
    /// Size in GiB (unset: the snapshot's). It can grow, online; it cannot shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536), extend("x-kubernetes-validations" = [{
        "rule": "self >= oldSelf",
        "message": "size cannot decrease: an EBS volume can only grow"
    }]))]
    pub size: Option<i32>,
    /// `gp3` (the default), `gp2`, `io1`, `io2`, `st1`, `sc1` or `standard`.
    #[serde(default = "gp3")]
    #[schemars(extend("enum" = ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"]))]
    pub volume_type: String,
    /// Provisioned IOPS: gp3, io1, io2 (required for io1 and io2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 256000))]
    pub iops: Option<i32>,
    /// Throughput in MiB/s: gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 125, max = 2000))]
    pub throughput: Option<i32>,
    /// Encrypt the volume (unset: the account's default, and not compared). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The KMS key that encrypts it: its id or ARN. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The snapshot to create it from, e.g. `snap-0123...`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Tags of the volume. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the volume.
    pub struct VolumeObservation {
        volume_id: String,
        /// creating, available, in-use, deleting, deleted or error.
        state: String,
        size: i32,
        volume_type: String,
        iops: i32,
        throughput: i32,
        encrypted: bool,
        /// Each attachment as `<instance> <device> (<state>)`.
        attachments: Vec<String>,
    }
}

field_keys! {
    /// What a volume's observation compares.
    pub enum VolumeField {
        AvailabilityZone = "availabilityZone" immutable,
        Encrypted = "encrypted" immutable,
        KmsKeyId = "kmsKeyId" immutable,
        SnapshotId = "snapshotId" immutable,
        Size = "size",
        VolumeType = "volumeType",
        Iops = "iops",
        Throughput = "throughput",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EBS volume. Its id (`vol-...`) is recorded in the
    /// `driftless.dev/external-name` annotation; set that annotation by hand
    /// to import an existing volume.
    kind Volume("Volume"), spec VolumeSpec, status VolumeStatus("VolumeStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider VolumeParameters, at_provider VolumeObservation, fields VolumeField,
    references(),
}

fn state_of(v: &sdk::Volume) -> &str {
    v.state().map_or("", sdk::VolumeState::as_str)
}

described!(sdk::Volume, "volume", volume_id, describe_volumes, volume_ids, volumes {
    fn gone(&self) -> bool {
        state_of(self) == "deleted"
    }

    fn state(&self) -> (String, bool) {
        let state = state_of(self);
        (state.to_string(), matches!(state, "available" | "in-use"))
    }
});

/// The instances `v` is attached to (or attaching, detaching), by id.
pub(crate) fn attached_to(v: &sdk::Volume) -> Vec<&str> {
    v.attachments()
        .iter()
        .filter(|a| a.state().is_none_or(|s| s.as_str() != "detached"))
        .filter_map(|a| a.instance_id())
        .collect()
}

/// Each attachment of `v` as `<instance> <device> (<state>)`.
fn attachments(v: &sdk::Volume) -> Vec<String> {
    let text = |a: &sdk::VolumeAttachment| {
        let state = a.state().map_or("", sdk::VolumeAttachmentState::as_str);
        let (i, d) = (a.instance_id().unwrap_or(""), a.device().unwrap_or(""));
        format!("{i} {d} ({state})")
    };
    v.attachments().iter().map(text).collect()
}

#[async_trait]
impl Ec2Kind for Volume {
    type Sdk = sdk::Volume;

    async fn observe(_ec2: &Ec2, t: &Target<'_, Volume>, v: &sdk::Volume) -> Observed<Volume> {
        let s = t.spec;
        let mut diff = Vec::new();
        let zone = v.availability_zone().unwrap_or_default();
        diff.compare(
            VolumeField::AvailabilityZone,
            zone,
            Some(&s.availability_zone),
        );
        let encrypted = v.encrypted().unwrap_or_default();
        diff.compare(VolumeField::Encrypted, encrypted, s.encrypted);
        let key = v.kms_key_id().unwrap_or_default();
        // AWS reports an ARN; the spec may give the key's id.
        let other_key = s.kms_key_id.as_ref().filter(|w| !key.ends_with(w.as_str()));
        diff.compare(VolumeField::KmsKeyId, key, other_key);
        let snapshot = v.snapshot_id().unwrap_or_default();
        diff.compare(VolumeField::SnapshotId, snapshot, s.snapshot_id.as_ref());
        diff.compare(VolumeField::Size, v.size().unwrap_or_default(), s.size);
        let kind = v.volume_type().map_or("", sdk::VolumeType::as_str);
        diff.compare(VolumeField::VolumeType, kind, Some(s.volume_type.as_str()));
        diff.compare(VolumeField::Iops, v.iops().unwrap_or_default(), s.iops);
        let throughput = v.throughput().unwrap_or_default();
        diff.compare(VolumeField::Throughput, throughput, s.throughput);
        diff.extend(tags_diff(VolumeField::Tags, v, t.identity, &s.tags));
        let (state, ready) = Described::state(v);
        Ok(Observation {
            diff,
            ready,
            at_provider: Some(VolumeObservation {
                volume_id: Some(v.id().to_string()),
                state: Some(state),
                size: v.size(),
                volume_type: Some(kind.to_string()),
                iops: v.iops(),
                throughput: v.throughput(),
                encrypted: v.encrypted(),
                attachments: Some(attachments(v)),
            }),
            connection_details: BTreeMap::from([("volumeId".to_string(), v.id().to_string())]),
            ..Observation::exists(v.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, Volume>) -> Result<Created, CloudError> {
        let s = t.spec;
        let tags = tag_specification(ResourceType::Volume, t.identity, &s.tags);
        // One ClientToken per call, so the SDK's retries of it make one
        // volume (LocalStack ignores it: the owner tags find a lost one).
        let token = format!("dl-{:016x}", rand::random::<u64>());
        let req = ec2.client.create_volume().client_token(token);
        let out = req
            .availability_zone(&s.availability_zone)
            .set_size(s.size)
            .volume_type(sdk::VolumeType::from(s.volume_type.as_str()))
            .set_iops(s.iops)
            .set_throughput(s.throughput)
            .set_encrypted(s.encrypted)
            .set_kms_key_id(s.kms_key_id.clone())
            .set_snapshot_id(s.snapshot_id.clone())
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let id = new_id(out.volume_id(), "CreateVolume returned no volume id")?;
        let _written = ec2.created::<sdk::Volume>(t.identity, &id);
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, Volume>,
        v: &sdk::Volume,
        fields: Vec<VolumeField>,
    ) -> Result<(), CloudError> {
        let mut modify = false;
        for field in fields {
            match field {
                VolumeField::Tags => ec2.sync_tags(v, t.identity, &t.spec.tags).await?,
                VolumeField::Size
                | VolumeField::VolumeType
                | VolumeField::Iops
                | VolumeField::Throughput => modify = true,
                // Immutable: refused before update.
                VolumeField::AvailabilityZone
                | VolumeField::Encrypted
                | VolumeField::KmsKeyId
                | VolumeField::SnapshotId => {}
            }
        }
        if modify {
            ec2.modify_volume(v, t.spec).await?;
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, v: &sdk::Volume) -> Result<Deletion, CloudError> {
        let id = v.id();
        // Read fresh: the snapshot may predate an attachment.
        let Some(fresh) = sdk::Volume::describe_one(&ec2.client, id).await? else {
            return Ok(Deletion::Done);
        };
        let on = attached_to(&fresh).join(", instance ");
        if !on.is_empty() {
            let why =
                format!("attached to instance {on}; detach it first (delete its VolumeAttachment)");
            return Ok(Deletion::Waiting(waiting_on("volume", id, &[], &why)));
        }
        let sent = ec2.client.delete_volume().volume_id(id).send().await;
        match sent {
            // Attached since it was read.
            Err(e) if code_of(&e) == Some("VolumeInUse") => {
                let why = waiting_on(sdk::Volume::WHAT, id, &[], &cloud_error(e).to_string());
                Ok(Deletion::Waiting(why))
            }
            sent => ec2.deletion(v, sent).await,
        }
    }
}

impl Ec2 {
    /// One ModifyVolume to the spec's size, type, IOPS and throughput,
    /// unless a modification is still under way (AWS refuses another until
    /// it is done): then an error that says so, retried with backoff. Asked
    /// only when something differs, so an idle volume costs no call.
    async fn modify_volume(&self, v: &sdk::Volume, s: &VolumeParameters) -> Result<(), CloudError> {
        let id = v.id();
        if let (Some(want), Some(have)) = (s.size, v.size()) {
            if want < have {
                let why = format!("size cannot decrease (volume {id} has {have} GiB, the spec asks {want} GiB): an EBS volume can only grow");
                return Err(CloudError::terminal("InvalidParameterValue", why));
            }
        }
        let req = self.client.describe_volumes_modifications().volume_ids(id);
        let out = req.send().await.map_err(cloud_error)?;
        let busy = out.volumes_modifications().iter().find_map(|m| {
            let state = m.modification_state().map_or("", |s| s.as_str());
            matches!(state, "modifying" | "optimizing").then(|| (state, m.progress()))
        });
        if let Some((state, done)) = busy {
            let done = done.unwrap_or_default();
            let why = format!("volume {id} is still being modified ({state}, {done}% done): the next change waits for it to finish");
            return Err(CloudError::retryable("IncorrectModificationState", why));
        }
        let req = self.client.modify_volume().volume_id(id).set_size(s.size);
        req.volume_type(sdk::VolumeType::from(s.volume_type.as_str()))
            .set_iops(s.iops)
            .set_throughput(s.throughput)
            .send()
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}
