//! The managed objects the suite declares, and the few cluster operations it
//! needs: apply many at once, count Ready, delete and wait.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::ResourceExt;
use serde_json::{json, Value};

pub const MANAGER: &str = "driftless-bench";

/// The four kinds of the converge mix, in dependency order.
pub const KINDS: [&str; 4] = ["Bucket", "Vpc", "Subnet", "SecurityGroup"];

pub fn resource(kind: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk("aws.driftless.dev", "v1alpha1", kind);
    ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_ascii_lowercase()))
}

pub fn api(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// `n` objects: a quarter each of Buckets, Vpcs, Subnets (each in its own
/// Vpc, by reference) and SecurityGroups (likewise). Bucket names are global,
/// so they carry `run`, unique to this run.
pub fn mix(n: usize, ns: &str, run: &str, paused: bool) -> Vec<Value> {
    let groups = n / 4;
    let mut out = Vec::with_capacity(groups * 4);
    let meta = |name: String| {
        let mut m = json!({"name": name, "namespace": ns});
        if paused {
            m["annotations"] = json!({"driftless.dev/paused": "true"});
        }
        m
    };
    let object = |kind: &str, name: String, for_provider: Value| {
        json!({
            "apiVersion": "aws.driftless.dev/v1alpha1",
            "kind": kind,
            "metadata": meta(name),
            "spec": {"providerConfigRef": {"name": MANAGER}, "forProvider": for_provider},
        })
    };
    for i in 0..groups {
        let vpc = format!("vpc-{i}");
        out.push(object("Bucket", format!("{run}-{i}"), json!({})));
        out.push(object(
            "Vpc",
            vpc.clone(),
            json!({"cidrBlock": "10.0.0.0/16"}),
        ));
        out.push(object(
            "Subnet",
            format!("subnet-{i}"),
            json!({"vpcRef": {"name": vpc}, "cidrBlock": "10.0.1.0/24"}),
        ));
        out.push(object(
            "SecurityGroup",
            format!("sg-{i}"),
            json!({"vpcRef": {"name": vpc}, "description": "driftless bench"}),
        ));
    }
    out
}

/// Server-side applies every object, `concurrency` at a time.
pub async fn apply_all(
    client: &kube::Client,
    objects: &[Value],
    concurrency: usize,
) -> anyhow::Result<()> {
    stream::iter(objects)
        .map(|o| async move {
            let kind = o["kind"].as_str().unwrap_or_default();
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            api(client, ns, kind)
                .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(o))
                .await
                .with_context(|| format!("applying {kind} {ns}/{name}"))
        })
        .buffer_unordered(concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await
}

fn condition_true(obj: &DynamicObject, type_: &str, reason: Option<&str>) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == type_
                    && match reason {
                        None => c["status"] == "True",
                        Some(r) => c["reason"] == r,
                    }
            })
        })
}

/// Objects of the mix in `ns`: (Ready, total).
pub async fn count_ready(client: &kube::Client, ns: &str) -> anyhow::Result<(usize, usize)> {
    count(client, ns, "Ready", None).await
}

/// Objects of the mix in `ns` whose condition `type_` is True (or has `reason`).
pub async fn count(
    client: &kube::Client,
    ns: &str,
    type_: &str,
    reason: Option<&str>,
) -> anyhow::Result<(usize, usize)> {
    let (mut matching, mut total) = (0, 0);
    for kind in KINDS {
        let list = api(client, ns, kind).list(&ListParams::default()).await?;
        total += list.items.len();
        matching += list
            .items
            .iter()
            .filter(|o| condition_true(o, type_, reason))
            .count();
    }
    Ok((matching, total))
}

