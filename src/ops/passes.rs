//! Finished reconcile passes per object: how a test (or a benchmark) sees
//! that the controller looked at an object again, without sleeping.
//!
//! One `u64` per `(kind, namespace, name)` ever reconciled by this process;
//! entries are small (the key and a counter), so 10k objects cost about a
//! megabyte: the controller process keeps them off ([`Passes::off`]), tests
//! turn them on. A pass is counted when the reconcile entry point returns,
//! however it returns (success, error, or an early `await_change`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Counts finished reconcile passes per object; waiters are woken on every
/// pass (no polling).
pub struct Passes {
    /// `None`: counting is off, and passes cost nothing.
    counts: Option<Mutex<HashMap<Box<str>, u64>>>,
    /// Bumped on every pass; a waiter re-checks its object when it changes.
    tick: watch::Sender<u64>,
}

impl Default for Passes {
    fn default() -> Self {
        Self {
            counts: Some(Mutex::default()),
            tick: watch::Sender::new(0),
        }
    }
}

fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// Counts one pass of its object when dropped: hold it for the length of a
/// reconcile (`let _pass = passes.pass(..)`).
#[must_use = "the pass is counted when this guard is dropped"]
pub struct Pass<'a> {
    passes: &'a Passes,
    key: String,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let key = std::mem::take(&mut self.key);
        self.passes.finished(key);
    }
}

impl Passes {
    /// Counts nothing (the controller process: only tests read counts).
    pub fn off() -> Self {
        Self {
            counts: None,
            ..Self::default()
        }
    }

    /// A pass of the object begins; it is counted when the guard drops.
    pub fn pass(&self, kind: &str, namespace: &str, name: &str) -> Pass<'_> {
        let key = match self.counts {
            Some(_) => key(kind, namespace, name),
            None => String::new(),
        };
        Pass { passes: self, key }
    }

    fn finished(&self, key: String) {
        let Some(counts) = &self.counts else {
            return;
        };
        {
            let mut counts = counts.lock().expect("passes poisoned");
            match counts.get_mut(key.as_str()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(key.into_boxed_str(), 1);
                }
            }
        }
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// Finished passes of the object so far.
    pub fn count(&self, kind: &str, namespace: &str, name: &str) -> u64 {
        let Some(counts) = &self.counts else {
            return 0;
        };
        let counts = counts.lock().expect("passes poisoned");
        counts
            .get(key(kind, namespace, name).as_str())
            .copied()
            .unwrap_or(0)
    }

    /// Waits until the object has finished at least `at_least` passes.
    /// `Ok(count)` then, `Err(count)` if `timeout` passes first.
    pub async fn wait_until(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        at_least: u64,
        timeout: Duration,
    ) -> Result<u64, u64> {
        // Subscribed before the first check: a pass between the check and
        // the wait still wakes us.
        let mut tick = self.tick.subscribe();
        let reached = async {
            loop {
                let n = self.count(kind, namespace, name);
                if n >= at_least {
                    return n;
                }
                if tick.changed().await.is_err() {
                    // Cannot happen: `self` holds the sender.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, reached)
            .await
            .map_err(|_| self.count(kind, namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn counts_per_object_and_wakes_waiters() {
        let passes = Arc::new(Passes::default());
        assert_eq!(passes.count("Vpc", "ns", "a"), 0);
        drop(passes.pass("Vpc", "ns", "a"));
        assert_eq!(passes.count("Vpc", "ns", "a"), 1);
        assert_eq!(passes.count("Vpc", "ns", "b"), 0);
        assert_eq!(passes.count("Subnet", "ns", "a"), 0);

        let waiter = {
            let passes = passes.clone();
            tokio::spawn(async move {
                passes
                    .wait_until("Vpc", "ns", "a", 3, Duration::from_secs(10))
                    .await
            })
        };
        for _ in 0..2 {
            drop(passes.pass("Vpc", "ns", "b"));
            drop(passes.pass("Vpc", "ns", "a"));
        }
        assert_eq!(waiter.await.unwrap(), Ok(3));
        assert_eq!(
            passes
                .wait_until("Vpc", "ns", "b", 5, Duration::from_millis(50))
                .await,
            Err(2)
        );
    }
}
