//! Bucket end to end: the controller against LocalStack and the API server.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use driftless_aws::Bucket;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::support::{self, s3_tags, unique, wait_for, Scope};

const POLL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(60);

fn bucket(
    scope: &Scope,
    name: &str,
    for_provider: Value,
    extra_spec: Value,
    annotations: Value,
) -> Bucket {
    let mut spec = json!({
        "forProvider": for_provider,
        "providerConfigRef": {"name": scope.provider_config},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "aws.driftless.dev/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name, "namespace": scope.ns, "annotations": annotations},
        "spec": spec,
    }))
    .expect("a valid Bucket")
}

fn condition(b: &Bucket, type_: &str) -> Option<(String, String, String)> {
    b.status
        .as_ref()?
        .condition(type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Bucket's condition `type_` has `status` (and `reason`, if given).
async fn wait_condition(
    api: &Api<Bucket>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Bucket {
    let what = format!("Bucket {name} {type_}={status} {reason:?}");
    wait_for(&what, WAIT, || async {
        let b = api.get(name).await.ok()?;
        let (s, r, _) = condition(&b, type_)?;
        (s == status && reason.is_none_or(|want| want == r)).then_some(b)
    })
    .await
}

async fn s3_versioning(s3: &aws_sdk_s3::Client, name: &str) -> Option<BucketVersioningStatus> {
    s3.get_bucket_versioning()
        .bucket(name)
        .send()
        .await
        .ok()?
        .status()
        .cloned()
}

async fn bucket_exists(s3: &aws_sdk_s3::Client, name: &str) -> bool {
    s3.head_bucket().bucket(name).send().await.is_ok()
}

async fn event_reasons(scope: &Scope, name: &str) -> Vec<String> {
    let events = support::events_about(scope, name).await;
    events.into_iter().filter_map(|e| e.reason).collect()
}

#[tokio::test]
async fn bucket_create_update_drift_and_delete() {
    let mut scope = Scope::new("bucket").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let name = unique("dl-life");

    let b = bucket(
        &scope,
        &name,
        json!({
            "versioning": "Enabled",
            "tags": {"team": "storage", "env": "test"},
            "publicAccessBlock": {"blockPublicAcls": true, "ignorePublicAcls": true, "blockPublicPolicy": true, "restrictPublicBuckets": true},
            "serverSideEncryption": {"algorithm": "AES256"},
        }),
        json!({"writeConnectionSecretToRef": {"name": format!("{name}-conn")}}),
        json!({}),
    );
    api.create(&PostParams::default(), &b).await.unwrap();
    let ready = wait_condition(&api, &name, "Ready", "True", Some("Available")).await;
    assert_eq!(condition(&ready, "Synced").unwrap().0, "True");
    assert_eq!(
        ready
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("driftless.dev/external-name")),
        Some(&name)
    );
    let at = ready.status.as_ref().unwrap().at_provider.clone().unwrap();
    assert_eq!(
        at.arn.as_deref(),
        Some(format!("arn:aws:s3:::{name}").as_str())
    );

    // The cloud has what was asked for.
    assert_eq!(
        s3_versioning(&s3, &name).await,
        Some(BucketVersioningStatus::Enabled)
    );
    let tags = s3_tags(&s3, &name).await;
    assert!(
        tags.contains(&("team".into(), "storage".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("driftless.dev/owner".into(), format!("{}/{name}", scope.ns))),
        "{tags:?}"
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(pab.block_public_acls(), Some(true));
    assert_eq!(pab.restrict_public_buckets(), Some(true));
    let enc = s3
        .get_bucket_encryption()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );

    // Apps can mount the connection details.
    let secrets: Api<Secret> = scope.api();
    let conn = secrets
        .get(&format!("{name}-conn"))
        .await
        .expect("connection secret written");
    let data = conn.data.unwrap();
    assert_eq!(data["bucket"].0, name.as_bytes());
    for key in ["arn", "region", "endpoint"] {
        assert!(data.contains_key(key), "connection secret lacks {key}");
    }

    // kubectl shows the columns, for the kind and for the category.
    for what in ["buckets", "managed"] {
        let (ok, out, err) = scope.kubectl(&["get", what, "-n", &scope.ns], None).await;
        assert!(ok, "kubectl get {what}: {err}");
        let header = out.lines().next().unwrap_or_default();
        for col in ["NAME", "READY", "SYNCED", "EXTERNAL-NAME", "AGE"] {
            assert!(
                header.contains(col),
                "kubectl get {what}: column {col} missing:\n{out}"
            );
        }
        let row = out
            .lines()
            .find(|l| l.contains(&name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        assert_eq!(
            row.split_whitespace().filter(|w| *w == "True").count(),
            2,
            "{row}"
        );
    }

    // A spec update reaches the cloud.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"forProvider": {"versioning": "Suspended", "tags": {"team": "platform", "env": "test"}}}})),
    )
    .await
    .unwrap();
    wait_for("spec update in S3", WAIT, || async {
        let ok = s3_versioning(&s3, &name).await == Some(BucketVersioningStatus::Suspended)
            && s3_tags(&s3, &name)
                .await
                .contains(&("team".into(), "platform".into()));
        ok.then_some(())
    })
    .await;
    assert!(event_reasons(&scope, &name)
        .await
        .contains(&"UpdatedExternalResource".to_string()));
    // Let the controller record the new generation as synced before drifting.
    wait_for("Synced for the new generation", WAIT, || async {
        let b = api.get(&name).await.ok()?;
        let c = b.status.as_ref()?.condition("Synced")?.clone();
        (c.status == "True" && c.observed_generation == b.metadata.generation).then_some(())
    })
    .await;

    // An out-of-band change is put back within a short poll, with an Event.
    s3.put_bucket_versioning()
        .bucket(&name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut drifted: Vec<Tag> = s3_tags(&s3, &name)
        .await
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    for t in drifted.iter_mut() {
        if t.key() == "team" {
            *t = Tag::builder()
                .key("team")
                .value("hijacked")
                .build()
                .unwrap();
        }
    }
    s3.put_bucket_tagging()
        .bucket(&name)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(drifted))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let drift_at = std::time::Instant::now();
    // Generous (a loaded machine): the figure is printed below.
    wait_for("drift corrected", Duration::from_secs(60), || async {
        let ok = s3_versioning(&s3, &name).await == Some(BucketVersioningStatus::Suspended)
            && s3_tags(&s3, &name)
                .await
                .contains(&("team".into(), "platform".into()));
        ok.then_some(())
    })
    .await;
    eprintln!(
        "drift corrected in {:?} (poll {POLL:?})",
        drift_at.elapsed()
    );
    wait_for("DriftCorrected event", WAIT, || async {
        event_reasons(&scope, &name)
            .await
            .contains(&"DriftCorrected".to_string())
            .then_some(())
    })
    .await;

    // Delete with objects inside: waits and says why, until forceDestroy.
    s3.put_object()
        .bucket(&name)
        .key("hello.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hi"))
        .send()
        .await
        .unwrap();
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    let waiting = wait_condition(&api, &name, "Ready", "False", Some("Deleting")).await;
    let waiting = wait_for("deletion to say why it waits", WAIT, || {
        let api = api.clone();
        let name = name.clone();
        let first = waiting.clone();
        async move {
            let b = api.get(&name).await.unwrap_or(first);
            let (_, _, msg) = condition(&b, "Ready")?;
            msg.contains("not empty").then_some(msg)
        }
    })
    .await;
    assert!(waiting.contains("forceDestroy"), "{waiting}");
    assert!(
        bucket_exists(&s3, &name).await,
        "a non-empty bucket was deleted without forceDestroy"
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"forProvider": {"forceDestroy": true}}})),
    )
    .await
    .unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        !bucket_exists(&s3, &name).await,
        "bucket {name} still exists in S3"
    );
}

