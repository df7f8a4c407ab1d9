//! The shared test environment: LocalStack and a Kubernetes API server.
//!
//! An environment the user points at takes precedence: `AWS_ENDPOINT_URL`
//! (LocalStack or another AWS emulator) and `KUBECONFIG` (any cluster). What
//! is not given is started once per test run with the project's own scripts
//! (`localstack/start`, `tests/cluster/start`) and stopped by PID at exit.
//!
//! The pinned external tools (kustomize, helm, sops, age) come from `tool()`:
//! `DRIFTLESS_<NAME>_BINARY` if set, else `tools/fetch`, once per process.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use driftless::ops::passes::Passes;
use driftless::Settings;
use driftless_provider::CallCounter;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::conditions;
use kube::runtime::wait::await_condition;
use kube::Api;
use serde_json::json;

/// A child process this test owns: killed by its PID, and reaped, on drop.
pub struct Owned(pub std::process::Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `driftless controller` as users run it on a laptop, confined to `ns`:
/// the test cluster and LocalStack, the pinned tools, HTTP on a free port,
/// outside a pod (so no leader election). Callers add flags and spawn.
pub fn controller_command(ns: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftless"));
    c.args([
        "controller",
        "--namespace",
        ns,
        "--http-addr",
        "127.0.0.1:0",
    ])
    .env("KUBECONFIG", &env().kubeconfig)
    .env("AWS_ENDPOINT_URL", &env().aws_endpoint)
    .env(tool_var("kustomize"), tool("kustomize"))
    .env(tool_var("helm"), tool("helm"))
    .env_remove("KUBERNETES_SERVICE_HOST")
    .env_remove("POD_NAMESPACE")
    .env_remove("DRIFTLESS_LEADER_ELECT")
    .env_remove("DRIFTLESS_LEADER_ELECTION_NAMESPACE")
    .env_remove("DRIFTLESS_LOG");
    c
}

/// The peak resident memory of process `pid` so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

pub struct TestEnv {
    pub kubeconfig: PathBuf,
    pub aws_endpoint: String,
    pub region: String,
}

/// Scripts this run started, stopped at exit.
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static ENV: OnceLock<TestEnv> = OnceLock::new();

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

extern "C" fn stop_started() {
    let scripts = STARTED.lock().map(|s| s.clone()).unwrap_or_default();
    for start in scripts {
        let stop = start.with_file_name("stop");
        let _ = Command::new(&stop).status();
    }
}

/// Runs a `start` script and returns the variables its `export` lines set.
fn run_start(script: &Path) -> BTreeMap<String, String> {
    eprintln!("test environment: running {}", script.display());
    let out = Command::new(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (see its message above)",
        script.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `# reused: ...`: it was running before this test run; not ours to stop.
    if !stdout.lines().any(|l| l.starts_with("# reused")) {
        let mut started = STARTED.lock().unwrap();
        if started.is_empty() {
            unsafe { libc::atexit(stop_started) };
        }
        started.push(script.to_path_buf());
    }
    parse_exports(&stdout)
}

/// The variables a script's `export NAME=value` lines set.
fn parse_exports(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches(|c| c == '\'' || c == '"').to_string(),
            )
        })
        .collect()
}

