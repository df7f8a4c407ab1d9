//! Memory (section 3 of BENCHMARKS.md): the controller's RSS with 10,000 objects, paused (no cloud
//! calls: the cost of caching and reconciling them) and active (reconciled
//! against LocalStack every poll: the snapshots of the batched observation
//! too). Each case is measured while the objects appear and after a restart
//! (a rollout: one LIST of everything, every object reconciled at once),
//! and the restart is repeated for each `--variant` (another binary or
//! environment, e.g. an allocator) on the same objects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::controller::{Controller, Launch, Memory};
use crate::env::Env;
use crate::{floor, world, Report};

/// The poll interval of the memory controllers: long enough that 10,000
/// active objects are one pass per poll on two shared cores.
pub const POLL: Duration = Duration::from_secs(60);

/// Another way to run the controller, measured on the same objects.
#[derive(Clone, Debug)]
pub struct Variant {
    pub label: String,
    pub binary: PathBuf,
    pub launch: Launch,
}

impl Variant {
    /// `LABEL BINARY [NAME=VALUE ...]`; `-` as BINARY is `default`'s.
    pub fn parse(spec: &str, default: &Path) -> anyhow::Result<Self> {
        let mut words = spec.split_whitespace();
        let (Some(label), Some(binary)) = (words.next(), words.next()) else {
            bail!("--variant {spec:?}: expected `LABEL BINARY [NAME=VALUE ...]`");
        };
        let env = words
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--variant {spec:?}: {kv:?} is not NAME=VALUE"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            label: label.to_string(),
            binary: match binary {
                "-" => default.to_path_buf(),
                path => PathBuf::from(path),
            },
            launch: Launch {
                args: Vec::new(),
                env,
            },
        })
    }
}

/// What the memory scenarios share.
pub struct Scene<'a> {
    pub env: &'a Env,
    pub client: &'a kube::Client,
    pub ec2: &'a aws_sdk_ec2::Client,
    pub work: &'a Path,
    pub run_id: &'a str,
    pub n: usize,
    /// The measured binary first (label `default`), then `--variant`s.
    pub variants: Vec<Variant>,
    /// Leave the active objects and their cloud resources in place.
    pub keep: bool,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A restarted controller, after its first pass over everything.
struct Restarted {
    /// Read once settled: `peak_kib` (VmHWM) covers the whole run.
    settled: Memory,
    first_pass: Duration,
}