#[tokio::test]
async fn orphan_keeps_the_bucket() {
    let mut scope = Scope::new("orphan").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let name = unique("dl-orphan");
    api.create(
        &PostParams::default(),
        &bucket(
            &scope,
            &name,
            json!({}),
            json!({"deletionPolicy": "Orphan"}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    wait_condition(&api, &name, "Ready", "True", None).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(bucket_exists(&s3, &name).await, "Orphan deleted the bucket");
    s3.delete_bucket().bucket(&name).send().await.unwrap();
}

#[tokio::test]
async fn observe_only_imports_without_changing_or_deleting() {
    let mut scope = Scope::new("observe").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let existing = unique("dl-existing");
    s3.create_bucket().bucket(&existing).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&existing)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let object = unique("imported");
    api.create(
        &PostParams::default(),
        &bucket(
            &scope,
            &object,
            json!({"versioning": "Suspended", "tags": {"would": "change"}}),
            json!({"managementPolicies": ["Observe"]}),
            json!({"driftless.dev/external-name": existing}),
        ),
    )
    .await
    .unwrap();
    let ready = wait_condition(&api, &object, "Ready", "True", None).await;
    let at = ready.status.unwrap().at_provider.unwrap();
    assert_eq!(
        at.arn.as_deref(),
        Some(format!("arn:aws:s3:::{existing}").as_str())
    );
    // Three more polls of the object later, nothing was changed.
    let seen = scope.passes("Bucket", &object);
    scope.wait_passes("Bucket", &object, seen + 3).await;
    assert_eq!(
        s3_versioning(&s3, &existing).await,
        Some(BucketVersioningStatus::Enabled)
    );
    assert!(
        s3_tags(&s3, &existing).await.is_empty(),
        "Observe-only wrote tags"
    );
    assert_eq!(scope.calls.operation_total("PutBucketVersioning"), 0);
    assert_eq!(scope.calls.operation_total("PutBucketTagging"), 0);

    api.delete(&object, &DeleteParams::default()).await.unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&object).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        bucket_exists(&s3, &existing).await,
        "Observe-only deleted the bucket"
    );
    s3.delete_bucket().bucket(&existing).send().await.unwrap();
}

#[tokio::test]
async fn paused_makes_no_cloud_calls() {
    let mut scope = Scope::new("paused").await;
    scope.start_controller_with(POLL, |s| s.reference_retry = POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let name = unique("dl-paused");
    api.create(
        &PostParams::default(),
        &bucket(
            &scope,
            &name,
            json!({}),
            json!({}),
            json!({"driftless.dev/paused": "true"}),
        ),
    )
    .await
    .unwrap();
    let paused = wait_condition(&api, &name, "Synced", "False", Some("ReconcilePaused")).await;
    assert!(condition(&paused, "Ready").is_none());
    // A paused object's pass ends in await_change: it is never requeued, so
    // its own passes cannot show time going by. The ticker (no cloud calls)
    // is requeued every poll: three of its passes are three polls, during
    // which the paused object is not reconciled again.
    let paused_passes = scope.passes("Bucket", &name);
    scope.start_ticker().await;
    scope.wait_ticks(3).await;
    assert_eq!(
        scope.passes("Bucket", &name),
        paused_passes,
        "a paused object was reconciled again"
    );
    assert_eq!(
        scope.calls.total(),
        0,
        "paused object made cloud calls: {:?}",
        scope.calls.snapshot()
    );
    assert!(!bucket_exists(&s3, &name).await);

    // Unpausing resumes.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"driftless.dev/paused": null}}})),
    )
    .await
    .unwrap();
    wait_condition(&api, &name, "Ready", "True", None).await;
    assert!(bucket_exists(&s3, &name).await);
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!bucket_exists(&s3, &name).await);
}

