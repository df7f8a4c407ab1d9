//! Objects waiting for a reference target to become Ready, woken the moment
//! it does, instead of on their next retry. A Subnet applied together with
//! its Vpc is created as soon as the Vpc is Ready.

use std::collections::{HashMap, VecDeque};
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

/// How many recent Ready events are remembered to close the race between a
/// waiter's look at its target and its registration.
const RECENT: usize = 1024;

#[derive(Default)]
pub struct Waiters {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per target, the waiting objects (by `kind/namespace/name`, so that a
    /// retry replaces rather than adds) and how to wake each.
    waiting: HashMap<Awaited, HashMap<String, Wake>>,
    /// Ready events so far.
    epoch: u64,
    /// The last [`RECENT`] Ready events: (epoch, kind, namespace, name).
    recent: VecDeque<(u64, String, String, String)>,
}

impl State {
    /// Did `target` turn Ready after `since`? When that is no longer known
    /// (too many events since), assume it did: a spare look is harmless.
    fn ready_since(&self, target: &Awaited, since: u64) -> bool {
        if self.epoch == since {
            return false;
        }
        match self.recent.front() {
            Some((first, ..)) if *first <= since + 1 => {}
            _ => return true,
        }
        self.recent.iter().any(|(epoch, kind, ns, name)| {
            *epoch > since
                && *kind == target.kind
                && *ns == target.namespace
                && target.name.as_ref().is_none_or(|n| n == name)
        })
    }
}

impl Waiters {
    /// Read before resolving references; hand it to [`Self::wait`].
    pub fn epoch(&self) -> u64 {
        self.state.lock().expect("waiters poisoned").epoch
    }

    /// Registers `waiter` (a unique key for the waiting object) to be woken
    /// by `wake` when `target` becomes Ready. If the target turned Ready
    /// since `since` (an [`Self::epoch`] read before it was looked at),
    /// `wake` is called at once instead.
    pub fn wait(&self, target: Awaited, waiter: String, since: u64, wake: Wake) {
        let mut state = self.state.lock().expect("waiters poisoned");
        if state.ready_since(&target, since) {
            drop(state);
            wake();
            return;
        }
        state
            .waiting
            .entry(target)
            .or_default()
            .insert(waiter, wake);
    }

    /// `kind` `namespace/name` turned Ready: wakes whoever waits for it (or
    /// for any object of its kind there). Returns how many were woken.
    pub fn ready(&self, kind: &str, namespace: &str, name: &str) -> usize {
        let mut woken = Vec::new();
        {
            let mut state = self.state.lock().expect("waiters poisoned");
            state.epoch += 1;
            let epoch = state.epoch;
            if state.recent.len() == RECENT {
                state.recent.pop_front();
            }
            state.recent.push_back((
                epoch,
                kind.to_string(),
                namespace.to_string(),
                name.to_string(),
            ));
            for name in [Some(name.to_string()), None] {
                let key = Awaited {
                    kind: kind.to_string(),
                    namespace: namespace.to_string(),
                    name,
                };
                if let Some(w) = state.waiting.remove(&key) {
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

    /// A wake that counts its calls into the returned counter.
    fn counting() -> (Arc<AtomicUsize>, Wake) {
        let woken = Arc::new(AtomicUsize::new(0));
        let n = woken.clone();
        (
            woken,
            Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

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
        let w = Waiters::default();
        let (woken, wake) = counting();
        w.wait(target(None), "SecurityGroup/ns/web".into(), w.epoch(), wake);
        assert_eq!(w.ready("Vpc", "ns", "anything"), 1);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_target_ready_while_its_waiter_looked_wakes_at_once() {
        let w = Waiters::default();
        let since = w.epoch();
        // The Vpc turns Ready between the Subnet's look and its wait.
        assert_eq!(w.ready("Vpc", "ns", "main"), 0);
        let (woken, wake) = counting();
        w.wait(target(Some("main")), "Subnet/ns/a".into(), since, wake);
        assert_eq!(woken.load(Ordering::SeqCst), 1, "not left waiting");
    }

    #[test]
    fn another_target_turning_ready_does_not_wake() {
        let w = Waiters::default();
        let since = w.epoch();
        w.ready("Vpc", "ns", "other");
        let (woken, wake) = counting();
        w.wait(target(Some("main")), "Subnet/ns/a".into(), since, wake);
        assert_eq!(woken.load(Ordering::SeqCst), 0, "still waiting for main");
        w.ready("Vpc", "ns", "main");
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn too_many_events_since_the_look_wake_conservatively() {
        let w = Waiters::default();
        let since = w.epoch();
        for i in 0..(RECENT + 1) {
            w.ready("Vpc", "ns", &format!("v{i}"));
        }
        let (woken, wake) = counting();
        w.wait(target(Some("main")), "Subnet/ns/a".into(), since, wake);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
