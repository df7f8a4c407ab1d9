//! `ProviderConfig` (driftless.dev/v1alpha1, cluster-scoped) and the AWS SDK
//! session built from it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use driftless_provider::{tenancy, AllowedNamespaces, CallCounter, CloudError, ConfigSource};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, CustomResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::calls::CountCalls;
use crate::ec2::Ec2Snapshots;
use crate::s3::bucket::BucketChecks;

/// Where AWS credentials come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CredentialsSource {
    /// The SDK's default chain: environment, shared config, web identity
    /// (IRSA), container and instance metadata.
    #[default]
    Default,
    /// Only `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) of the controller's environment.
    Environment,
    /// Keys `aws_access_key_id`, `aws_secret_access_key` and optionally
    /// `aws_session_token` of a Secret.
    Secret,
}

/// A Secret anywhere in the cluster (ProviderConfig is cluster-scoped).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    pub namespace: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.source != 'Secret' || has(self.secretRef)",
     "message": "credentials.secretRef is required when credentials.source is Secret"}
]))]
pub struct CredentialsConfig {
    #[serde(default)]
    pub source: CredentialsSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// Region, endpoint and credentials for AWS. Managed resources name one in
/// `spec.providerConfigRef` (default: `default`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "driftless.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    category = "driftless",
    printcolumn = r#"{"name":"REGION","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"CREDENTIALS","type":"string","jsonPath":".spec.credentials.source"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    /// Default region, e.g. `us-east-1`.
    #[schemars(length(min = 1))]
    pub region: String,
    /// API endpoint for every service, e.g. `http://127.0.0.1:4566` for
    /// LocalStack. When unset, `AWS_ENDPOINT_URL` of the controller applies,
    /// then AWS's own endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// S3 path-style addressing (`endpoint/bucket`). Default: true when an
    /// endpoint is set, false otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_force_path_style: Option<bool>,
    /// Which namespaces' managed resources may use this ProviderConfig: by
    /// `names` and/or a label `selector` on the Namespace. Unset: every
    /// namespace. Set with neither: none. Any other namespace gets the
    /// terminal `ProviderConfigNotAllowed` and no cloud call is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
}

/// A ready-to-use SDK configuration for one ProviderConfig.
#[derive(Clone, Debug)]
pub struct AwsSession {
    pub sdk: SdkConfig,
    pub region: String,
    pub endpoint: Option<String>,
    pub s3_path_style: bool,
    /// The ProviderConfig's `allowedNamespaces`, checked on every use.
    allowed_namespaces: Option<AllowedNamespaces>,
    calls: Arc<CallCounter>,
    /// Batched EC2 observation, shared by every object using this
    /// ProviderConfig (and kept when the session is re-read).
    pub(crate) ec2: Arc<Ec2Snapshots>,
    /// Which check each bucket's next observation makes, likewise shared.
    pub(crate) s3: Arc<BucketChecks>,
}

impl AwsSession {
    /// The interceptor every service client must carry, so no call goes uncounted.
    pub(crate) fn count_calls(&self) -> CountCalls {
        CountCalls(self.calls.clone())
    }
}

/// Sessions are re-read at most this often, so that credential rotation and
/// ProviderConfig edits apply without hammering the API server.
const SESSION_TTL: Duration = Duration::from_secs(30);

/// How old a batched observation may be by default: the default poll
/// interval (60 s), so each poll sees about one describe call per kind.
const DEFAULT_OBSERVATION_MAX_AGE: Duration = Duration::from_secs(60);

/// How long a cloud call may take: each attempt, and the whole operation
/// with its retries. Without them a call to an endpoint that accepts and
/// never answers hangs for good, holding a reconcile slot (and shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallTimeouts {
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(20),
            operation: Duration::from_secs(60),
        }
    }
}

static CALL_TIMEOUTS: RwLock<Option<CallTimeouts>> = RwLock::new(None);

/// Sets the call timeouts of this process (once, at start, from the flags).
pub fn set_call_timeouts(t: CallTimeouts) {
    *CALL_TIMEOUTS.write().expect("timeouts poisoned") = Some(t);
}

/// The call timeouts of this process (the defaults unless set).
pub fn call_timeouts() -> CallTimeouts {
    CALL_TIMEOUTS
        .read()
        .expect("timeouts poisoned")
        .unwrap_or_default()
}

/// A namespace's labels.
type Labels = BTreeMap<String, String>;

