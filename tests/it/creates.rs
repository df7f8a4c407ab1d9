//! What a created object costs: one pass, three Kubernetes writes (the
//! finalizer with the create mark, the external name, the status with
//! Ready) and no re-read of what the create returned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftless_aws::{Bucket, Subnet, Vpc};
use driftless_provider::ManagedKind;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::ec2::{cidr16, create, manifest, wait_ready};
use crate::support::{events_about, unique, wait_for, Scope};

/// Long enough that the batched listings are made once in the test.
const POLL: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);

/// Every resourceVersion a watch saw, per object name.
type Versions = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

/// Records every version of every `K` in the scope's namespace.
fn record<K>(api: Api<K>) -> (Versions, tokio::task::JoinHandle<()>)
where
    K: ManagedKind + DeserializeOwned + Clone + std::fmt::Debug + Send + 'static,
{
    let seen = Versions::default();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            let (Event::Apply(o) | Event::InitApply(o)) = event else {
                continue;
            };
            let version = o.resource_version().unwrap_or_default();
            let mut seen = into.lock().unwrap();
            seen.entry(o.name_any()).or_default().insert(version);
        }
    });
    (seen, task)
}

/// The writes made to `name` since its creation, once the watch has caught
/// up with its current version.
async fn writes<K>(api: &Api<K>, seen: &Versions, name: &str) -> usize
where
    K: ManagedKind + DeserializeOwned + Clone + std::fmt::Debug,
{
    let now = api.get(name).await.unwrap().resource_version().unwrap();
    wait_for(
        &format!("the watch to see {name} at {now}"),
        WAIT,
        || async {
            let seen = seen.lock().unwrap();
            let versions = seen.get(name)?;
            versions.contains(&now).then(|| versions.len() - 1)
        },
    )
    .await
}

#[tokio::test]
async fn a_created_object_costs_one_pass_three_writes_and_no_re_read() {
    let mut scope = Scope::new("creates").await;
    let (vpcs, subnets, buckets) = (
        scope.api::<Vpc>(),
        scope.api::<Subnet>(),
        scope.api::<Bucket>(),
    );
    let recorders = [
        record(vpcs.clone()),
        record(subnets.clone()),
        record(buckets.clone()),
    ];
    scope.start_controller(POLL);
    let (cidr, prefix) = cidr16();
    let bucket = unique("dl-creates");
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "net", json!({"cidrBlock": cidr})),
    )
    .await;
    create::<Bucket>(
        &scope,
        manifest(&scope, "Bucket", &bucket, json!({"tags": {"team": "web"}})),
    )
    .await;
    // After its Vpc is Ready: a Subnet made before waits, and its status
    // says so (one more write, not on the way to Ready).
    wait_ready(&vpcs, "net").await;
    let subnet = json!({"cidrBlock": format!("10.{prefix}.1.0/24"), "vpcRef": {"name": "net"}});
    create::<Subnet>(&scope, manifest(&scope, "Subnet", "a", subnet)).await;
    wait_ready(&subnets, "a").await;
    wait_ready(&buckets, &bucket).await;
    // A Vpc made after them, Ready: the watch events of their writes are
    // through (the watch is in order), and queued nothing more.
    create::<Vpc>(
        &scope,
        manifest(&scope, "Vpc", "later", json!({"cidrBlock": cidr16().0})),
    )
    .await;
    wait_ready(&vpcs, "later").await;
    for (kind, name) in [("Vpc", "net"), ("Subnet", "a"), ("Bucket", bucket.as_str())] {
        assert_eq!(scope.passes(kind, name), 1, "{kind} {name}: one pass");
    }

    let [(vpc_seen, _), (subnet_seen, _), (bucket_seen, _)] = &recorders;
    assert_eq!(writes(&vpcs, vpc_seen, "net").await, 3, "Vpc writes");
    assert_eq!(writes(&subnets, subnet_seen, "a").await, 3, "Subnet writes");
    assert_eq!(
        writes(&buckets, bucket_seen, &bucket).await,
        3,
        "Bucket writes"
    );
    // EC2: one listing each before the create (the owner-tag lookup), and
    // no read of what the creates returned: Ready came from their responses.
    let calls = |op: &str| scope.calls.operation_total(op);
    assert_eq!(calls("CreateVpc"), 2);
    assert_eq!(calls("DescribeVpcs"), 1, "{:?}", scope.calls.snapshot());
    assert_eq!(calls("CreateSubnet"), 1);
    assert_eq!(calls("DescribeSubnets"), 1, "{:?}", scope.calls.snapshot());
    assert_eq!(calls("CreateBucket"), 1);
    // S3: the HeadBucket that found no bucket before the create, and no
    // read after it.
    assert_eq!(calls("HeadBucket"), 1, "{:?}", scope.calls.snapshot());
    assert_eq!(calls("GetBucketTagging"), 0, "{:?}", scope.calls.snapshot());
    // The Events still arrive, off the pass's path.
    for name in ["net", "a", bucket.as_str()] {
        wait_for(&format!("the Created Event of {name}"), WAIT, || async {
            let events = events_about(&scope, name).await;
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("CreatedExternalResource"))
                .then_some(())
        })
        .await;
    }
    for (_, task) in recorders {
        task.abort();
    }
}