/// Waits until `expected` objects of the mix in `ns` are Ready, seen
/// through one watch per kind (no LIST polling competing for the cores).
pub async fn wait_ready_watched(
    client: &kube::Client,
    ns: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    use kube::runtime::watcher::{self, Event};
    let start = Instant::now();
    let streams = KINDS.map(|kind| {
        watcher::watcher(api(client, ns, kind), watcher::Config::default())
            .map(move |e| (kind, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut ready: std::collections::HashSet<(&str, String)> = Default::default();
    let is_ready = |o: &DynamicObject| {
        o.data["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while ready.len() < expected {
        let next = tokio::select! {
            e = events.next() => e,
            _ = &mut deadline => bail!("{} of {expected} objects in {ns} Ready after {timeout:?}", ready.len()),
        };
        let Some((kind, event)) = next else {
            bail!("the watches of {ns} ended");
        };
        match event? {
            Event::Apply(o) | Event::InitApply(o) => {
                let key = (kind, o.metadata.name.clone().unwrap_or_default());
                if is_ready(&o) {
                    ready.insert(key);
                } else {
                    ready.remove(&key);
                }
            }
            Event::Delete(o) => {
                ready.remove(&(kind, o.metadata.name.clone().unwrap_or_default()));
            }
            Event::Init | Event::InitDone => {}
        }
    }
    Ok(start.elapsed())
}

/// Deletes every object of the mix in `ns` and waits until they are gone
/// (the controller deletes their cloud resources first).
pub async fn delete_all(
    client: &kube::Client,
    ns: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for kind in KINDS {
        api(client, ns, kind)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    loop {
        let (_, left) = count_ready(client, ns).await?;
        if left == 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{left} objects in {ns} still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn create_namespace(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {ns}")),
    }
}

/// Installs the CRDs and the ProviderConfig the suite's objects name.
pub async fn install(client: &kube::Client, endpoint: &str, region: &str) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in driftless::cli::crds::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        )
        .await?;
    }
    let gvk = GroupVersionKind::gvk("driftless.dev", "v1alpha1", "ProviderConfig");
    let pcs: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let pc = json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": MANAGER},
        "spec": {"region": region, "endpoint": endpoint, "credentials": {"source": "Environment"}},
    });
    pcs.patch(
        MANAGER,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&pc),
    )
    .await
    .context("applying the ProviderConfig")?;
    Ok(())
}

/// The label every object of a run carries, so that one watch per kind
/// (across namespaces) sees a whole scenario.
pub const RUN_LABEL: &str = "bench.driftless.dev/run";

/// What an EC2 mix looks like beyond its size.
#[derive(Clone, Debug, Default)]
pub struct Ec2Mix {
    /// `driftless.dev/shard` value, if any.
    pub shard: Option<String>,
    /// One group in this many is active, the rest paused (0 or 1: all
    /// active).
    pub active_every: usize,
    /// All paused (overrides `active_every`).
    pub all_paused: bool,
}

impl Ec2Mix {
    fn paused(&self, group: usize) -> bool {
        self.all_paused || (self.active_every > 1 && !group.is_multiple_of(self.active_every))
    }
}

/// `n` objects of the EC2 kinds, whose observation is batched (one
/// tag-filtered describe per kind per poll, whatever their number): groups
/// of a Vpc, a Subnet and a SecurityGroup in it (a last Vpc or two alone
/// when `n` is not a multiple of 3). A group is paused or active as a
/// whole, so that an active Subnet never waits for a paused Vpc.
pub fn ec2_mix(n: usize, ns: &str, run: &str, how: &Ec2Mix) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (group, vpc) = (i / 3, format!("vpc-{}", i / 3));
            let (kind, name, for_provider) = match i % 3 {
                0 => ("Vpc", vpc, json!({"cidrBlock": "10.0.0.0/16"})),
                1 => (
                    "Subnet",
                    format!("subnet-{group}"),
                    json!({"vpcRef": {"name": vpc}, "cidrBlock": "10.0.1.0/24"}),
                ),
                _ => (
                    "SecurityGroup",
                    format!("sg-{group}"),
                    json!({"vpcRef": {"name": vpc}, "description": "driftless bench"}),
                ),
            };
            let mut meta = json!({"name": name, "namespace": ns, "labels": {RUN_LABEL: run}});
            if let Some(shard) = &how.shard {
                meta["labels"]["driftless.dev/shard"] = json!(shard);
            }
            if how.paused(group) {
                meta["annotations"] = json!({"driftless.dev/paused": "true"});
            }
            json!({
                "apiVersion": "aws.driftless.dev/v1alpha1",
                "kind": kind,
                "metadata": meta,
                "spec": {"providerConfigRef": {"name": MANAGER}, "forProvider": for_provider},
            })
        })
        .collect()
}

/// Done, for a scenario: Ready, or paused and told so.
fn settled(o: &DynamicObject) -> bool {
    condition_true(o, "Ready", None) || condition_true(o, "Synced", Some("ReconcilePaused"))
}

/// Waits until `expected` objects labelled `RUN_LABEL=run` (any namespace)
/// are Ready or paused, seen through one watch per kind: a count, not a
/// sleep, and no LIST polling competing for the cores.
pub async fn wait_settled(
    client: &kube::Client,
    run: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    use kube::runtime::watcher::{self, Event};
    let start = Instant::now();
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let streams = KINDS.map(|kind| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        watcher::watcher(api, config.clone())
            .map(move |e| (kind, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut done: std::collections::HashSet<(&str, String, String)> = Default::default();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while done.len() < expected {
        let next = tokio::select! {
            e = events.next() => e,
            _ = &mut deadline => bail!("{} of {expected} objects of {run} settled after {timeout:?}", done.len()),
        };
        let Some((kind, event)) = next else {
            bail!("the watches of {run} ended");
        };
        let key = |o: &DynamicObject| (kind, o.namespace().unwrap_or_default(), o.name_any());
        match event? {
            Event::Apply(o) | Event::InitApply(o) if settled(&o) => {
                done.insert(key(&o));
            }
            Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => {
                done.remove(&key(&o));
            }
            Event::Init | Event::InitDone => {}
        }
    }
    Ok(start.elapsed())
}

/// Removes the objects of `ns` without the controller (untimed cleanup of
/// scenarios too large to delete through it): finalizers dropped, then
/// deleted. Their cloud resources are deleted apart
/// (`floor::delete_owned_in`).
pub async fn drop_all(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    for kind in KINDS {
        let api = api(client, ns, kind);
        let list = api.list_metadata(&ListParams::default()).await?;
        let with_finalizers = list.items.iter().filter(|o| !o.finalizers().is_empty());
        stream::iter(with_finalizers.map(|o| o.name_any()))
            .map(|name| {
                let api = api.clone();
                async move {
                    let patch = json!({"metadata": {"finalizers": null}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                }
            })
            .buffer_unordered(32)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    Ok(())
}
