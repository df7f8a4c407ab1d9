//! The environment the suite runs against: LocalStack and a Kubernetes API
//! server. Ones the user points at (`AWS_ENDPOINT_URL`, `KUBECONFIG`) are
//! used as they are; otherwise the project's own start scripts start them and
//! the matching stop scripts (which stop only the PIDs they recorded) end them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

pub struct Env {
    pub kubeconfig: PathBuf,
    pub aws_endpoint: String,
    pub region: String,
    /// Start scripts this run ran; their `stop` siblings run on drop.
    started: Vec<PathBuf>,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the repository")
        .to_path_buf()
}

impl Env {
    pub fn start() -> anyhow::Result<Self> {
        let root = repo_root();
        let mut started = Vec::new();
        let (aws_endpoint, region) = match std::env::var("AWS_ENDPOINT_URL") {
            Ok(ep) if !ep.is_empty() => (
                ep,
                std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            ),
            _ => {
                let script = root.join("localstack/start");
                let (vars, reused) = run_start(&script)?;
                if !reused {
                    started.push(script);
                }
                (
                    vars.get("AWS_ENDPOINT_URL")
                        .context("localstack/start printed no AWS_ENDPOINT_URL")?
                        .clone(),
                    vars.get("AWS_REGION")
                        .cloned()
                        .unwrap_or_else(|| "us-east-1".into()),
                )
            }
        };
        let mut env = Self {
            kubeconfig: PathBuf::new(),
            aws_endpoint,
            region,
            started,
        };
        env.kubeconfig = match std::env::var("KUBECONFIG") {
            Ok(k) if !k.is_empty() => PathBuf::from(k),
            _ => {
                let script = root.join("tests/cluster/start");
                let (vars, reused) = run_start(&script)?;
                if !reused {
                    env.started.push(script);
                }
                PathBuf::from(
                    vars.get("KUBECONFIG")
                        .context("tests/cluster/start printed no KUBECONFIG")?,
                )
            }
        };
        Ok(env)
    }

    /// True when this run started the API server (its data is thrown away).
    pub fn owns_cluster(&self) -> bool {
        self.started.iter().any(|s| s.ends_with("cluster/start"))
    }

    pub async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("reading {}", self.kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.aws_endpoint)
            .region(aws_config::Region::new(self.region.clone()))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .load()
            .await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for start in self.started.iter().rev() {
            let stop = start.with_file_name("stop");
            let _ = Command::new(&stop).stdout(Stdio::null()).status();
        }
    }
}

/// Runs a `start` script; returns what its `export NAME=value` lines set,
/// and whether it only reused a running server (`# reused: ...`): then it
/// is not this run's to stop.
fn run_start(script: &Path) -> anyhow::Result<(BTreeMap<String, String>, bool)> {
    eprintln!("bench: running {}", script.display());
    let out = Command::new(script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed (see its message above)", script.display());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reused = stdout.lines().any(|l| l.starts_with("# reused"));
    let vars = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches(|c| c == '\'' || c == '"').to_string(),
            )
        })
        .collect();
    Ok((vars, reused))
}
