//! The batched listings of the module docs, one per kind per
//! ProviderConfig, and the write marks that make an entry be re-read.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftless_provider::{CloudError, Identity};

use super::{tag_map, Described};

/// See [`super::Ec2::writing`].
pub(crate) struct Writing<R: Described> {
    pub(super) snapshot: Arc<Snapshot<R>>,
    pub(super) id: String,
}

impl<R: Described> Drop for Writing<R> {
    fn drop(&mut self) {
        self.snapshot.written(&self.id);
    }
}

/// The per-ProviderConfig snapshots, one per kind, made on first use (see
/// the module docs): keyed by type, so a new kind touches only its own file.
pub struct Ec2Snapshots {
    pub(super) max_age: Duration,
    by_kind: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Ec2Snapshots {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            by_kind: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn of<R: Described>(&self) -> Arc<Snapshot<R>> {
        let mut by_kind = self.by_kind.lock().expect("snapshots poisoned");
        let any = by_kind
            .entry(TypeId::of::<R>())
            .or_insert_with(|| Arc::new(Snapshot::<R>::default()))
            .clone();
        any.downcast().expect("snapshot keyed by its own type")
    }
}

impl fmt::Debug for Ec2Snapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Snapshots")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// The last listing of one kind, and the ids written since.
pub(crate) struct Snapshot<T> {
    /// Held while listing, so concurrent observes share one refresh.
    refresh: tokio::sync::Mutex<()>,
    state: Mutex<SnapshotState<T>>,
}

struct SnapshotState<T> {
    /// When the listing now held was started (`None`: never listed).
    taken: Option<Instant>,
    items: HashMap<String, T>,
    /// Ids written after `taken`, with when.
    written: HashMap<String, Instant>,
    /// Ids created after `taken`, by owner, with when.
    created: HashMap<String, (String, Instant)>,
    /// What a create returned, by id, with when: serves the next
    /// observation of that id once, in place of a re-read.
    made: HashMap<String, (T, Instant)>,
    /// The last listing that failed: when it failed, and why.
    failed: Option<(Instant, CloudError)>,
}

impl<T> Default for Snapshot<T> {
    fn default() -> Self {
        Self {
            refresh: tokio::sync::Mutex::new(()),
            state: Mutex::new(SnapshotState {
                taken: None,
                items: HashMap::new(),
                written: HashMap::new(),
                created: HashMap::new(),
                made: HashMap::new(),
                failed: None,
            }),
        }
    }
}

impl<T: Described> Snapshot<T> {
    pub(super) fn fresh(&self, max_age: Duration) -> bool {
        let state = self.state.lock().expect("snapshot poisoned");
        state.taken.is_some_and(|t| t.elapsed() < max_age)
    }

