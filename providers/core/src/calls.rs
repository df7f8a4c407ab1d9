//! Counting cloud API calls: what the metrics endpoint, the tests and the
//! benchmarks read to prove that observation is cheap.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One counted call: service, operation and outcome ("ok" or the error code).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub service: String,
    pub operation: String,
    pub outcome: String,
}

/// A thread-safe tally of cloud API calls.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<CallKey, u64>>,
}

impl CallCounter {
    pub fn record(&self, service: &str, operation: &str, outcome: &str) {
        let key = CallKey {
            service: service.to_string(),
            operation: operation.to_string(),
            outcome: outcome.to_string(),
        };
        *self
            .counts
            .lock()
            .expect("call counter poisoned")
            .entry(key)
            .or_default() += 1;
    }

    /// A copy of every count so far.
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.counts.lock().expect("call counter poisoned").clone()
    }

    /// Total calls of one operation, whatever the outcome.
    pub fn operation_total(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| k.operation == operation)
            .map(|(_, v)| v)
            .sum()
    }

    /// Total calls of every operation.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_and_total() {
        let c = CallCounter::default();
        c.record("s3", "HeadBucket", "ok");
        c.record("s3", "HeadBucket", "NotFound");
        c.record("s3", "CreateBucket", "ok");
        assert_eq!(c.operation_total("HeadBucket"), 2);
        assert_eq!(c.operation_total("CreateBucket"), 1);
        assert_eq!(c.total(), 3);
    }
}
