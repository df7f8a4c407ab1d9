//! Scale-out (section 6 of BENCHMARKS.md): K controllers, each started with `--shard sK`, over
//! objects labelled `driftless.dev/shard=sK` (one namespace per shard; a
//! tenth of the Vpc/Subnet/SecurityGroup groups active, the rest paused).
//! Per shard: RSS, the time of a full poll cycle of its active objects and
//! the reconciles per second in it, cloud calls per active object per poll,
//! and a restart's first pass over everything. The cost per object should
//! not move with the number of objects: compare the configurations.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::controller::{Controller, Launch};
use crate::env::Env;
use crate::memory::{ec2_calls, wait_reconciles};
use crate::{floor, world, Report};

/// The shard controllers' poll interval.
pub const POLL: Duration = Duration::from_secs(30);

/// `KxN`: K shards of N objects each.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub shards: usize,
    pub per_shard: usize,
}

impl std::str::FromStr for Config {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('x').ok_or(format!("{s:?}: expected KxN"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
        Ok(Self {
            shards: num(k)?,
            per_shard: num(n)?,
        })
    }
}

pub struct Scene<'a> {
    pub binary: &'a Path,
    pub env: &'a Env,
    pub client: &'a kube::Client,
    pub ec2: &'a aws_sdk_ec2::Client,
    pub work: &'a Path,
    pub run_id: &'a str,
    /// One group in this many is active.
    pub active_every: usize,
    /// Anonymous RSS of a controller with nothing to manage, MiB.
    pub idle_anon_mib: f64,
}

/// One shard's objects.
struct Shard {
    name: String,
    ns: String,
    objects: usize,
    active: usize,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Scene<'_> {
    async fn start(&self, shards: &[Shard], tag: &str) -> anyhow::Result<Vec<Controller>> {
        let mut ctls = Vec::new();
        for s in shards {
            let with = Launch {
                args: vec!["--shard".into(), s.name.clone()],
                env: Vec::new(),
            };
            let log = format!("controller-{tag}-{}", s.name);
            ctls.push(
                Controller::launch(self.binary, self.env, POLL, self.work, &log, &with).await?,
            );
        }
        Ok(ctls)
    }

    /// Runs one configuration and adds its figures, named `shards_KxN_*`.
    pub async fn run(&self, c: Config, report: &mut Report) -> anyhow::Result<()> {
        let tag = format!("{}x{}", c.shards, c.per_shard);
        let run = format!("{}-sh{tag}", self.run_id);
        let mut shards = Vec::new();
        let mut objects = Vec::new();
        for k in 0..c.shards {
            let (name, ns) = (format!("s{k}"), format!("{run}-{k}"));
            world::create_namespace(self.client, &ns).await?;
            let how = world::Ec2Mix {
                shard: Some(name.clone()),
                active_every: self.active_every,
                all_paused: false,
            };
            let mine = world::ec2_mix(c.per_shard, &ns, &run, &how);
            let active = mine
                .iter()
                .filter(|o| o["metadata"]["annotations"].is_null())
                .count();
            shards.push(Shard {
                name,
                ns,
                objects: mine.len(),
                active,
            });
            objects.extend(mine);
        }
        let total = objects.len();
        // The active groups' cloud resources, made directly and adopted (as
        // in the memory scenario): creating them through the controllers
        // would take most of an hour on two shared cores.
        let active: Vec<_> = objects
            .iter()
            .filter(|o| o["metadata"]["annotations"].is_null())
            .cloned()
            .collect();
        eprintln!(
            "bench: shards {tag}: making {} cloud resources (untimed)",
            active.len()
        );
        floor::premake(self.ec2, &active).await?;
        drop(active);
        eprintln!(
            "bench: shards {tag}: {total} objects over {} controllers",
            c.shards
        );
        let ctls = self.start(&shards, "grow").await?;
        let start = Instant::now();
        world::apply_all(self.client, &objects, 32).await?;
        drop(objects);
        let applied = start.elapsed();
        world::wait_settled(self.client, &run, total, Duration::from_secs(3600)).await?;
        let settled = start.elapsed();
        report.add(
            format!("shards_{tag}_apply_s"),
            applied.as_secs_f64(),
            "s",
            None,
        );
        report.add(
            format!("shards_{tag}_settle_s"),
            settled.as_secs_f64(),
            "s",
            None,
        );
        self.cycle(&tag, &shards, &ctls, report).await?;
        for ctl in ctls {
            ctl.stop();
        }
        self.restart(&tag, &shards, report).await?;
        eprintln!("bench: shards {tag}: removing the objects and their cloud resources (untimed)");
        for s in &shards {
            world::drop_all(self.client, &s.ns).await?;
        }
        floor::delete_owned_in(self.ec2, &format!("{run}-")).await?;
        Ok(())
    }

