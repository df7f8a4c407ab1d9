//! Where converge's time goes: the CPU seconds each process of the run
//! (controller, LocalStack, API server, etcd) spends over a window, from
//! /proc/<pid>/stat. On two shared cores, that is the profile that counts.

use std::collections::BTreeMap;
use std::path::Path;

/// The processes to account, by name.
pub struct Processes(Vec<(&'static str, u32)>);

impl Processes {
    /// The controller `controller`, and the servers whose pid files sit next
    /// to the test cluster's kubeconfig and in the run directory above it.
    pub fn of_run(controller: u32, kubeconfig: &Path, aws_endpoint: &str) -> Self {
        let cluster = kubeconfig.parent().unwrap_or(Path::new("."));
        let run = cluster.parent().unwrap_or(Path::new("."));
        let port = aws_endpoint.rsplit(':').next().unwrap_or_default();
        let pid =
            |p: &Path| -> Option<u32> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        let mut all = vec![("controller", controller)];
        let files = [
            ("localstack", run.join(format!("localstack-{port}.pid"))),
            ("apiserver", cluster.join("apiserver.pid")),
            ("etcd", cluster.join("etcd.pid")),
        ];
        all.extend(files.iter().filter_map(|(name, f)| Some((*name, pid(f)?))));
        Self(all)
    }

    /// CPU seconds used so far, by process (its waited-for children too).
    pub fn sample(&self) -> BTreeMap<&'static str, f64> {
        self.0
            .iter()
            .filter_map(|(name, pid)| Some((*name, cpu_seconds(*pid)?)))
            .collect()
    }
}

/// The CPU used between two samples.
pub fn spent(
    before: &BTreeMap<&'static str, f64>,
    after: &BTreeMap<&'static str, f64>,
) -> BTreeMap<&'static str, f64> {
    after
        .iter()
        .filter_map(|(k, v)| Some((*k, v - before.get(k)?)))
        .collect()
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11..15]
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    let ticks = out.ok().and_then(|o| String::from_utf8(o.stdout).ok());
    ticks.and_then(|t| t.trim().parse().ok()).unwrap_or(100.0)
}
