//! Objects waiting for a reference target to become Ready, woken the moment
//! it does, instead of on their next retry. A Subnet applied together with
//! its Vpc is created as soon as the Vpc is Ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What an object waits for: a kind in a namespace, and the target's name,
/// or `None` for "any object of that kind" (a selector with no match yet).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Awaited {
    pub kind: String,
    pub namespace: String,
    pub name: Option<String>,
}

type Wake = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct Waiters {
    /// Per target, the waiting objects (by `kind/namespace/name`, so that a
    /// retry replaces rather than adds) and how to wake each.
    waiting: Mutex<HashMap<Awaited, HashMap<String, Wake>>>,
    /// Counts Ready events, so that a target that turned Ready while its
    /// waiter was still looking at it is not missed.
    epoch: AtomicU64,
}

impl Waiters {
    /// Read before resolving references; hand it to [`Self::wait`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Registers `waiter` (a unique key for the waiting object) to be woken
    /// by `wake` when `target` becomes Ready. If anything turned Ready since
    /// `since` (an [`Self::epoch`] read before the target was looked at), it
    /// may have been this target: `wake` is called at once instead.
    pub fn wait(&self, target: Awaited, waiter: String, since: u64, wake: Wake) {
        let mut waiting = self.waiting.lock().expect("waiters poisoned");
        if self.epoch.load(Ordering::SeqCst) != since {
            drop(waiting);
            wake();
            return;
        }
        waiting.entry(target).or_default().insert(waiter, wake);
    }

    /// `kind` `namespace/name` is Ready: wakes whoever waits for it (or for
    /// any object of its kind there). Returns how many were woken.
    pub fn ready(&self, kind: &str, namespace: &str, name: &str) -> usize {
        let mut woken = Vec::new();
        {
            let mut waiting = self.waiting.lock().expect("waiters poisoned");
            self.epoch.fetch_add(1, Ordering::SeqCst);
            if waiting.is_empty() {
                return 0;
            }
            for name in [Some(name.to_string()), None] {
                let key = Awaited {
                    kind: kind.to_string(),
                    namespace: namespace.to_string(),
                    name,
                };
                if let Some(w) = waiting.remove(&key) {
                    woken.extend(w.into_values());
                }
            }
        }
        for wake in &woken {
            wake();
        }
        woken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn target(name: Option<&str>) -> Awaited {
        Awaited {
            kind: "Vpc".into(),
            namespace: "ns".into(),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn wakes_waiters_of_that_target_once_and_dedupes_retries() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Waiters::default();
        for _ in 0..3 {
            // The same Subnet retrying registers once.
            let woken = woken.clone();
            w.wait(
                target(Some("main")),
                "Subnet/ns/a".into(),
                w.epoch(),
                Box::new(move || {
                    woken.fetch_add(1, Ordering::SeqCst);
                }),
            );
        }
        let other = woken.clone();
        w.wait(
            target(Some("other")),
            "Subnet/ns/b".into(),
            w.epoch(),
            Box::new(move || {
                other.fetch_add(100, Ordering::SeqCst);
            }),
        );
        assert_eq!(w.ready("Vpc", "elsewhere", "main"), 0);
        assert_eq!(w.ready("Vpc", "ns", "main"), 1);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(w.ready("Vpc", "ns", "main"), 0, "woken once");
    }

    #[test]
    fn a_selector_with_no_match_waits_for_any_object_of_the_kind() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Waiters::default();
        let n = woken.clone();
        w.wait(
            target(None),
            "SecurityGroup/ns/web".into(),
            w.epoch(),
            Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(w.ready("Vpc", "ns", "anything"), 1);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_target_ready_while_its_waiter_looked_wakes_at_once() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Waiters::default();
        let since = w.epoch();
        // The Vpc turns Ready between the Subnet's look and its wait.
        assert_eq!(w.ready("Vpc", "ns", "main"), 0);
        let n = woken.clone();
        w.wait(
            target(Some("main")),
            "Subnet/ns/a".into(),
            since,
            Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(woken.load(Ordering::SeqCst), 1, "not left waiting");
    }
}