/// What `tools/fetch` exported, once per test process.
static TOOLS: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// The variable that names a pinned tool's binary: `age-keygen` ->
/// `DRIFTLESS_AGE_KEYGEN_BINARY`.
pub fn tool_var(name: &str) -> String {
    format!(
        "DRIFTLESS_{}_BINARY",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// A pinned external tool ("kustomize", "helm", "sops", "age", "age-keygen"):
/// `DRIFTLESS_<NAME>_BINARY` if set, else what `tools/fetch` fetched (run once
/// per test process; it starts nothing). Its exports are then set in this
/// process too, so controllers started in-process find the same binaries.
/// Needs neither LocalStack nor the API server.
pub fn tool(name: &str) -> PathBuf {
    let var = tool_var(name);
    if let Some(p) = std::env::var_os(&var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let tools = TOOLS.get_or_init(|| {
        let script = repo_root().join("tools/fetch");
        eprintln!("test environment: running {}", script.display());
        let out = Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed (see its message above)",
            script.display()
        );
        let vars = parse_exports(&String::from_utf8_lossy(&out.stdout));
        for (k, v) in &vars {
            std::env::set_var(k, v);
        }
        vars
    });
    PathBuf::from(
        tools
            .get(&var)
            .unwrap_or_else(|| panic!("tools/fetch exported no {var}")),
    )
}

/// The pinned kustomize and helm, as the controller's flags would give them.
pub fn render_tools() -> driftless::render::Tools {
    let tool = |name: &'static str| driftless::render::Tool {
        name,
        binary: self::tool(name),
    };
    driftless::render::Tools {
        kustomize: tool("kustomize"),
        helm: tool("helm"),
        allow_remote_bases: false,
    }
}

/// `DRIFTLESS_LOG=debug cargo test ...` shows the controller's logs.
fn init_logs() {
    if let Ok(filter) = std::env::var("DRIFTLESS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub fn env() -> &'static TestEnv {
    ENV.get_or_init(|| {
        init_logs();
        let root = repo_root();
        let (aws_endpoint, region) = match std::env::var("AWS_ENDPOINT_URL") {
            Ok(ep) if !ep.is_empty() => (
                ep,
                std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            ),
            _ => {
                let vars = run_start(&root.join("localstack/start"));
                (
                    vars.get("AWS_ENDPOINT_URL")
                        .expect("localstack/start exports AWS_ENDPOINT_URL")
                        .clone(),
                    vars.get("AWS_REGION")
                        .cloned()
                        .unwrap_or_else(|| "us-east-1".into()),
                )
            }
        };
        let kubeconfig = match std::env::var("KUBECONFIG") {
            Ok(k) if !k.is_empty() => PathBuf::from(k),
            _ => {
                let vars = run_start(&root.join("tests/cluster/start"));
                PathBuf::from(
                    vars.get("KUBECONFIG")
                        .expect("tests/cluster/start exports KUBECONFIG"),
                )
            }
        };
        TestEnv {
            kubeconfig,
            aws_endpoint,
            region,
        }
    })
}

/// The configuration of the test cluster's admin (all-powerful) client.
pub async fn kube_config() -> kube::Config {
    let env = env();
    let kc = Kubeconfig::read_from(&env.kubeconfig).expect("readable kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig")
}

/// A client for this test's runtime.
pub async fn kube_client() -> kube::Client {
    kube::Client::try_from(kube_config().await).expect("kube client")
}

pub async fn aws_config() -> aws_config::SdkConfig {
    let env = env();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&env.aws_endpoint)
        .region(Region::new(env.region.clone()))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

pub async fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&aws_config().await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&aws_config().await)
}

/// A short random suffix for names that must be unique in the cloud.
/// Tests that put a hundred objects or more through the shared LocalStack
/// take turns: on this 2-core machine two of them at once slow each other
/// (and everything else) past their bounds. Hold the guard for the test.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Tests that write deploy/'s cluster-scoped objects (the ClusterRole
/// `driftless`, namespace `driftless-system`) take turns: `bootstrap`
/// checks that its second run writes none of them, and the RBAC test
/// applies them with kubectl. Hold the guard for the test.
pub async fn install_writer() -> tokio::sync::MutexGuard<'static, ()> {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    INSTALL.lock().await
}

pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{n:08x}")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Installs every driftless CRD and waits until each is established.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in driftless::cli::crds::all() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("driftless-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established in 30 s"))
        .unwrap();
    }
}

/// The Subnet of [`Scope::start_ticker`].
pub const TICKER: &str = "ticker";

