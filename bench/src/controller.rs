//! The driftless controller under test: the release binary, run as a child
//! process so that its memory is its own and its cloud calls are read from
//! its own /metrics endpoint.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::env::Env;

pub struct Controller {
    child: Child,
    addr: SocketAddr,
    pub log: PathBuf,
}

/// Memory of a process, from /proc/<pid>/status.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident now.
    pub rss_kib: u64,
    /// Peak resident since start (VmHWM).
    pub peak_kib: u64,
    /// Resident now, anonymous pages only (heap, stacks): without the
    /// binary's own pages (RssFile), which are shared and reclaimable.
    pub anon_kib: u64,
}

/// What else a controller is started with: its flags beyond the defaults
/// (e.g. `--shard a`) and environment (e.g. `MALLOC_ARENA_MAX=2`).
#[derive(Clone, Debug, Default)]
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Controller {
    pub async fn start(
        binary: &Path,
        env: &Env,
        poll: Duration,
        log_dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::launch(binary, env, poll, log_dir, name, &Launch::default()).await
    }

    pub async fn launch(
        binary: &Path,
        env: &Env,
        poll: Duration,
        log_dir: &Path,
        name: &str,
        with: &Launch,
    ) -> anyhow::Result<Self> {
        let addr = free_loopback_port()?;
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args([
                "controller",
                "--leader-elect=false",
                "--health-check-workloads=false",
                // The bench's repositories are local.
                "--allow-file-urls",
                "--poll-interval",
            ])
            .arg(format!("{}s", poll.as_secs()))
            .arg("--http-addr")
            .arg(addr.to_string())
            .args(&with.args)
            .envs(with.env.iter().map(|(k, v)| (k, v)))
            .env("KUBECONFIG", &env.kubeconfig)
            .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
            .env("AWS_REGION", &env.region)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("DRIFTLESS_GIT_CACHE", log_dir.join(format!("{name}-git")))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut c = Self { child, addr, log };
        let start = Instant::now();
        while c.get("/readyz").await.is_err() {
            if let Some(status) = c.child.try_wait()? {
                bail!("the controller exited ({status}); see {}", c.log.display());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the controller was not ready in 60 s; see {}",
                    c.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(c)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no {name} in /proc/<pid>/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
            anon_kib: field("RssAnon:")?,
        })
    }

    /// Cloud API calls so far, summed by service (`s3`, `ec2`).
    pub async fn calls_by_service(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut by_service = BTreeMap::new();
        for (labels, value) in self.metric("driftless_cloud_api_calls_total").await? {
            let service = label(&labels, "service").to_ascii_lowercase();
            *by_service.entry(service).or_insert(0) += value as u64;
        }
        Ok(by_service)
    }

    /// Reconciles of managed resources so far, whatever their result
    /// (GitSync's, counted under the same metric, are not).
    pub async fn reconciles(&self) -> anyhow::Result<u64> {
        let all = self.metric("driftless_reconciles_total").await?;
        let managed = all.iter().filter(|(l, _)| !l.contains(r#"kind="GitSync""#));
        Ok(managed.map(|(_, v)| *v as u64).sum())
    }

    /// Every sample of one metric: (labels, value).
    async fn metric(&self, name: &str) -> anyhow::Result<Vec<(String, f64)>> {
        let text = self.get("/metrics").await?;
        let prefix = format!("{name}{{");
        let mut samples = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let (labels, value) = rest.split_once("} ").context("malformed metric line")?;
            samples.push((labels.to_string(), value.trim().parse()?));
        }
        Ok(samples)
    }

    /// A plain HTTP/1.0 GET on loopback: enough for /readyz and /metrics.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).as_bytes())
            .await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        let (head, body) = buf
            .split_once("\r\n\r\n")
            .context("malformed HTTP answer")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
        }
        Ok(body.to_string())
    }

    /// Stops the process this suite started (TERM, then KILL after 10 s).
    pub fn stop(mut self) {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// The value of label `name` in `a="x",b="y"`.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\""))
        .map_or("", |v| v.trim_end_matches('"'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_label() {
        let labels = r#"service="EC2",operation="DescribeVpcs",outcome="ok""#;
        assert_eq!(super::label(labels, "service"), "EC2");
        assert_eq!(super::label(labels, "outcome"), "ok");
        assert_eq!(super::label(labels, "kind"), "");
    }
}