    pub(super) async fn refresh_if_older<F, Fut>(
        &self,
        max_age: Duration,
        list: F,
    ) -> Result<(), CloudError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, CloudError>>,
    {
        if self.fresh(max_age) {
            return Ok(());
        }
        let waiting_since = Instant::now();
        let _one_at_a_time = self.refresh.lock().await;
        if self.fresh(max_age) {
            return Ok(()); // another observe refreshed it while we waited
        }
        // A listing failed while we waited: share its error
        // rather than try again one after another (a hung endpoint would
        // hold every waiter's reconcile slot for a call timeout each).
        if let Some((at, err)) = &self.state.lock().expect("snapshot poisoned").failed {
            if *at >= waiting_since {
                return Err(err.clone());
            }
        }
        let started = Instant::now();
        let listed = list().await;
        let mut state = self.state.lock().expect("snapshot poisoned");
        let items = match listed {
            Ok(items) => items,
            Err(e) => {
                state.failed = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        state.failed = None;
        state.items = items.into_iter().map(|r| (r.id().to_string(), r)).collect();
        state.taken = Some(started);
        state.written.retain(|_, at| *at >= started);
        state.created.retain(|_, (_, at)| *at >= started);
        state.made.retain(|_, (_, at)| *at >= started);
        Ok(())
    }

    /// The listed resources that carry `identity`'s owner tags, and the ids
    /// created for it since the listing.
    pub(super) fn owned_by(&self, identity: &Identity) -> (Vec<T>, Vec<String>) {
        let state = self.state.lock().expect("snapshot poisoned");
        let listed = state
            .items
            .values()
            .filter(|r| identity.owns(&tag_map(r.tags())))
            .cloned()
            .collect();
        let created = state
            .created
            .get(&identity.owner())
            .map(|(id, _)| vec![id.clone()])
            .unwrap_or_default();
        (listed, created)
    }

    pub(super) fn created(&self, identity: &Identity, id: &str) {
        let mut state = self.state.lock().expect("snapshot poisoned");
        state
            .created
            .insert(identity.owner(), (id.to_string(), Instant::now()));
    }

    /// The entry for `id`, unless absent or written since the listing (then
    /// the caller re-reads it, once: the write mark is consumed here).
    pub(super) fn current(&self, id: &str) -> Option<T> {
        let mut state = self.state.lock().expect("snapshot poisoned");
        if let Some((r, _)) = state.made.remove(id) {
            // Still pending (as on AWS), it is re-read next time; ready, it
            // stands until the next listing, like a read by id.
            if r.state().1 {
                state.written.remove(id);
                state.items.insert(id.to_string(), r.clone());
            }
            return Some(r);
        }
        if state.written.remove(id).is_some() {
            return None;
        }
        state.items.get(id).cloned()
    }

    pub(super) fn store(&self, id: &str, item: Option<T>) {
        let mut state = self.state.lock().expect("snapshot poisoned");
        match item {
            Some(r) => state.items.insert(id.to_string(), r),
            None => state.items.remove(id),
        };
    }

    /// `r` is what the create of `id` returned: see `made` above.
    pub(super) fn made(&self, id: &str, r: T) {
        let mut state = self.state.lock().expect("snapshot poisoned");
        state.made.insert(id.to_string(), (r, Instant::now()));
    }

    pub(super) fn written(&self, id: &str) {
        let mut state = self.state.lock().expect("snapshot poisoned");
        state.written.insert(id.to_string(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Observes waiting on one failing listing share its error: one call,
    /// not one call timeout per waiter.
    #[tokio::test]
    async fn waiters_share_a_failed_listing() {
        let snapshot = Arc::new(Snapshot::<aws_sdk_ec2::types::Instance>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let observe = |snapshot: Arc<Snapshot<_>>, calls: Arc<AtomicUsize>| async move {
            snapshot
                .refresh_if_older(Duration::from_secs(60), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(CloudError::retryable("CallTimedOut", "no answer"))
                })
                .await
        };
        let waiters: Vec<_> = (0..8)
            .map(|_| tokio::spawn(observe(snapshot.clone(), calls.clone())))
            .collect();
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap_err().code, "CallTimedOut");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A later observe tries again.
        let _ = observe(snapshot.clone(), calls.clone()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    fn vpc(id: &str, state: aws_sdk_ec2::types::VpcState) -> aws_sdk_ec2::types::Vpc {
        aws_sdk_ec2::types::Vpc::builder()
            .vpc_id(id)
            .state(state)
            .build()
    }

    /// What a create returned serves the next observation in place of a
    /// re-read; ready, it stands until the next listing; still pending, the
    /// one after re-reads (None: read by id), so Ready is not held back.
    #[test]
    fn a_create_response_serves_the_next_observation_once_unless_ready() {
        use aws_sdk_ec2::types::VpcState;
        let snapshot = Snapshot::<aws_sdk_ec2::types::Vpc>::default();
        snapshot.written("vpc-1");
        snapshot.made("vpc-1", vpc("vpc-1", VpcState::Available));
        assert!(snapshot.current("vpc-1").is_some());
        assert!(snapshot.current("vpc-1").is_some(), "ready: it stands");

        snapshot.written("vpc-2");
        snapshot.made("vpc-2", vpc("vpc-2", VpcState::Pending));
        let served = snapshot.current("vpc-2").expect("served once");
        assert_eq!(served.state(), Some(&VpcState::Pending));
        assert!(snapshot.current("vpc-2").is_none(), "pending: re-read");
    }
}