impl Scene<'_> {
    fn default_variant(&self) -> &Variant {
        &self.variants[0]
    }

    async fn launch(&self, v: &Variant, name: &str) -> anyhow::Result<Controller> {
        Controller::launch(&v.binary, self.env, POLL, self.work, name, &v.launch).await
    }

    /// Restarts with `v` over the objects in place: `settle_reconciles`
    /// more reconciles after the first pass (a full poll of the active
    /// ones) before the settled figure; with none, 10 s.
    async fn restart(
        &self,
        v: &Variant,
        case: &str,
        settle_reconciles: usize,
    ) -> anyhow::Result<Restarted> {
        let n = self.n;
        eprintln!(
            "bench: memory, {case}: {} restarted over {n} objects",
            v.label
        );
        let ctl = self
            .launch(v, &format!("controller-{case}-{}", v.label))
            .await?;
        let start = Instant::now();
        wait_reconciles(&ctl, n, Duration::from_secs(900)).await?;
        let first_pass = start.elapsed();
        if settle_reconciles == 0 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        } else {
            wait_reconciles(&ctl, n + settle_reconciles, POLL * 5).await?;
        }
        let settled = ctl.memory()?;
        ctl.stop();
        Ok(Restarted {
            settled,
            first_pass,
        })
    }

    /// Every `--variant` restarted over the objects in place.
    async fn variants(
        &self,
        case: &str,
        settle_reconciles: usize,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        for v in &self.variants[1..] {
            let r = self.restart(v, case, settle_reconciles).await?;
            let label = &v.label;
            report.add(
                format!("alloc_{label}_{case}_peak_mib"),
                mib(r.settled.peak_kib),
                "MiB",
                None,
            );
            report.add(
                format!("alloc_{label}_{case}_settled_mib"),
                mib(r.settled.rss_kib),
                "MiB",
                None,
            );
            report.add(
                format!("alloc_{label}_{case}_settled_anon_mib"),
                mib(r.settled.anon_kib),
                "MiB",
                None,
            );
        }
        Ok(())
    }

    /// 10,000 paused objects: the headline `rss_mib_10k`.
    pub async fn paused(&self, report: &mut Report) -> anyhow::Result<()> {
        let n = self.n;
        let ns = format!("{}-memory", self.run_id);
        world::create_namespace(self.client, &ns).await?;
        let ctl = self
            .launch(self.default_variant(), "controller-memory")
            .await?;
        eprintln!("bench: memory, {n} paused objects created while the controller runs");
        let objects = world::mix(n, &ns, &format!("{}-m", self.run_id), true);
        world::apply_all(self.client, &objects, 32).await?;
        // The controller's own count first (no LIST of 10,000 objects a
        // second competing for the cores), then LISTs until every object
        // says so (an object reconciled twice makes the count run ahead).
        wait_reconciles(&ctl, n, Duration::from_secs(900)).await?;
        let start = Instant::now();
        loop {
            let (paused, _) =
                world::count(self.client, &ns, "Synced", Some("ReconcilePaused")).await?;
            if paused >= n {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                bail!("{n} reconciles, but only {paused} of {n} objects say ReconcilePaused");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let growing = ctl.memory()?;
        ctl.stop();
        // The harder case: a restart (a rollout) lists all of them at once
        // and reconciles each.
        let restarted = self.restart(self.default_variant(), "paused", 0).await?;
        report.add(
            format!("rss_peak_growing_{n}_mib"),
            mib(growing.peak_kib),
            "MiB",
            None,
        );
        report.add(
            format!("rss_peak_restart_{n}_mib"),
            mib(restarted.settled.peak_kib),
            "MiB",
            None,
        );
        report.add(
            format!("rss_settled_{n}_mib"),
            mib(restarted.settled.rss_kib),
            "MiB",
            None,
        );
        report.add(
            format!("restart_reconcile_{n}_s"),
            restarted.first_pass.as_secs_f64(),
            "s",
            None,
        );
        report.add(
            "rss_mib_10k",
            mib(growing.peak_kib.max(restarted.settled.peak_kib)),
            "MiB (peak)",
            Some(("<=", 64.0)),
        );
        self.variants("paused", 0, report).await?;
        // Paused objects have no finalizer and no cloud resource.
        world::drop_all(self.client, &ns).await
    }

    /// 10,000 active EC2 objects reconciled against LocalStack every poll:
    /// the headline `rss_mib_10k_active`.
    pub async fn active(&self, report: &mut Report) -> anyhow::Result<()> {
        let n = self.n;
        let ns = format!("{}-active", self.run_id);
        let run = format!("{}-active", self.run_id);
        world::create_namespace(self.client, &ns).await?;
        let objects = world::ec2_mix(n, &ns, &run, &world::Ec2Mix::default());
        eprintln!("bench: memory, making the {n} cloud resources (owner-tagged, untimed)");
        let start = Instant::now();
        floor::premake(self.ec2, &objects).await?;
        let premade = start.elapsed();
        let ctl = self
            .launch(self.default_variant(), "controller-active")
            .await?;
        eprintln!("bench: memory, {n} active EC2 objects adopted while the controller runs");
        let start = Instant::now();
        world::apply_all(self.client, &objects, 32).await?;
        drop(objects);
        world::wait_settled(self.client, &run, n, Duration::from_secs(3600)).await?;
        let created = start.elapsed();
        report.add(
            format!("active_premake_{n}_s"),
            premade.as_secs_f64(),
            "s",
            None,
        );
        let growing = ctl.memory()?;
        // One more full poll with all of them Ready: the settled figure,
        // and the steady cloud calls per resource per poll.
        let (reconciles, calls) = (ctl.reconciles().await?, ec2_calls(&ctl).await?);
        wait_reconciles(&ctl, reconciles as usize + n, POLL * 5).await?;
        let steady_calls = ec2_calls(&ctl).await? - calls;
        let settled = ctl.memory()?;
        ctl.stop();
        let restarted = self.restart(self.default_variant(), "active", n).await?;
        add_active(
            report,
            n,
            created,
            growing,
            settled,
            &restarted,
            steady_calls,
        );
        self.variants("active", n, report).await?;
        if self.keep {
            eprintln!("bench: --keep: the {n} active objects stay in namespace {ns}");
            return Ok(());
        }
        eprintln!(
            "bench: memory, removing the {n} active objects and their cloud resources (untimed)"
        );
        world::drop_all(self.client, &ns).await?;
        floor::delete_owned_in(self.ec2, &format!("{ns}/")).await?;
        Ok(())
    }
}

fn add_active(
    report: &mut Report,
    n: usize,
    created: Duration,
    growing: Memory,
    settled: Memory,
    restarted: &Restarted,
    steady_calls: u64,
) {
    report.add(
        format!("active_adopt_{n}_s"),
        created.as_secs_f64(),
        "s",
        None,
    );
    report.add(
        format!("rss_active_peak_growing_{n}_mib"),
        mib(growing.peak_kib),
        "MiB",
        None,
    );
    report.add(
        format!("rss_active_settled_{n}_mib"),
        mib(settled.rss_kib),
        "MiB",
        None,
    );
    report.add(
        format!("rss_anon_active_settled_{n}_mib"),
        mib(settled.anon_kib),
        "MiB",
        None,
    );
    report.add(
        format!("rss_active_peak_restart_{n}_mib"),
        mib(restarted.settled.peak_kib),
        "MiB",
        None,
    );
    report.add(
        format!("rss_active_settled_restart_{n}_mib"),
        mib(restarted.settled.rss_kib),
        "MiB",
        None,
    );
    report.add(
        format!("active_restart_reconcile_{n}_s"),
        restarted.first_pass.as_secs_f64(),
        "s",
        None,
    );
    report.add(
        "active_calls_per_resource_poll",
        steady_calls as f64 / n as f64,
        "(EC2, one poll)",
        Some(("<=", 0.02)),
    );
    let peak = growing.peak_kib.max(restarted.settled.peak_kib);
    report.add(
        "rss_mib_10k_active",
        mib(peak),
        "MiB (peak)",
        Some(("<=", 64.0)),
    );
}

pub async fn ec2_calls(ctl: &Controller) -> anyhow::Result<u64> {
    Ok(ctl
        .calls_by_service()
        .await?
        .get("ec2")
        .copied()
        .unwrap_or(0))
}

/// Waits until the controller counts `at_least` managed reconciles.
pub async fn wait_reconciles(
    ctl: &Controller,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let done = ctl.reconciles().await? as usize;
        if done >= at_least {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{done} of {at_least} reconciles after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