/// One test's world: a namespace, a ProviderConfig pointing at the test AWS
/// endpoint, and (optionally) a controller watching only that namespace.
pub struct Scope {
    pub client: kube::Client,
    pub ns: String,
    pub provider_config: String,
    pub calls: Arc<CallCounter>,
    /// Metrics and notifier of the controller (default: metrics, no notifications).
    pub shared: Option<driftless::ops::Shared>,
    /// Finished reconcile passes per object, kept across controller restarts.
    pub passes: Arc<Passes>,
    /// The poll interval of the running controller.
    pub poll: Duration,
    controller: Option<tokio::task::JoinHandle<()>>,
}

/// Namespace `ns` with the test cloud's credentials in its Secret `aws-creds`.
pub async fn create_namespace_with_credentials(client: &kube::Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create test namespace");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let creds = json!({
        "metadata": {"name": "aws-creds"},
        "stringData": {"aws_access_key_id": "test", "aws_secret_access_key": "test"},
    });
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(creds).unwrap(),
        )
        .await
        .expect("create credentials secret");
}

/// ProviderConfig `name` for the cloud at `endpoint`, with the credentials
/// of namespace `creds_ns` (see [`create_namespace_with_credentials`]).
pub async fn create_provider_config(
    client: &kube::Client,
    name: &str,
    endpoint: &str,
    creds_ns: &str,
) {
    let pcs: Api<driftless_aws::ProviderConfig> = Api::all(client.clone());
    let pc: driftless_aws::ProviderConfig = serde_json::from_value(json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": name},
        "spec": {
            "region": env().region,
            "endpoint": endpoint,
            "credentials": {"source": "Secret", "secretRef": {"namespace": creds_ns, "name": "aws-creds"}},
        }
    }))
    .unwrap();
    pcs.create(&PostParams::default(), &pc)
        .await
        .expect("create ProviderConfig");
}

impl Scope {
    pub async fn new(prefix: &str) -> Self {
        let client = kube_client().await;
        install_crds(&client).await;
        let ns = unique(prefix);
        create_namespace_with_credentials(&client, &ns).await;
        let provider_config = format!("pc-{ns}");
        create_provider_config(&client, &provider_config, &env().aws_endpoint, &ns).await;
        Self {
            client,
            ns,
            provider_config,
            calls: Arc::new(CallCounter::default()),
            shared: None,
            passes: Arc::default(),
            poll: Duration::ZERO,
            controller: None,
        }
    }

    /// Starts the controller for this namespace with a short poll interval.
    pub fn start_controller(&mut self, poll: Duration) {
        self.start_controller_full(self.client.clone(), poll, |_| {});
    }

    /// Like [`Self::start_controller`], with settings changed by `change`.
    pub fn start_controller_with(&mut self, poll: Duration, change: impl FnOnce(&mut Settings)) {
        self.start_controller_full(self.client.clone(), poll, change);
    }

    /// Like [`Self::start_controller`], talking to Kubernetes through
    /// `client` (a test may wrap the API connection to inject faults).
    pub fn start_controller_client(&mut self, client: kube::Client, poll: Duration) {
        self.start_controller_full(client, poll, |_| {});
    }

    fn start_controller_full(
        &mut self,
        client: kube::Client,
        poll: Duration,
        change: impl FnOnce(&mut Settings),
    ) {
        let mut settings = Settings {
            poll_interval: poll,
            concurrency: 4,
            terminal_backoff: Duration::from_secs(600),
            namespace: Some(self.ns.clone()),
            git_cache: std::env::temp_dir().join("driftless-tests").join(&self.ns),
            // The test API server runs no workload controllers.
            health_check_workloads: false,
            render: render_tools(),
            // The tests' repositories are local (file://).
            sources: driftless::gitsync::source::UrlPolicy {
                allow_file_urls: true,
                allowed_prefixes: Vec::new(),
            },
            ..Settings::default()
        };
        change(&mut settings);
        self.poll = settings.poll_interval;
        let mut shared = self
            .shared
            .clone()
            .unwrap_or_else(|| driftless::ops::Shared::new(self.calls.clone()));
        shared.passes = self.passes.clone();
        self.controller = Some(tokio::spawn(driftless::cli::controller::run_engines(
            client, settings, shared,
        )));
    }

