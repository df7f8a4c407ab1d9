//! What queues a reconcile: a change of an object's [`trigger_hash`] (its
//! spec generation, the start of deletion, an annotation such as pause or
//! external-name). Status and finalizer writes, including our own, do not:
//! that is what keeps errors from storming.
//!
//! Like kube's predicate filter, with one addition: the reconciler tells
//! which hash its own write of the external name leaves, so the watch event
//! of that write queues nothing (the create's pass has already observed
//! what it made and written Ready). A changed external name (an import by
//! hand) still queues a pass.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use driftless_provider::CREATE_PENDING;
use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use kube::Resource;

/// What queues a reconcile of an object of kind `K` besides its own
/// changes: a wake when a reference target turns Ready (see
/// [`super::waiters`]), and the triggers told of our own writes.
pub struct Queue<K: Resource> {
    pub wake: UnboundedSender<ObjectRef<K>>,
    pub triggers: Arc<Triggers>,
}

/// The last trigger hash of each object, by uid.
#[derive(Default)]
pub struct Triggers {
    seen: Mutex<HashMap<String, u64>>,
}

impl Triggers {
    /// Whether `obj` should queue a reconcile: its hash differs from the
    /// last one seen (or expected). Remembers it.
    pub fn changed<K: Resource>(&self, obj: &K) -> bool {
        let hash = trigger_hash(obj);
        let mut seen = self.seen.lock().expect("triggers poisoned");
        seen.insert(key(obj), hash) != Some(hash)
    }

    /// `obj` is what a write about to be made will leave: its event is not
    /// a change. (Recorded before the write, so the event cannot come first;
    /// a write that fails leaves a hash no event matches: one extra pass.)
    pub fn expect<K: Resource>(&self, obj: &K) {
        let mut seen = self.seen.lock().expect("triggers poisoned");
        seen.insert(key(obj), trigger_hash(obj));
    }

    /// `obj` is gone (its finalizer removed).
    pub fn forget<K: Resource>(&self, obj: &K) {
        self.seen
            .lock()
            .expect("triggers poisoned")
            .remove(&key(obj));
    }
}

fn key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match &meta.uid {
        Some(uid) => uid.clone(),
        None => format!("{:?}/{:?}", meta.namespace, meta.name),
    }
}

/// kubectl's client-side apply copy of the whole object: never read (the
/// cache drops it), and no trigger.
pub(super) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields whose change triggers a reconcile.
pub fn trigger_hash<K: Resource>(obj: &K) -> u64 {
    let mut h = DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    for (k, v) in obj.meta().annotations.iter().flatten() {
        // Our own create bookkeeping must not trigger another attempt.
        if k != LAST_APPLIED && k != CREATE_PENDING {
            (k, v).hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(annotations: &[(&str, &str)]) -> ConfigMap {
        let mut o = ConfigMap::default();
        o.metadata.uid = Some("u1".into());
        o.metadata.generation = Some(1);
        let pairs = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        o.metadata.annotations = Some(pairs.collect());
        o
    }

    #[test]
    fn an_expected_write_does_not_trigger_and_a_different_one_does() {
        let triggers = Triggers::default();
        assert!(triggers.changed(&object(&[])), "first sight");
        assert!(!triggers.changed(&object(&[(CREATE_PENDING, "now")])));
        let own = object(&[("driftless.dev/external-name", "vpc-1")]);
        triggers.expect(&own);
        assert!(!triggers.changed(&own), "our own write");
        let by_hand = object(&[("driftless.dev/external-name", "vpc-2")]);
        assert!(triggers.changed(&by_hand), "an import by hand");
        triggers.forget(&by_hand);
        assert!(triggers.changed(&by_hand), "forgotten: first sight again");
    }
}