/// The AWS provider: builds sessions and counts every call made through them.
pub struct Aws {
    calls: Arc<CallCounter>,
    sessions: Mutex<HashMap<String, (Instant, AwsSession)>>,
    /// Namespace labels, for `allowedNamespaces.selector`, read at most
    /// every [`SESSION_TTL`] (and again before a refusal).
    namespace_labels: Mutex<HashMap<String, (Instant, Labels)>>,
    /// Per ProviderConfig, region and endpoint: outlives session re-reads.
    ec2_snapshots: Mutex<HashMap<String, Arc<Ec2Snapshots>>>,
    /// Likewise, for buckets.
    bucket_checks: Mutex<HashMap<String, Arc<BucketChecks>>>,
    observation_max_age: Duration,
}

impl Default for Aws {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl Aws {
    pub fn new(calls: Arc<CallCounter>) -> Self {
        Self {
            calls,
            sessions: Mutex::default(),
            namespace_labels: Mutex::default(),
            ec2_snapshots: Mutex::default(),
            bucket_checks: Mutex::default(),
            observation_max_age: DEFAULT_OBSERVATION_MAX_AGE,
        }
    }

    /// How old a batched observation (one describe call serving every
    /// resource of a kind) may be before it is re-read: the poll interval
    /// gives about one call per kind per poll.
    pub fn with_observation_max_age(mut self, max_age: Duration) -> Self {
        self.observation_max_age = max_age;
        self
    }

    pub fn calls(&self) -> &Arc<CallCounter> {
        &self.calls
    }

    /// The session for an object in `namespace` using `provider_config`,
    /// from the cluster or the environment. From a cluster, a namespace
    /// that the ProviderConfig does not allow gets the terminal
    /// `ProviderConfigNotAllowed`, before any cloud client exists. Push mode
    /// (the environment) has no ProviderConfig objects: nothing to check.
    pub async fn session(
        &self,
        source: &ConfigSource,
        provider_config: &str,
        namespace: &str,
    ) -> Result<AwsSession, CloudError> {
        let key = match source {
            ConfigSource::Cluster(_) => format!("cluster/{provider_config}"),
            ConfigSource::Environment => "environment".to_string(),
        };
        let cached = self
            .sessions
            .lock()
            .expect("sessions poisoned")
            .get(&key)
            .filter(|(at, _)| at.elapsed() < SESSION_TTL)
            .map(|(_, s)| s.clone());
        if let Some(s) = cached {
            match source {
                ConfigSource::Environment => return Ok(s),
                ConfigSource::Cluster(client) => {
                    let allowed = s.allowed_namespaces.as_ref();
                    if self.admits(client, allowed, namespace, true).await? {
                        return Ok(s);
                    }
                    // Refused by what was cached: re-read the ProviderConfig
                    // (and the namespace's labels) before refusing, so that
                    // allowing a namespace applies at the next pass.
                }
            }
        }
        let session = match source {
            ConfigSource::Cluster(client) => {
                let spec = read_provider_config(client, provider_config).await?;
                // Before credentials and before any SDK client: a refused
                // namespace costs no cloud call.
                let allowed = spec.allowed_namespaces.as_ref();
                if !self.admits(client, allowed, namespace, false).await? {
                    return Err(tenancy::not_allowed(provider_config, namespace));
                }
                let creds = match spec.credentials.source {
                    CredentialsSource::Secret => {
                        let r = spec.credentials.secret_ref.as_ref().ok_or_else(|| {
                            CloudError::terminal(
                                "InvalidProviderConfig",
                                format!("ProviderConfig {provider_config}: credentials.secretRef is required"),
                            )
                        })?;
                        Some(read_secret_credentials(client, r).await?)
                    }
                    CredentialsSource::Environment => Some(env_credentials()?),
                    CredentialsSource::Default => None,
                };
                self.build(&key, &spec, creds).await
            }
            ConfigSource::Environment => {
                let region = std::env::var("AWS_REGION")
                    .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|_| "us-east-1".into());
                let spec = ProviderConfigSpec {
                    region,
                    endpoint: None,
                    credentials: CredentialsConfig::default(),
                    s3_force_path_style: None,
                    allowed_namespaces: None,
                };
                self.build(&key, &spec, None).await
            }
        };
        self.sessions
            .lock()
            .expect("sessions poisoned")
            .insert(key, (Instant::now(), session.clone()));
        Ok(session)
    }

    /// Whether `namespace` may use a ProviderConfig allowing `allowed`.
    /// Labels are read only for a selector, from the cache when `cached`.
    async fn admits(
        &self,
        client: &kube::Client,
        allowed: Option<&AllowedNamespaces>,
        namespace: &str,
        cached: bool,
    ) -> Result<bool, CloudError> {
        let Some(allowed) = allowed else {
            return Ok(true);
        };
        if !allowed.needs_labels(namespace) {
            return Ok(allowed.allows_by_name(namespace));
        }
        let labels = self.namespace_labels(client, namespace, cached).await?;
        Ok(allowed.allows(namespace, &labels))
    }