#[tokio::test]
async fn invalid_specs_are_refused_at_admission() {
    let scope = Scope::new("admission").await;
    for (name, for_provider, expect) in [
        ("ab", "{}", "invalid bucket name"),
        ("192.168.1.10", "{}", "invalid bucket name"),
        (
            "ok-name-1",
            "{versioning: Maybe}",
            "Unsupported value: \"Maybe\"",
        ),
        (
            "ok-name-2",
            "{serverSideEncryption: {algorithm: AES256, kmsKeyId: k}}",
            "kmsKeyId is only valid with algorithm aws:kms",
        ),
        (
            "ok-name-3",
            "{lifecycleRules: [{id: a, filter: {prefix: logs/}}]}",
            "a lifecycle rule needs at least one action",
        ),
        (
            "ok-name-4",
            "{lifecycleRules: [{id: a, transitions: [{days: 30, storageClass: COLD}]}]}",
            "Unsupported value: \"COLD\"",
        ),
        (
            "ok-name-5",
            "{lifecycleRules: [{id: a, expiration: {days: 1, expiredObjectDeleteMarker: true}}]}",
            "expiration takes exactly one of days, date and expiredObjectDeleteMarker",
        ),
        (
            "ok-name-6",
            "{lifecycleRules: [{id: a, expiration: {days: 1}}, {id: a, expiration: {days: 2}}]}",
            "Duplicate value",
        ),
        (
            "ok-name-7",
            "{cors: [{allowedMethods: [GET, PATCH], allowedOrigins: ['*']}]}",
            "should match '^(GET|PUT|POST|DELETE|HEAD)$'",
        ),
        (
            "ok-name-8",
            "{ownershipControls: Everyone}",
            "Unsupported value: \"Everyone\"",
        ),
    ] {
        let manifest = format!(
            "apiVersion: aws.driftless.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: \"{name}\"\n  namespace: {}\nspec:\n  forProvider: {for_provider}\n",
            scope.ns
        );
        let (ok, _, err) = scope.kubectl(&["apply", "-f", "-"], Some(&manifest)).await;
        assert!(
            !ok,
            "kubectl accepted an invalid Bucket {name} {for_provider}"
        );
        assert!(
            err.contains(expect),
            "for {name} {for_provider}, expected {expect:?} in:\n{err}"
        );
    }
}

#[tokio::test]
async fn rejected_spec_is_reported_without_a_retry_storm() {
    let mut scope = Scope::new("rejected").await;
    scope.start_controller_with(POLL, |s| s.reference_retry = POLL);
    let api: Api<Bucket> = scope.api();
    let name = unique("dl-rejected");
    // AWS (and LocalStack) refuse an unknown location constraint.
    api.create(
        &PostParams::default(),
        &bucket(
            &scope,
            &name,
            json!({"region": "xx-invalid-1"}),
            json!({}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    let failed = wait_condition(&api, &name, "Synced", "False", Some("ReconcileError")).await;
    let (_, _, message) = condition(&failed, "Synced").unwrap();
    assert!(
        message.contains("InvalidLocationConstraint"),
        "AWS's code missing: {message}"
    );
    assert!(
        message.contains("location-constraint is not valid"),
        "AWS's message missing: {message}"
    );
    // Five polls later: still the one attempt, not one per poll. The failed
    // object waits out the terminal backoff (not requeued), so the ticker
    // (no cloud calls) counts the polls.
    scope.start_ticker().await;
    scope.wait_ticks(5).await;
    let creates = scope.calls.operation_total("CreateBucket");
    assert_eq!(
        creates,
        1,
        "terminal error retried: {:?}",
        scope.calls.snapshot()
    );
    assert!(event_reasons(&scope, &name)
        .await
        .contains(&"TerminalError".to_string()));

    // Fixing the spec retries at once, and the object can go.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"forProvider": {"region": null}}})),
    )
    .await
    .unwrap_or_else(|e| panic!("clearing the region: {e}"));
    wait_condition(&api, &name, "Ready", "True", None).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Patches the scope's ProviderConfig `spec.allowedNamespaces`.
async fn allow_namespaces(scope: &Scope, allowed: Value) {
    let pcs: Api<driftless_aws::ProviderConfig> = Api::all(scope.client.clone());
    pcs.patch(
        &scope.provider_config,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"allowedNamespaces": allowed}})),
    )
    .await
    .unwrap_or_else(|e| panic!("patching allowedNamespaces: {e}"));
}