    /// One full poll cycle per shard with everything settled: until each
    /// controller has reconciled as many objects as it has active ones.
    async fn cycle(
        &self,
        tag: &str,
        shards: &[Shard],
        ctls: &[Controller],
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let mut before = Vec::new();
        for ctl in ctls {
            before.push((ctl.reconciles().await?, ec2_calls(ctl).await?));
        }
        let start = Instant::now();
        let mut worst = Duration::ZERO;
        for ((s, ctl), (reconciles, calls)) in shards.iter().zip(ctls).zip(before) {
            wait_reconciles(ctl, reconciles as usize + s.active, POLL * 10).await?;
            let took = start.elapsed();
            worst = worst.max(took);
            let spent = ec2_calls(ctl).await? - calls;
            let mem = ctl.memory()?;
            let prefix = format!("shards_{tag}_{}", s.name);
            report.add(format!("{prefix}_rss_mib"), mib(mem.rss_kib), "MiB", None);
            report.add(format!("{prefix}_peak_mib"), mib(mem.peak_kib), "MiB", None);
            report.add(format!("{prefix}_anon_mib"), mib(mem.anon_kib), "MiB", None);
            // Anonymous pages only: the binary's own pages are the same for
            // any number of objects.
            let per_object = (mib(mem.anon_kib) - self.idle_anon_mib) * 1024.0 / s.objects as f64;
            report.add(format!("{prefix}_kib_per_object"), per_object, "KiB", None);
            report.add(format!("{prefix}_cycle_s"), took.as_secs_f64(), "s", None);
            let rate = s.active as f64 / took.as_secs_f64();
            report.add(format!("{prefix}_reconciles_per_s"), rate, "/s", None);
            let per_active = spent as f64 / s.active.max(1) as f64;
            report.add(
                format!("{prefix}_calls_per_active_poll"),
                per_active,
                "",
                None,
            );
        }
        report.add(
            format!("shards_{tag}_poll_cycle_s"),
            worst.as_secs_f64(),
            "s",
            None,
        );
        Ok(())
    }

    /// Every shard restarted at once: the time of its first pass over all
    /// its objects (paused too), and its peak RSS.
    async fn restart(
        &self,
        tag: &str,
        shards: &[Shard],
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let ctls = self.start(shards, "restart").await?;
        let start = Instant::now();
        for (s, ctl) in shards.iter().zip(&ctls) {
            wait_reconciles(ctl, s.objects, Duration::from_secs(1800))
                .await
                .with_context(|| format!("shard {}'s first pass", s.name))?;
            let prefix = format!("shards_{tag}_{}", s.name);
            let took = start.elapsed();
            report.add(
                format!("{prefix}_first_pass_s"),
                took.as_secs_f64(),
                "s",
                None,
            );
            let rate = s.objects as f64 / took.as_secs_f64();
            report.add(format!("{prefix}_first_pass_per_s"), rate, "/s", None);
            let peak = ctl.memory()?.peak_kib;
            report.add(format!("{prefix}_restart_peak_mib"), mib(peak), "MiB", None);
        }
        for ctl in ctls {
            ctl.stop();
        }
        Ok(())
    }
}