    /// Finished reconcile passes of `kind` `name` in this namespace.
    pub fn passes(&self, kind: &str, name: &str) -> u64 {
        self.passes.count(kind, &self.ns, name)
    }

    /// Waits until `kind` `name` has finished at least `at_least` reconcile
    /// passes (woken by each pass, no polling); returns the count. "Nothing
    /// happened in N polls" is shown by waiting here, not by sleeping.
    pub async fn wait_passes(&self, kind: &str, name: &str, at_least: u64) -> u64 {
        let timeout = Duration::from_secs(120);
        self.passes
            .wait_until(kind, &self.ns, name, at_least, timeout)
            .await
            .unwrap_or_else(|n| {
                panic!(
                    "{kind} {name}: {n} reconcile passes after {timeout:?}, waited for {at_least}"
                )
            })
    }

    /// Starts a clock made of reconcile passes, for tests whose own objects
    /// are not requeued (paused, or failed terminally): Subnet [`TICKER`]
    /// references a Vpc that never exists, so it waits without any cloud
    /// call and is requeued every `reference_retry`. Start the controller
    /// with `reference_retry` set to the poll interval: then each of its
    /// passes is one poll of the controller's timers.
    pub async fn start_ticker(&self) {
        let subnet: driftless_aws::Subnet = serde_json::from_value(json!({
            "apiVersion": "aws.driftless.dev/v1alpha1",
            "kind": "Subnet",
            "metadata": {"name": TICKER, "namespace": self.ns},
            "spec": {
                "providerConfigRef": {"name": self.provider_config},
                "forProvider": {"vpcRef": {"name": "never-created"}, "cidrBlock": "10.255.1.0/24"},
            },
        }))
        .unwrap();
        self.api::<driftless_aws::Subnet>()
            .create(&PostParams::default(), &subnet)
            .await
            .expect("create the ticker Subnet");
        self.wait_passes("Subnet", TICKER, 1).await;
    }

    /// Waits for `n` more passes of the ticker (see [`Self::start_ticker`]).
    pub async fn wait_ticks(&self, n: u64) {
        let now = self.passes("Subnet", TICKER);
        self.wait_passes("Subnet", TICKER, now + n).await;
    }

    pub fn stop_controller(&mut self) {
        if let Some(handle) = self.controller.take() {
            handle.abort();
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Runs kubectl against the test cluster; returns (success, stdout, stderr).
    /// It runs on the blocking pool: the controller, on this test's runtime,
    /// keeps working meanwhile (`kubectl wait` needs it to).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&args, stdin.as_deref())
        })
        .await
        .expect("kubectl task")
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.stop_controller();
    }
}

/// `kubectl wait --for=condition=Ready` on `targets` in `ns`.
pub fn kubectl_wait_ready(ns: &str, timeout: &str, targets: &[&str]) -> (bool, String, String) {
    let timeout = format!("--timeout={timeout}");
    let mut args = vec!["wait", "-n", ns, "--for=condition=Ready", timeout.as_str()];
    args.extend_from_slice(targets);
    kubectl(&args, None)
}

pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &env().kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of a cloud read, `None` when `not_found` says the error means
/// "there is no such thing"; any other error fails the test with the error
/// (a throttled or broken read must not pass for "deleted").
pub fn unless_not_found<T, E>(
    what: &str,
    result: Result<T, E>,
    not_found: impl FnOnce(&E) -> bool,
) -> Option<T>
where
    E: std::error::Error + 'static,
{
    match result {
        Ok(v) => Some(v),
        Err(e) if not_found(&e) => None,
        Err(e) => panic!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(&e)),
    }
}