#[tokio::test]
async fn a_namespace_the_provider_config_does_not_allow_makes_no_cloud_call() {
    let mut scope = Scope::new("pcallow").await;
    let label = "driftless-test/tenant";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(scope.client.clone());
    namespaces
        .patch(
            &scope.ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {label: scope.ns}}})),
        )
        .await
        .unwrap();
    // Neither the names nor the selector match this namespace.
    allow_namespaces(
        &scope,
        json!({"names": ["elsewhere"], "selector": {"matchLabels": {label: "nobody"}}}),
    )
    .await;
    // A short terminal backoff: the refused object is reconciled every poll,
    // so "no cloud call" is shown over real passes.
    scope.start_controller_with(POLL, |s| s.terminal_backoff = POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let name = unique("dl-pcallow");
    let doomed = unique("dl-pcallow-del");
    for n in [&name, &doomed] {
        api.create(
            &PostParams::default(),
            &bucket(&scope, n, json!({}), json!({}), json!({})),
        )
        .await
        .unwrap();
    }
    let refused = wait_condition(
        &api,
        &name,
        "Synced",
        "False",
        Some("ProviderConfigNotAllowed"),
    )
    .await;
    let (_, _, message) = condition(&refused, "Synced").unwrap();
    assert!(
        message.contains(&scope.ns) && message.contains(&scope.provider_config),
        "the message names the namespace and the ProviderConfig: {message}"
    );
    let passes = scope.passes("Bucket", &name);
    scope.wait_passes("Bucket", &name, passes + 4).await;
    assert_eq!(
        scope.calls.total(),
        0,
        "a refused namespace made cloud calls: {:?}",
        scope.calls.snapshot()
    );
    assert!(!bucket_exists(&s3, &name).await);
    assert!(event_reasons(&scope, &name)
        .await
        .contains(&"ProviderConfigNotAllowed".to_string()));

    // Deleting a refused object that never reached the cloud: it goes,
    // still without a cloud call.
    wait_condition(
        &api,
        &doomed,
        "Synced",
        "False",
        Some("ProviderConfigNotAllowed"),
    )
    .await;
    api.delete(&doomed, &DeleteParams::default()).await.unwrap();
    wait_for("refused Bucket object gone", WAIT, || async {
        api.get_opt(&doomed).await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(scope.calls.total(), 0, "{:?}", scope.calls.snapshot());

    // Allowing the namespace (by its label) applies at the next pass.
    allow_namespaces(
        &scope,
        json!({"names": ["elsewhere"], "selector": {"matchLabels": {label: scope.ns}}}),
    )
    .await;
    wait_condition(&api, &name, "Ready", "True", None).await;
    assert!(bucket_exists(&s3, &name).await);
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("Bucket object gone", WAIT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!bucket_exists(&s3, &name).await);
}

// ---- policy, lifecycleRules, cors, ownershipControls ----

fn read_only_policy(name: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
        "Action": ["s3:GetObject"], "Resource": format!("arn:aws:s3:::{name}/*"),
    }]})
}

fn lifecycle_rules() -> Value {
    json!([
        {"id": "expire-logs", "filter": {"prefix": "logs/"},
         "expiration": {"days": 30},
         "transitions": [{"days": 7, "storageClass": "GLACIER"}],
         "abortIncompleteMultipartUpload": {"daysAfterInitiation": 2}},
        {"id": "tagged", "status": "Disabled",
         "filter": {"prefix": "tmp/", "tags": {"class": "scratch"}},
         "noncurrentVersionExpiration": {"noncurrentDays": 5}},
    ])
}

fn cors_rules() -> Value {
    json!([{"id": "web", "allowedMethods": ["GET", "PUT"], "allowedOrigins": ["https://app.example"],
            "allowedHeaders": ["*"], "exposeHeaders": ["ETag"], "maxAgeSeconds": 300}])
}

/// The bucket's policy as S3 returns it, parsed (None: no policy).
async fn s3_policy(s3: &aws_sdk_s3::Client, name: &str) -> Option<Value> {
    let out = s3.get_bucket_policy().bucket(name).send().await.ok()?;
    serde_json::from_str(out.policy()?).ok()
}

fn same_policy(a: &Value, b: &Value) -> bool {
    use driftless_aws::s3::bucket::policy::canonical;
    canonical(a) == canonical(b)
}

/// Lifecycle rules by id: (status, expiration days).
async fn s3_lifecycle(s3: &aws_sdk_s3::Client, name: &str) -> Vec<(String, String, Option<i32>)> {
    let Ok(out) = s3
        .get_bucket_lifecycle_configuration()
        .bucket(name)
        .send()
        .await
    else {
        return Vec::new();
    };
    let mut rules: Vec<_> = out
        .rules()
        .iter()
        .map(|r| {
            let days = r.expiration().and_then(|e| e.days());
            (
                r.id().unwrap_or_default().to_string(),
                r.status().as_str().to_string(),
                days,
            )
        })
        .collect();
    rules.sort();
    rules
}

async fn s3_ownership(s3: &aws_sdk_s3::Client, name: &str) -> Option<String> {
    let out = s3
        .get_bucket_ownership_controls()
        .bucket(name)
        .send()
        .await
        .ok()?;
    let rule = out.ownership_controls()?.rules().first()?;
    Some(rule.object_ownership().as_str().to_string())
}

fn expected_lifecycle() -> Vec<(String, String, Option<i32>)> {
    vec![
        ("expire-logs".into(), "Enabled".into(), Some(30)),
        ("tagged".into(), "Disabled".into(), None),
    ]
}

/// `n` more reconcile passes of `name`: "nothing happened" over real polls.
async fn wait_more_passes(scope: &Scope, name: &str, n: u64) {
    let seen = scope.passes("Bucket", name);
    scope.wait_passes("Bucket", name, seen + n).await;
}