    async fn namespace_labels(
        &self,
        client: &kube::Client,
        namespace: &str,
        cached: bool,
    ) -> Result<BTreeMap<String, String>, CloudError> {
        if cached {
            let labels = self.namespace_labels.lock().expect("labels poisoned");
            if let Some((at, labels)) = labels.get(namespace) {
                if at.elapsed() < SESSION_TTL {
                    return Ok(labels.clone());
                }
            }
        }
        let api: Api<Namespace> = Api::all(client.clone());
        let labels = api
            .get_opt(namespace)
            .await
            .map_err(|e| kube_error(format!("reading Namespace {namespace}"), e))?
            .and_then(|ns| ns.metadata.labels)
            .unwrap_or_default();
        self.namespace_labels
            .lock()
            .expect("labels poisoned")
            .insert(namespace.to_string(), (Instant::now(), labels.clone()));
        Ok(labels)
    }

    async fn build(
        &self,
        key: &str,
        spec: &ProviderConfigSpec,
        creds: Option<Credentials>,
    ) -> AwsSession {
        let t = call_timeouts();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(spec.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(t.attempt.min(Duration::from_secs(5)))
                    .operation_attempt_timeout(t.attempt)
                    .operation_timeout(t.operation)
                    .build(),
            );
        if let Some(endpoint) = &spec.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(creds) = creds {
            loader = loader.credentials_provider(SharedCredentialsProvider::new(creds));
        }
        let sdk = loader.load().await;
        let endpoint = sdk.endpoint_url().map(str::to_string);
        // Another region or endpoint is another cloud: never share a snapshot.
        let cloud = format!(
            "{key} {} {}",
            spec.region,
            endpoint.as_deref().unwrap_or("-")
        );
        let ec2 = self
            .ec2_snapshots
            .lock()
            .expect("snapshots poisoned")
            .entry(cloud.clone())
            .or_insert_with(|| Arc::new(Ec2Snapshots::new(self.observation_max_age)))
            .clone();
        let s3 = self
            .bucket_checks
            .lock()
            .expect("bucket checks poisoned")
            .entry(cloud)
            .or_default()
            .clone();
        AwsSession {
            ec2,
            s3,
            region: spec.region.clone(),
            s3_path_style: spec.s3_force_path_style.unwrap_or(endpoint.is_some()),
            allowed_namespaces: spec.allowed_namespaces.clone(),
            endpoint,
            sdk,
            calls: self.calls.clone(),
        }
    }
}

async fn read_provider_config(
    client: &kube::Client,
    name: &str,
) -> Result<ProviderConfigSpec, CloudError> {
    let api: Api<ProviderConfig> = Api::all(client.clone());
    match api.get_opt(name).await {
        Ok(Some(pc)) => Ok(pc.spec),
        Ok(None) => Err(CloudError::retryable(
            "ProviderConfigNotFound",
            format!("ProviderConfig {name} does not exist"),
        )),
        Err(e) => Err(kube_error(format!("reading ProviderConfig {name}"), e)),
    }
}

/// A failed read from the API server: an answer (`KubernetesError`), or
/// none at all (`KubernetesUnreachable`: the cluster's outage, not the
/// object's fault, retried at a short, capped backoff).
fn kube_error(what: String, e: kube::Error) -> CloudError {
    let code = match e {
        kube::Error::Api(_) => "KubernetesError",
        _ => driftless_provider::KUBERNETES_UNREACHABLE,
    };
    CloudError::retryable(code, format!("{what}: {e}"))
}

async fn read_secret_credentials(
    client: &kube::Client,
    r: &SecretReference,
) -> Result<Credentials, CloudError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|e| kube_error(format!("reading Secret {}/{}", r.namespace, r.name), e))?
        .ok_or_else(|| {
            CloudError::retryable(
                "SecretNotFound",
                format!(
                    "credentials Secret {}/{} does not exist",
                    r.namespace, r.name
                ),
            )
        })?;
    let data = secret.data.unwrap_or_default();
    let get = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
    };
    let missing = |key: &str| {
        CloudError::terminal(
            "InvalidSecret",
            format!(
                "credentials Secret {}/{} has no key {key}",
                r.namespace, r.name
            ),
        )
    };
    Ok(Credentials::new(
        get("aws_access_key_id").ok_or_else(|| missing("aws_access_key_id"))?,
        get("aws_secret_access_key").ok_or_else(|| missing("aws_secret_access_key"))?,
        get("aws_session_token"),
        None,
        "driftless-secret",
    ))
}

fn env_credentials() -> Result<Credentials, CloudError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "driftless-environment",
        )),
        _ => Err(CloudError::terminal(
            "MissingCredentials",
            "credentials.source is Environment but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set",
        )),
    }
}