/// A `not_found` for [`unless_not_found`]: the AWS error code is one of `codes`.
pub fn code_in<E: aws_sdk_ec2::error::ProvideErrorMetadata>(
    codes: &'static [&'static str],
) -> impl FnOnce(&E) -> bool {
    move |e| e.code().is_some_and(|c| codes.contains(&c))
}

/// A bucket's tags; none when it has no tag set or no longer exists.
pub async fn s3_tags(s3: &aws_sdk_s3::Client, name: &str) -> Vec<(String, String)> {
    let result = s3.get_bucket_tagging().bucket(name).send().await;
    unless_not_found(
        &format!("GetBucketTagging {name}"),
        result,
        code_in(&["NoSuchTagSet", "NoSuchBucket"]),
    )
    .map(|out| {
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    })
    .unwrap_or_default()
}

/// Serves the controller's HTTP endpoints (health, metrics, webhooks) on a
/// free loopback port, as `driftless controller` does; returns the address.
pub async fn serve_http(
    client: kube::Client,
    metrics: Arc<driftless::ops::metrics::Metrics>,
) -> std::net::SocketAddr {
    serve_http_with(client, metrics, None).await.0
}

/// The controller's HTTP server (metrics on a port of their own when
/// `metrics_addr`), once its webhook keys are loaded.
pub async fn serve_http_with(
    client: kube::Client,
    metrics: Arc<driftless::ops::metrics::Metrics>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> (std::net::SocketAddr, Option<std::net::SocketAddr>) {
    let webhook = driftless::gitsync::webhook::Receiver::start(client.clone(), None);
    webhook.synced().await;
    let state = Arc::new(driftless::ops::http::HttpState {
        client,
        metrics,
        ready: true.into(),
        webhook,
    });
    driftless::ops::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics_addr,
        state,
        driftless::gitsync::webhook::routes(),
    )
    .await
    .expect("serve HTTP on a free port")
}

/// One plain HTTP/1.0 request; returns (status, body).
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: test\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The Events of this scope's namespace about the object named `name`.
pub async fn events_about(scope: &Scope, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> = scope.api();
    let list = events.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}
/// A test cluster of this test's own (tests/cluster/start on free ports),
/// stopped by its own script (by the recorded PIDs) on drop.
pub struct OwnCluster {
    pub port: u16,
    pub kubeconfig: PathBuf,
}

impl OwnCluster {
    pub fn free_port() -> u16 {
        loop {
            let p = 20_000 + rand::random::<u16>() % 20_000;
            let free = (p..p + 3).all(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok());
            if free {
                return p;
            }
        }
    }

    pub fn start(port: u16) -> Self {
        let kubeconfig = Self::run_start(port, false);
        Self { port, kubeconfig }
    }

    /// Starts the stopped cluster again, with its data (etcd's) and PKI.
    pub fn start_again(&self) {
        Self::run_start(self.port, true);
    }

    fn run_start(port: u16, keep_data: bool) -> PathBuf {
        let out = Command::new(repo_root().join("tests/cluster/start"))
            .env("DRIFTLESS_APISERVER_PORT", port.to_string())
            .env(
                "DRIFTLESS_CLUSTER_KEEP_DATA",
                if keep_data { "1" } else { "0" },
            )
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "tests/cluster/start on {port} failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .expect("KUBECONFIG exported")
            .trim_matches(|c| c == '\'' || c == '"')
            .into()
    }

    pub fn stop(&self) {
        let ok = Command::new(repo_root().join("tests/cluster/stop"))
            .env("DRIFTLESS_APISERVER_PORT", self.port.to_string())
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "tests/cluster/stop on {}", self.port);
    }

    pub async fn client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    pub fn kubectl(&self, args: &[&str], stdin: &str) {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/cluster/stop"))
            .env("DRIFTLESS_APISERVER_PORT", self.port.to_string())
            .output();
    }
}