#[tokio::test]
async fn bucket_policy_lifecycle_cors_and_ownership_are_kept() {
    let mut scope = Scope::new("bucket-settings").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let name = unique("dl-settings");
    let policy = read_only_policy(&name);
    let b = bucket(
        &scope,
        &name,
        json!({
            "policy": policy,
            "lifecycleRules": lifecycle_rules(),
            "cors": cors_rules(),
            "ownershipControls": "BucketOwnerPreferred",
            "forceDestroy": true,
        }),
        json!({}),
        json!({}),
    );
    api.create(&PostParams::default(), &b).await.unwrap();
    crate::ec2::wait_synced(&api, &name).await;

    // AWS holds each setting, and the tags record the deletable ones.
    assert!(same_policy(&s3_policy(&s3, &name).await.unwrap(), &policy));
    assert_eq!(s3_lifecycle(&s3, &name).await, expected_lifecycle());
    let cors = s3.get_bucket_cors().bucket(&name).send().await.unwrap();
    let rule = &cors.cors_rules()[0];
    assert_eq!(rule.allowed_methods(), ["GET", "PUT"]);
    assert_eq!(rule.allowed_origins(), ["https://app.example"]);
    assert_eq!(rule.max_age_seconds(), Some(300));
    assert_eq!(
        s3_ownership(&s3, &name).await.as_deref(),
        Some("BucketOwnerPreferred")
    );
    let tags = s3_tags(&s3, &name).await;
    assert!(
        tags.contains(&(
            "driftless.dev/settings".into(),
            "policy lifecycleRules cors".into()
        )),
        "{tags:?}"
    );
    assert_eq!(scope.calls.operation_total("PutBucketPolicy"), 1);

    // The same policy written differently, out of band: a single statement
    // object, scalar Action and list Resource, other key order, indented.
    let reformatted = json!({"Statement": {
        "Resource": [format!("arn:aws:s3:::{name}/*")], "Action": "s3:GetObject",
        "Principal": {"AWS": "*"}, "Effect": "Allow", "Sid": "PublicRead"},
        "Version": "2012-10-17"});
    let text = serde_json::to_string_pretty(&reformatted).unwrap();
    s3.put_bucket_policy()
        .bucket(&name)
        .policy(&text)
        .send()
        .await
        .unwrap();
    // And in the spec, as a string in yet another form: a spec change.
    let as_text = format!(
        "{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [ {{ \"Action\": \"s3:GetObject\", \"Effect\": \"Allow\", \"Resource\": \"arn:aws:s3:::{name}/*\", \"Principal\": \"*\", \"Sid\": \"PublicRead\" }} ]\n}}"
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"forProvider": {"policy": as_text}}})),
    )
    .await
    .unwrap();
    crate::ec2::wait_synced(&api, &name).await;
    wait_more_passes(&scope, &name, 3).await;
    assert_eq!(
        scope.calls.operation_total("PutBucketPolicy"),
        1,
        "a policy differing only in form was written again: {:?}",
        scope.calls.snapshot()
    );
    let stored = s3.get_bucket_policy().bucket(&name).send().await.unwrap();
    assert_eq!(
        stored.policy(),
        Some(text.as_str()),
        "the equivalent policy was replaced"
    );

    // A policy changed out of band is restored, with an Event.
    let hijacked = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": format!("arn:aws:s3:::{name}/*")}]});
    s3.put_bucket_policy()
        .bucket(&name)
        .policy(hijacked.to_string())
        .send()
        .await
        .unwrap();
    wait_for("policy restored", WAIT, || async {
        let have = s3_policy(&s3, &name).await?;
        same_policy(&have, &policy).then_some(())
    })
    .await;
    wait_for("DriftCorrected event", WAIT, || async {
        event_reasons(&scope, &name)
            .await
            .contains(&"DriftCorrected".to_string())
            .then_some(())
    })
    .await;

    // A lifecycle rule changed out of band, and one added, are put back.
    s3.put_bucket_lifecycle_configuration()
        .bucket(&name)
        .lifecycle_configuration(intruding_lifecycle())
        .send()
        .await
        .unwrap();
    wait_for("lifecycle restored", WAIT, || async {
        (s3_lifecycle(&s3, &name).await == expected_lifecycle()).then_some(())
    })
    .await;

    // Removing policy and lifecycleRules deletes what driftless set; cors
    // stays managed, ownership stays as it is.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"forProvider": {"policy": null, "lifecycleRules": null, "ownershipControls": null}}})),
    )
    .await
    .unwrap();
    wait_for("policy and lifecycle deleted", WAIT, || async {
        (s3_policy(&s3, &name).await.is_none() && s3_lifecycle(&s3, &name).await.is_empty())
            .then_some(())
    })
    .await;
    crate::ec2::wait_synced(&api, &name).await;
    let tags = s3_tags(&s3, &name).await;
    assert!(
        tags.contains(&("driftless.dev/settings".into(), "cors".into())),
        "{tags:?}"
    );
    assert!(s3.get_bucket_cors().bucket(&name).send().await.is_ok());
    assert_eq!(
        s3_ownership(&s3, &name).await.as_deref(),
        Some("BucketOwnerPreferred")
    );

    // A policy driftless did not set, on a bucket whose spec has none, is
    // left alone.
    s3.put_bucket_policy()
        .bucket(&name)
        .policy(hijacked.to_string())
        .send()
        .await
        .unwrap();
    let deletes = scope.calls.operation_total("DeleteBucketPolicy");
    wait_more_passes(&scope, &name, 3).await;
    assert!(
        s3_policy(&s3, &name).await.is_some(),
        "a policy driftless never set was deleted"
    );
    assert_eq!(scope.calls.operation_total("DeleteBucketPolicy"), deletes);

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    crate::ec2::wait_gone(&api, &name).await;
    assert!(!bucket_exists(&s3, &name).await);
}

/// `expire-logs` shortened to one day, and a rule nobody asked for.
fn intruding_lifecycle() -> aws_sdk_s3::types::BucketLifecycleConfiguration {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let rule = |id: &str, prefix: &str| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap()
    };
    BucketLifecycleConfiguration::builder()
        .rules(rule("expire-logs", "logs/"))
        .rules(rule("intruder", ""))
        .build()
        .unwrap()
}

/// The idle cost of 50 buckets: one call per bucket per poll, with the
/// tags only and with four settings besides. S3 has no batch read of a
/// bucket's tags or settings, so each observation makes one of the bucket's
/// checks in turn (see `providers/aws/src/s3/bucket/rotation.rs`): no
/// HeadBucket while idle, and every check made for every bucket.
#[tokio::test]
async fn idle_buckets_cost_one_call_per_bucket_per_poll() {
    const N: usize = 50;
    let mut scope = Scope::new("bucket-idle").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let names: Vec<String> = (0..N).map(|_| unique("dl-idle")).collect();
    for n in &names {
        let b = bucket(
            &scope,
            n,
            json!({"tags": {"idle": "yes"}}),
            json!({}),
            json!({}),
        );
        api.create(&PostParams::default(), &b).await.unwrap();
    }
    settle(&scope, &names).await;
    let tags_only = ["GetBucketTagging"];
    let (plain, calls) = idle_calls(&scope, &names, &tags_only).await;
    eprintln!(
        "{N} buckets with tags only over {} idle polls: {} S3 calls, {:.3} per bucket per poll",
        plain.polls,
        plain.total,
        plain.per_resource(N)
    );
    // Exactly: the figure above counts passes against a window whose edges
    // may cut a pass between its call and its end.
    assert_one_check_per_observation(&scope, &tags_only, &calls, N);

    for n in &names {
        let settings = json!({"spec": {"forProvider": {
            "policy": read_only_policy(n), "lifecycleRules": lifecycle_rules(),
            "cors": cors_rules(), "ownershipControls": "BucketOwnerEnforced"}}});
        api.patch(n, &PatchParams::default(), &Patch::Merge(settings))
            .await
            .unwrap();
    }
    settle(&scope, &names).await;
    let checks = [
        "GetBucketTagging",
        "GetBucketPolicy",
        "GetBucketLifecycleConfiguration",
        "GetBucketCors",
        "GetBucketOwnershipControls",
    ];
    let (full, calls) = idle_calls(&scope, &names, &checks).await;
    eprintln!(
        "{N} buckets with tags, policy, lifecycleRules, cors and ownershipControls over {} idle polls: {} S3 calls, {:.3} per bucket per poll",
        full.polls,
        full.total,
        full.per_resource(N)
    );
    assert_one_check_per_observation(&scope, &checks, &calls, N);
    for n in &names {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    for n in &names {
        crate::ec2::wait_gone(&api, n).await;
    }
}

/// Every bucket Synced, and the full re-read after its last write done: from
/// here on its observations are single checks.
async fn settle(scope: &Scope, names: &[String]) {
    let api: Api<Bucket> = scope.api();
    for n in names {
        crate::ec2::wait_synced(&api, n).await;
    }
    for n in names {
        wait_more_passes(scope, n, 2).await;
    }
}

/// Over an idle window: exactly one call per observation (one per bucket
/// per poll), no full observation (HeadBucket), only the checks' calls, and
/// each check made for every one of the `n` buckets (each had more
/// observations in the window than it has checks).
fn assert_one_check_per_observation(scope: &Scope, gets: &[&str], calls: &WindowCalls, n: usize) {
    let all = scope.calls.snapshot();
    eprintln!(
        "  exactly counted: {} S3 calls in {} observations",
        calls.total, calls.observations
    );
    assert_eq!(calls.total, calls.observations, "{all:?}");
    assert_eq!(calls.heads, 0, "a full observation while idle: {all:?}");
    assert_eq!(calls.total, calls.gets.iter().sum::<u64>(), "{all:?}");
    for (get, made) in gets.iter().zip(&calls.gets) {
        assert!(
            *made >= n as u64,
            "{get}: {made} calls for {n} buckets: {all:?}"
        );
    }
}

// ---- how fast drift is corrected ----

/// A bucket with every setting set has 8 checks: its tags and 7 settings.
const EVERY_SETTING_CHECKS: u64 = 8;

fn every_setting(name: &str) -> Value {
    json!({
        "tags": {"team": "storage"},
        "versioning": "Enabled",
        "publicAccessBlock": {"blockPublicAcls": true, "ignorePublicAcls": true},
        "serverSideEncryption": {"algorithm": "AES256"},
        "policy": read_only_policy(name),
        "lifecycleRules": lifecycle_rules(),
        "cors": cors_rules(),
        "ownershipControls": "BucketOwnerPreferred",
        "forceDestroy": true,
    })
}

/// One kind of out-of-band change to a bucket of [`every_setting`].
#[derive(Clone, Copy, Debug)]
enum Drift {
    Tags,
    Versioning,
    PublicAccessBlock,
    Encryption,
    Policy,
    Lifecycle,
    Cors,
    Ownership,
}

impl Drift {
    const ALL: [Drift; 8] = [
        Drift::Tags,
        Drift::Versioning,
        Drift::PublicAccessBlock,
        Drift::Encryption,
        Drift::Policy,
        Drift::Lifecycle,
        Drift::Cors,
        Drift::Ownership,
    ];

    /// The one call that puts it back (and no other correction makes).
    fn correction(self) -> &'static str {
        match self {
            Drift::Tags => "PutBucketTagging",
            Drift::Versioning => "PutBucketVersioning",
            Drift::PublicAccessBlock => "PutPublicAccessBlock",
            Drift::Encryption => "PutBucketEncryption",
            Drift::Policy => "PutBucketPolicy",
            Drift::Lifecycle => "PutBucketLifecycleConfiguration",
            Drift::Cors => "PutBucketCors",
            Drift::Ownership => "PutBucketOwnershipControls",
        }
    }

    async fn make(self, s3: &aws_sdk_s3::Client, name: &str) {
        use aws_sdk_s3::types::{
            ObjectOwnership, OwnershipControls, OwnershipControlsRule, ServerSideEncryption,
            ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
            ServerSideEncryptionRule,
        };
        match self {
            Drift::Tags => {
                let tags = s3_tags(s3, name).await.into_iter().map(|(k, v)| {
                    let v = if k == "team" { "hijacked".into() } else { v };
                    Tag::builder().key(k).value(v).build().unwrap()
                });
                let tagging = Tagging::builder().set_tag_set(Some(tags.collect()));
                let req = s3.put_bucket_tagging().bucket(name);
                req.tagging(tagging.build().unwrap())
                    .send()
                    .await
                    .map(drop)
                    .map_err(failed)
            }
            Drift::Versioning => {
                let suspended = BucketVersioningStatus::Suspended;
                let conf = VersioningConfiguration::builder().status(suspended).build();
                let req = s3.put_bucket_versioning().bucket(name);
                req.versioning_configuration(conf)
                    .send()
                    .await
                    .map(drop)
                    .map_err(failed)
            }
            Drift::PublicAccessBlock => {
                let req = s3.delete_public_access_block().bucket(name);
                req.send().await.map(drop).map_err(failed)
            }
            Drift::Encryption => {
                let kms = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .build()
                    .unwrap();
                let rule = ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(kms)
                    .build();
                let conf = ServerSideEncryptionConfiguration::builder().rules(rule);
                let req = s3.put_bucket_encryption().bucket(name);
                let req = req.server_side_encryption_configuration(conf.build().unwrap());
                req.send().await.map(drop).map_err(failed)
            }
            Drift::Policy => {
                let hijacked = json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": "*", "Action": "s3:*",
                    "Resource": format!("arn:aws:s3:::{name}/*")}]});
                let req = s3.put_bucket_policy().bucket(name);
                req.policy(hijacked.to_string())
                    .send()
                    .await
                    .map(drop)
                    .map_err(failed)
            }
            Drift::Lifecycle => {
                let req = s3.put_bucket_lifecycle_configuration().bucket(name);
                let req = req.lifecycle_configuration(intruding_lifecycle());
                req.send().await.map(drop).map_err(failed)
            }
            Drift::Cors => s3
                .delete_bucket_cors()
                .bucket(name)
                .send()
                .await
                .map(drop)
                .map_err(failed),
            Drift::Ownership => {
                let rule = OwnershipControlsRule::builder()
                    .object_ownership(ObjectOwnership::ObjectWriter)
                    .build()
                    .unwrap();
                let controls = OwnershipControls::builder().rules(rule).build().unwrap();
                let req = s3.put_bucket_ownership_controls().bucket(name);
                req.ownership_controls(controls)
                    .send()
                    .await
                    .map(drop)
                    .map_err(failed)
            }
        }
        .unwrap_or_else(|e| panic!("{self:?} drift on {name}: {e}"));
    }

    /// S3 has the spec's value again.
    async fn corrected(self, s3: &aws_sdk_s3::Client, name: &str) -> bool {
        match self {
            Drift::Tags => s3_tags(s3, name)
                .await
                .contains(&("team".into(), "storage".into())),
            Drift::Versioning => {
                s3_versioning(s3, name).await == Some(BucketVersioningStatus::Enabled)
            }
            Drift::PublicAccessBlock => {
                let out = s3.get_public_access_block().bucket(name).send().await;
                out.ok()
                    .and_then(|o| o.public_access_block_configuration().cloned())
                    .is_some_and(|c| c.block_public_acls() == Some(true))
            }
            Drift::Encryption => {
                let out = s3.get_bucket_encryption().bucket(name).send().await;
                let algorithm = out.ok().and_then(|o| {
                    let conf = o.server_side_encryption_configuration()?;
                    let rule = conf
                        .rules()
                        .first()?
                        .apply_server_side_encryption_by_default()?;
                    Some(rule.sse_algorithm().as_str().to_string())
                });
                algorithm.as_deref() == Some("AES256")
            }
            Drift::Policy => s3_policy(s3, name)
                .await
                .is_some_and(|p| same_policy(&p, &read_only_policy(name))),
            Drift::Lifecycle => s3_lifecycle(s3, name).await == expected_lifecycle(),
            Drift::Cors => s3.get_bucket_cors().bucket(name).send().await.is_ok(),
            Drift::Ownership => {
                s3_ownership(s3, name).await.as_deref() == Some("BucketOwnerPreferred")
            }
        }
    }
}

fn failed(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

/// Makes `drift` on bucket `name` and waits for its correction call.
/// Returns the bucket's reconcile passes finished from the drift to that
/// call: the pass under way may have read before the drift, then the next
/// [`EVERY_SETTING_CHECKS`] observations make each check once.
async fn corrected_after(scope: &Scope, s3: &aws_sdk_s3::Client, drift: Drift, name: &str) -> u64 {
    let put = drift.correction();
    let puts = scope.calls.operation_total(put);
    drift.make(s3, name).await;
    let (passes, at) = (scope.passes("Bucket", name), std::time::Instant::now());
    let what = format!("{put} correcting {drift:?} drift on {name}");
    wait_for(&what, WAIT, || async {
        (scope.calls.operation_total(put) > puts).then_some(())
    })
    .await;
    let took = scope.passes("Bucket", name) - passes;
    let what = format!("{drift:?} drift on {name} corrected in S3");
    wait_for(&what, WAIT, || async move {
        drift.corrected(s3, name).await.then_some(())
    })
    .await;
    eprintln!(
        "{drift:?} drift corrected after {took} passes, {:?}",
        at.elapsed()
    );
    took
}

/// Each kind of drift, made at once on eight buckets that have every
/// setting, is put back within as many polls as the bucket has checks (8),
/// with a DriftCorrected Event; a bucket deleted out of band is made again,
/// with its settings, at the next poll.
#[tokio::test]
async fn each_drift_is_corrected_within_as_many_polls_as_the_bucket_has_checks() {
    let mut scope = Scope::new("bucket-drift").await;
    scope.start_controller(POLL);
    let api: Api<Bucket> = scope.api();
    let s3 = support::s3().await;
    let names: Vec<String> = Drift::ALL.iter().map(|_| unique("dl-drift")).collect();
    for n in &names {
        let b = bucket(&scope, n, every_setting(n), json!({}), json!({}));
        api.create(&PostParams::default(), &b).await.unwrap();
    }
    settle(&scope, &names).await;

    let drifts = Drift::ALL.iter().zip(&names);
    let took =
        futures::future::join_all(drifts.map(|(drift, n)| corrected_after(&scope, &s3, *drift, n)))
            .await;
    for ((drift, n), passes) in Drift::ALL.iter().zip(&names).zip(took) {
        assert!(
            passes <= EVERY_SETTING_CHECKS + 1,
            "{drift:?} drift on {n} corrected after {passes} passes"
        );
        wait_for("DriftCorrected event", WAIT, || async {
            event_reasons(&scope, n)
                .await
                .contains(&"DriftCorrected".to_string())
                .then_some(())
        })
        .await;
    }

    // Deleted out of band: the next observation's one call finds it gone.
    let gone = &names[0];
    settle(&scope, std::slice::from_ref(gone)).await;
    let creates = scope.calls.operation_total("CreateBucket");
    s3.delete_bucket().bucket(gone).send().await.unwrap();
    let passes = scope.passes("Bucket", gone);
    wait_for("the deleted bucket made again", WAIT, || async {
        (scope.calls.operation_total("CreateBucket") > creates).then_some(())
    })
    .await;
    let took = scope.passes("Bucket", gone) - passes;
    assert!(took <= 2, "bucket {gone} made again after {took} passes");
    crate::ec2::wait_synced(&api, gone).await;
    for drift in Drift::ALL {
        assert!(
            drift.corrected(&s3, gone).await,
            "{drift:?} of the remade {gone}"
        );
    }
    for n in &names {
        api.delete(n, &DeleteParams::default()).await.unwrap();
    }
    for n in &names {
        crate::ec2::wait_gone(&api, n).await;
    }
}

/// Calls over an idle window: HeadBucket (one per full observation), each
/// of `gets`, and all.
struct WindowCalls {
    heads: u64,
    gets: Vec<u64>,
    total: u64,
    /// Passes of the buckets that observed (the final paused ones aside).
    observations: u64,
}

/// Pauses (or resumes) every bucket. Pausing waits until each says so in
/// its Synced condition: that pass followed any observation under way (one
/// pass at a time per object), and a paused object makes no call, so none is
/// then counted in part.
async fn set_paused(scope: &Scope, names: &[String], paused: bool) {
    let api: Api<Bucket> = scope.api();
    let value = if paused { json!("true") } else { Value::Null };
    let patch = json!({"metadata": {"annotations": {driftless_provider::PAUSED: value}}});
    for n in names {
        api.patch(n, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    if !paused {
        return;
    }
    for n in names {
        crate::ec2::wait_message(&api, n, "Synced", "False", |reason, _| {
            reason == "ReconcilePaused"
        })
        .await;
    }
}

/// The figure (IdleCalls) and the exact counts over a window around it,
/// bounded by pauses: it holds whole observations only, and no write.
async fn idle_calls(
    scope: &Scope,
    names: &[String],
    gets: &[&str],
) -> (crate::ec2::IdleCalls, WindowCalls) {
    set_paused(scope, names, true).await;
    let count = |scope: &Scope| WindowCalls {
        heads: scope.calls.operation_total("HeadBucket"),
        gets: gets
            .iter()
            .map(|g| scope.calls.operation_total(g))
            .collect(),
        total: scope.calls.total(),
        observations: names.iter().map(|n| scope.passes("Bucket", n)).sum(),
    };
    let before = count(scope);
    set_paused(scope, names, false).await;
    let idle = crate::ec2::IdleCalls::measure(scope, "Bucket", names, gets[0], 5).await;
    set_paused(scope, names, true).await;
    let after = count(scope);
    set_paused(scope, names, false).await;
    let window = WindowCalls {
        heads: after.heads - before.heads,
        gets: after
            .gets
            .iter()
            .zip(&before.gets)
            .map(|(a, b)| a - b)
            .collect(),
        total: after.total - before.total,
        // Each bucket's last pass in the window is its paused one.
        observations: after.observations - before.observations - names.len() as u64,
    };
    (idle, window)
}
