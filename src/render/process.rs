//! Running a render tool (kustomize, helm) as a sandboxed child process: an
//! empty environment with a HOME and XDG dirs of its own (so no user config,
//! plugins or credentials are seen), no network unless allowed, a deadline
//! after which it is killed, and caps on what it may print.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most a tool may print on stdout (the rendered YAML).
pub const MAX_OUTPUT: u64 = 64 << 20;
/// The most of its stderr that is kept (messages quote its first lines).
const MAX_STDERR: u64 = 1 << 20;
/// Where requests go when the network is off: a closed port, so a tool that
/// tries fails at once instead of reaching anything.
const NO_NETWORK_PROXY: &str = "http://127.0.0.1:9";

/// A tool binary and how the user points driftless at it.
#[derive(Clone, Debug)]
pub struct Tool {
    /// `kustomize` or `helm`.
    pub name: &'static str,
    /// A path, or a name looked up on PATH.
    pub binary: PathBuf,
}

impl Tool {
    /// The flag and variable that set this tool's binary.
    fn setting(&self) -> String {
        format!(
            "--{0}-binary or DRIFTLESS_{1}_BINARY",
            self.name,
            self.name.to_uppercase()
        )
    }

    /// The binary to run: `binary` itself when it is a path, else the first
    /// match on PATH.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        let missing = |what: String| {
            format!(
                "the {} binary {what}: install it or set {} (tools/fetch gets the pinned version)",
                self.name,
                self.setting()
            )
        };
        if self.binary.components().count() > 1 || self.binary.is_absolute() {
            return match std::fs::metadata(&self.binary) {
                Ok(m) if m.is_file() => Ok(self.binary.clone()),
                _ => Err(missing(format!("{} does not exist", self.binary.display()))),
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(&self.binary))
            .find(|p| p.is_file())
            .ok_or_else(|| missing(format!("{} is not on PATH", self.binary.to_string_lossy())))
    }
}

/// A directory removed when dropped: the tool's HOME, or scratch files.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(purpose: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "driftless-{purpose}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tool args...` in `cwd` and returns its stdout. Errors name the
/// tool and quote the first lines it wrote to stderr.
pub async fn run(
    tool: &Tool,
    args: &[OsString],
    cwd: &Path,
    timeout: Duration,
    network: bool,
) -> Result<Vec<u8>, String> {
    let binary = tool.resolve()?;
    let home = TempDir::new(tool.name)?;
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    sandbox_env(&mut cmd, home.path(), network);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let outcome = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, MAX_OUTPUT),
            read_capped(stderr, MAX_STDERR),
            child.wait()
        );
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = outcome else {
        let _ = child.kill().await;
        return Err(format!(
            "{} took longer than {} (spec.timeout) and was killed",
            tool.name,
            humantime::format_duration(timeout)
        ));
    };
    let status = status.map_err(|e| format!("waiting for {}: {e}", tool.name))?;
    let Some(out) = out else {
        return Err(format!(
            "{} printed more than {} MiB; refused",
            tool.name,
            MAX_OUTPUT >> 20
        ));
    };
    if !status.success() {
        let err = String::from_utf8_lossy(&err.unwrap_or_default()).into_owned();
        return Err(format!(
            "{} failed ({status}): {}",
            tool.name,
            first_lines(&err, 8)
        ));
    }
    Ok(out)
}

/// The environment of a tool: nothing of the controller's (no cloud or Git
/// credentials), its own HOME, and no network unless allowed.
fn sandbox_env(cmd: &mut tokio::process::Command, home: &Path, network: bool) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HELM_CONFIG_HOME", home.join("config/helm"))
        .env("HELM_CACHE_HOME", home.join("cache/helm"))
        .env("HELM_DATA_HOME", home.join("data/helm"))
        .env("GIT_TERMINAL_PROMPT", "0");
    if network {
        // Remote bases: kustomize runs git, and honours the usual proxies.
        for key in [
            "PATH",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "NO_PROXY",
            "SSL_CERT_FILE",
        ] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
    } else {
        cmd.env("PATH", "/nonexistent");
        for key in [
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
        ] {
            cmd.env(key, NO_NETWORK_PROXY);
        }
    }
}

/// All of `reader` up to `cap` bytes; `None` when it had more.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, cap: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let Some(reader) = reader else {
        return Some(buf);
    };
    let mut limited = reader.take(cap + 1);
    if limited.read_to_end(&mut buf).await.is_err() {
        return Some(buf);
    }
    // Drain the rest so the tool is not blocked on a full pipe.
    let mut rest = limited.into_inner();
    let over = buf.len() as u64 > cap;
    if over {
        let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
        return None;
    }
    Some(buf)
}

/// The first `n` non-empty lines of `text`, joined with ` | `.
pub fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect();
    if lines.is_empty() {
        "(no message)".into()
    } else {
        lines.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_the_flag() {
        let tool = Tool {
            name: "kustomize",
            binary: "/nonexistent/kustomize".into(),
        };
        let err = tool.resolve().unwrap_err();
        assert!(err.contains("--kustomize-binary"), "{err}");
        assert!(err.contains("DRIFTLESS_KUSTOMIZE_BINARY"), "{err}");
        let tool = Tool {
            name: "helm",
            binary: "no-such-helm-binary".into(),
        };
        let err = tool.resolve().unwrap_err();
        assert!(
            err.contains("not on PATH") && err.contains("--helm-binary"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_hanging_tool_is_killed_at_the_deadline() {
        let tool = Tool {
            name: "sleep",
            binary: "/bin/sleep".into(),
        };
        let started = std::time::Instant::now();
        let err = run(
            &tool,
            &["30".into()],
            Path::new("/"),
            Duration::from_millis(200),
            false,
        )
        .await
        .unwrap_err();
        assert!(err.contains("was killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn it_sees_none_of_the_controllers_environment() {
        let tool = Tool {
            name: "env",
            binary: "/usr/bin/env".into(),
        };
        let out = run(&tool, &[], Path::new("/"), Duration::from_secs(10), false)
            .await
            .unwrap();
        let env = String::from_utf8(out).unwrap();
        assert!(!env.contains("AWS_"), "{env}");
        assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:9"), "{env}");
        assert!(env.contains("HOME=/"), "{env}");
    }

    #[test]
    fn first_lines_skip_blank_ones() {
        assert_eq!(first_lines("\n a \n\nb\nc", 2), "a | b");
        assert_eq!(first_lines("", 2), "(no message)");
    }
}
