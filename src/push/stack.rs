//! A manifest set's managed objects in waves by reference: plan, apply
//! (independent objects in parallel), prune, get.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftless_provider::{CallCounter, CloudError, Deletion, Identity, Owned, RefSource};
use futures::StreamExt;

use super::unit::{Collect, KindLister, Planned, Unit};
use super::{key_of, prune_key, Key, Options, Progress, Step};
use crate::manifests::{namespace_or_default, reference_targets, Manifest};
use crate::registry::Providers;

/// The managed objects of a manifest set, in dependency order.
pub struct Stack {
    options: Options,
    /// Every cloud API call the stack's clients made.
    calls: Arc<CallCounter>,
    units: Vec<Arc<dyn Unit>>,
    listers: Vec<Arc<dyn KindLister>>,
    /// For each unit (by index), the units its references point at.
    depends_on: Vec<Vec<usize>>,
    /// For each unit, for each of its references, the units it points at.
    ref_targets: Vec<Vec<Vec<usize>>>,
    /// Units grouped in waves: each wave depends only on earlier ones.
    waves: Vec<Vec<usize>>,
}

impl Stack {
    /// Builds the stack from validated manifests; errors name the object.
    pub fn new(manifests: &[Manifest], options: Options) -> Result<Self, Vec<String>> {
        let mut collect = Collect {
            manifests,
            stack: &options.stack,
            units: Vec::new(),
            listers: Vec::new(),
            errors: Vec::new(),
        };
        let calls = Arc::new(CallCounter::default());
        Providers::new(calls.clone()).visit(&mut collect);
        let Collect {
            units,
            listers,
            mut errors,
            ..
        } = collect;
        let index: HashMap<Key, usize> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.key().clone(), i))
            .collect();
        let mut depends_on = Vec::new();
        let mut ref_targets = Vec::new();
        for u in &units {
            let mut per_ref = Vec::new();
            for r in u.references() {
                match reference_targets(&r, &u.key().namespace, manifests) {
                    Ok(targets) => per_ref.push(
                        targets
                            .iter()
                            .filter_map(|t| {
                                index
                                    .get(&Key {
                                        kind: t.kind().to_string(),
                                        namespace: namespace_or_default(t).to_string(),
                                        name: t.name().to_string(),
                                    })
                                    .copied()
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => {
                        errors.push(format!("{}: {e}", u.key()));
                        per_ref.push(Vec::new());
                    }
                }
            }
            let deps: BTreeSet<usize> = per_ref.iter().flatten().copied().collect();
            depends_on.push(deps.into_iter().collect::<Vec<_>>());
            ref_targets.push(per_ref);
        }
        let waves = waves(&depends_on).map_err(|cycle| {
            vec![format!(
                "references form a cycle: {}",
                cycle
                    .iter()
                    .map(|&i| units[i].key().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            )]
        })?;
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            options,
            calls,
            units,
            listers,
            depends_on,
            ref_targets,
            waves,
        })
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Cloud API calls made so far (what `plan` and `apply` report).
    pub fn cloud_calls(&self) -> u64 {
        self.calls.total()
    }

    /// The kinds of the stack's objects.
    pub fn kinds(&self) -> BTreeSet<String> {
        self.units.iter().map(|u| u.key().kind.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The ids of `unit`'s references, from the ids found so far; `None`
    /// while a target has no id yet.
    fn resolve(
        &self,
        unit: usize,
        ids: &HashMap<usize, String>,
    ) -> Option<BTreeMap<String, String>> {
        let u = &self.units[unit];
        let mut resolved = BTreeMap::new();
        for (r, targets) in u.references().iter().zip(&self.ref_targets[unit]) {
            let value = match &r.source {
                RefSource::Id(id) => id.clone(),
                RefSource::Ids(list) => list.join(","),
                _ => {
                    let targets: Vec<&str> = targets
                        .iter()
                        .map(|d| ids.get(d).map(String::as_str))
                        .collect::<Option<_>>()?;
                    targets.join(",")
                }
            };
            resolved.insert(r.field.to_string(), value);
        }
        Some(resolved)
    }

    /// What `apply` would do, object by object (prune included when asked).
    pub async fn plan(&self, prune: bool) -> Vec<(Key, Result<Step, CloudError>)> {
        let mut ids: HashMap<usize, String> = HashMap::new();
        let mut steps: HashMap<usize, Result<Step, CloudError>> = HashMap::new();
        for wave in &self.waves {
            let ids_so_far = &ids;
            let results: Vec<(usize, Result<Planned, CloudError>)> =
                futures::stream::iter(wave.iter().copied())
                    .map(|i| async move {
                        let Some(resolved) = self.resolve(i, ids_so_far) else {
                            // A target is new, so this cannot exist yet either.
                            let after = self.depends_on[i]
                                .iter()
                                .filter(|d| !ids_so_far.contains_key(d))
                                .map(|&d| self.units[d].key().clone())
                                .collect();
                            return (i, Ok((Step::Create { after }, None)));
                        };
                        (i, self.units[i].plan(&resolved).await)
                    })
                    .buffer_unordered(self.options.concurrency)
                    .collect()
                    .await;
            for (i, result) in results {
                steps.insert(
                    i,
                    result.map(|(step, id)| {
                        if let Some(id) = id {
                            ids.insert(i, id);
                        }
                        step
                    }),
                );
            }
        }
        let mut out: Vec<(Key, Result<Step, CloudError>)> = (0..self.units.len())
            .map(|i| {
                (
                    self.units[i].key().clone(),
                    steps.remove(&i).expect("every unit is planned"),
                )
            })
            .collect();
        if prune {
            match self.prunable().await {
                Ok(list) => out.extend(list.into_iter().map(|(_, id, owned)| {
                    (
                        key_of(&id),
                        Ok(Step::Delete {
                            external_name: owned.external_name,
                            orphan: id.orphan_on_prune,
                        }),
                    )
                })),
                Err(e) => out.push((prune_key(), Err(e))),
            }
        }
        out
    }

    /// Converges the cloud on the manifests, in dependency order, independent
    /// resources in parallel; `progress` hears of every finished object.
    pub async fn apply(
        &self,
        prune: bool,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Vec<(Key, Result<&'static str, CloudError>)> {
        let mut ids: HashMap<usize, String> = HashMap::new();
        let mut results: HashMap<usize, Result<&'static str, CloudError>> = HashMap::new();
        let mut done = 0;
        for wave in &self.waves {
            let finished = self
                .apply_wave(wave, &ids, &results, &mut done, progress)
                .await;
            for (i, result) in finished {
                let what = result.map(|(id, what)| {
                    ids.insert(i, id);
                    what
                });
                results.insert(i, what);
            }
        }
        let mut out: Vec<(Key, Result<&'static str, CloudError>)> = (0..self.units.len())
            .map(|i| {
                let result = results.remove(&i).expect("every unit is applied");
                (self.units[i].key().clone(), result)
            })
            .collect();
        // Never prune after a failure: a broken run must not remove what it
        // could not replace.
        if prune && out.iter().any(|(_, r)| r.is_err()) {
            let skipped = CloudError::terminal("PruneSkipped", "not pruned: some objects failed");
            out.push((prune_key(), Err(skipped)));
        } else if prune {
            out.extend(self.prune().await);
        }
        out
    }

    /// Applies one wave's units, independent ones in parallel, given the ids
    /// and results of earlier waves; reports each as it finishes.
    async fn apply_wave(
        &self,
        wave: &[usize],
        ids: &HashMap<usize, String>,
        earlier: &HashMap<usize, Result<&'static str, CloudError>>,
        done: &mut usize,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Vec<(usize, Result<(String, &'static str), CloudError>)> {
        let mut stream = futures::stream::iter(wave.iter().copied())
            .map(|i| async move {
                let started = Instant::now();
                (i, self.apply_unit(i, ids, earlier).await, started)
            })
            .buffer_unordered(self.options.concurrency);
        let mut finished = Vec::new();
        while let Some((i, result, started)) = stream.next().await {
            *done += 1;
            progress(Progress {
                done: *done,
                total: self.units.len(),
                key: self.units[i].key(),
                outcome: result
                    .as_ref()
                    .map(|(id, what)| (*what, id.as_str()))
                    .map_err(|e| e.to_string()),
                elapsed: started.elapsed(),
            });
            finished.push((i, result));
        }
        finished
    }

    /// Applies unit `i`, unless something it references failed.
    async fn apply_unit(
        &self,
        i: usize,
        ids: &HashMap<usize, String>,
        earlier: &HashMap<usize, Result<&'static str, CloudError>>,
    ) -> Result<(String, &'static str), CloudError> {
        let failed: Vec<String> = self.depends_on[i]
            .iter()
            .filter(|d| matches!(earlier.get(d), Some(Err(_))))
            .map(|&d| self.units[d].key().to_string())
            .collect();
        if !failed.is_empty() {
            let why = format!("not applied: {} failed", failed.join(", "));
            return Err(CloudError::terminal("DependencyFailed", why));
        }
        let resolved = self.resolve(i, ids).expect("earlier waves gave every id");
        self.units[i].apply(&resolved, self.options.timeout).await
    }

    /// The stack's resources in the cloud that the manifests no longer declare.
    async fn prunable(&self) -> Result<Vec<(Arc<dyn KindLister>, Identity, Owned)>, CloudError> {
        let declared: BTreeSet<Key> = self.units.iter().map(|u| u.key().clone()).collect();
        let mut out = Vec::new();
        for lister in &self.listers {
            for (id, owned) in lister.list(&self.options.stack).await? {
                if !declared.contains(&key_of(&id)) {
                    out.push((lister.clone(), id, owned));
                }
            }
        }
        Ok(out)
    }

    /// Deletes what [`Stack::prunable`] finds, except what says Orphan.
    /// Deletions that wait (a VPC with subnets) are retried while others go.
    async fn prune(&self) -> Vec<(Key, Result<&'static str, CloudError>)> {
        let list = match self.prunable().await {
            Ok(list) => list,
            Err(e) => return vec![(prune_key(), Err(e))],
        };
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for (lister, id, owned) in list {
            if id.orphan_on_prune {
                out.push((key_of(&id), Ok("orphaned")));
            } else {
                pending.push((lister, id, owned));
            }
        }
        let started = Instant::now();
        while !pending.is_empty() {
            let results: Vec<_> = futures::stream::iter(pending.drain(..))
                .map(|(lister, id, owned)| async move {
                    let r = lister.delete(&id, &owned.external_name).await;
                    (lister, id, owned, r)
                })
                .buffer_unordered(self.options.concurrency)
                .collect()
                .await;
            for (lister, id, owned, r) in results {
                match r {
                    Ok(Deletion::Done) => out.push((key_of(&id), Ok("deleted"))),
                    Ok(Deletion::Waiting(why)) if started.elapsed() > self.options.timeout => {
                        out.push((key_of(&id), Err(CloudError::retryable("Timeout", why))));
                    }
                    Ok(Deletion::Waiting(_)) => pending.push((lister, id, owned)),
                    Err(e) => out.push((key_of(&id), Err(e))),
                }
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        out
    }

    /// The stack's resources as the cloud has them, sorted.
    pub async fn get(&self) -> Result<Vec<(Key, Owned)>, CloudError> {
        let mut rows = Vec::new();
        for lister in &self.listers {
            for (id, owned) in lister.list(&self.options.stack).await? {
                rows.push((key_of(&id), owned));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }
}

/// Groups units so that each depends only on earlier groups (Kahn's
/// algorithm); on a cycle, returns the units on it.
fn waves(depends_on: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, Vec<usize>> {
    let mut wave_of: Vec<Option<usize>> = vec![None; depends_on.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut placed = 0;
    while placed < depends_on.len() {
        let ready: Vec<usize> = (0..depends_on.len())
            .filter(|&i| {
                wave_of[i].is_none() && depends_on[i].iter().all(|d| wave_of[*d].is_some())
            })
            .collect();
        if ready.is_empty() {
            return Err((0..depends_on.len())
                .filter(|&i| wave_of[i].is_none())
                .collect());
        }
        for &i in &ready {
            wave_of[i] = Some(waves.len());
        }
        placed += ready.len();
        waves.push(ready);
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_follow_references() {
        // 0: vpc, 1: subnet -> vpc, 2: sg -> vpc, 3: instance -> subnet, sg, 4: bucket
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        assert_eq!(waves(&deps), Ok(vec![vec![0, 4], vec![1, 2], vec![3]]));
    }

    #[test]
    fn a_cycle_is_refused_naming_its_members() {
        let deps = vec![vec![1], vec![0], vec![]];
        assert_eq!(waves(&deps), Err(vec![0, 1]));
    }
}
