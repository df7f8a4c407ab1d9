//! driftless' benchmark suite. One command:
//!
//!     bench/run
//!
//! runs every scenario against LocalStack and the local Kubernetes API
//! server (started here unless AWS_ENDPOINT_URL / KUBECONFIG point at
//! running ones) and prints each figure as it is measured, then a table and
//! the summary line that BENCHMARKS.md ends with. See BENCHMARKS.md.

mod controller;
mod cpu;
mod env;
mod floor;
mod git;
mod memory;
mod render;
mod shards;
mod world;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use controller::Controller;
use env::Env;

/// driftless' benchmark suite: converge time against a bare SDK floor,
/// cloud calls per resource per poll, memory with 10,000 objects, Git apply
/// and self-heal latency, and push-mode plan.
#[derive(Parser)]
struct Args {
    /// Converge sizes: managed objects applied at once (a quarter each of
    /// Buckets, Vpcs, Subnets, SecurityGroups). The last one also serves the
    /// steady-state count.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    sizes: Vec<usize>,
    /// The controller's poll interval while steady state is counted.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    poll: u64,
    /// Poll intervals the steady-state count spans.
    #[arg(long, default_value_t = 3)]
    steady_polls: u32,
    /// Managed objects in the cluster for the memory figures (paused, then
    /// active).
    #[arg(long, default_value_t = 10_000)]
    memory_objects: usize,
    /// Also restart the memory controllers this way over the same objects:
    /// `LABEL BINARY [NAME=VALUE ...]` (BINARY `-` is --driftless), e.g.
    /// `--variant 'arena2 - MALLOC_ARENA_MAX=2'`. Repeatable.
    #[arg(long)]
    variant: Vec<String>,
    /// Shard configurations of `--only shards`: K controllers x N objects
    /// each.
    #[arg(long, value_delimiter = ',', default_value = "2x5000,4x12500")]
    shard_configs: Vec<shards::Config>,
    /// In the shard scenario, one object group in this many is active (the
    /// rest paused).
    #[arg(long, default_value_t = 10)]
    shard_active_every: usize,
    /// Only remove what a run left in this namespace (its objects, without
    /// the controller, and their cloud resources), then exit.
    #[arg(long, value_name = "NAMESPACE")]
    cleanup: Option<String>,
    /// Leave the active memory objects and their cloud resources in place
    /// (for a heap profile by hand).
    #[arg(long)]
    keep: bool,
    /// ConfigMaps in the large Git commit.
    #[arg(long, default_value_t = 500)]
    git_objects: usize,
    /// Repetitions of the Git and self-heal timings (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Converge runs per size (the median is the figure; min and max shown).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run only these scenarios (converge includes steady state).
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "converge,push,git,render,memory"
    )]
    only: Vec<Scenario>,
    /// The driftless binary (default: `driftless` next to this binary, as
    /// `bench/run` builds it).
    #[arg(long)]
    driftless: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Converge,
    Push,
    Git,
    Render,
    /// Both memory cases: `memory-paused` and `memory-active`.
    Memory,
    MemoryPaused,
    MemoryActive,
    /// Not in the default set (long): K controllers with `--shard`.
    Shards,
}

/// One measured figure: name, value, unit and goal (if any).
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    goal: Option<(&'static str, f64)>,
}

#[derive(Default)]
struct Report {
    figures: Vec<Figure>,
}

impl Report {
    fn add(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        goal: Option<(&'static str, f64)>,
    ) {
        let f = Figure {
            name: name.into(),
            value,
            unit,
            goal,
        };
        println!("{}", f.line());
        self.figures.push(f);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

impl Figure {
    fn met(&self) -> Option<bool> {
        self.goal.map(|(op, g)| match op {
            "<=" => self.value <= g,
            _ => self.value >= g,
        })
    }

    fn line(&self) -> String {
        let goal = match (self.goal, self.met()) {
            (Some((op, g)), Some(met)) => {
                format!(
                    "  (goal {op} {}: {})",
                    fmt(g),
                    if met { "met" } else { "MISSED" }
                )
            }
            _ => String::new(),
        };
        format!(
            "{:<28} {:>10} {}{goal}",
            self.name,
            fmt(self.value),
            self.unit
        )
    }
}

fn fmt(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e9) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // On Ctrl-C the run is dropped, and with it what it started: the
    // controller and (if this run started them) LocalStack and the API server.
    let outcome = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = outcome {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = driftless_binary(args.driftless.clone())?;
    let env = Env::start()?;
    let client = env.kube_client().await?;
    let sdk = env.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let run_id = format!("bench-{:08x}", rand::random::<u32>());
    let work = std::env::temp_dir().join(&run_id);
    std::fs::create_dir_all(&work)?;
    eprintln!("bench: run {run_id}; logs and files in {}", work.display());
    world::install(&client, &env.aws_endpoint, &env.region).await?;
    if let Some(ns) = &args.cleanup {
        world::drop_all(&client, ns).await?;
        let gone = floor::delete_owned_in(&ec2, &format!("{ns}/")).await?;
        eprintln!("bench: removed the objects of {ns} and {gone} cloud resources");
        return Ok(());
    }
    let mut report = Report::default();
    print_machine();

    // Idle: a fresh controller with nothing to manage.
    let poll = Duration::from_secs(args.poll);
    let ctl = Controller::start(&binary, &env, poll, &work, "controller").await?;
    let procs = cpu::Processes::of_run(ctl.pid(), &env.kubeconfig, &env.aws_endpoint);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = ctl.memory()?;
    report.add("rss_idle_mib", idle.rss_kib as f64 / 1024.0, "MiB", None);
    report.add(
        "rss_idle_anon_mib",
        idle.anon_kib as f64 / 1024.0,
        "MiB",
        None,
    );

    // 1 + 2. Converge, against the floor; steady state on the last size.
    let mut ratios = Vec::new();
    let wants = |s: Scenario| args.only.contains(&s);
    let sizes: &[usize] = if wants(Scenario::Converge) {
        &args.sizes
    } else {
        &[]
    };
    for (i, &n) in sizes.iter().enumerate() {
        let last = i + 1 == args.sizes.len();
        let mut runs = Vec::new();
        let mut ns = String::new();
        let mut objects = Vec::new();
        for r in 1..=args.runs.max(1) {
            if r > 1 {
                world::delete_all(&client, &ns, Duration::from_secs(1800)).await?;
            }
            let run =
                converge_once(&client, &ec2, &s3, n, &format!("{run_id}-{r}"), &procs).await?;
            let cpu: Vec<String> = run
                .cpu
                .iter()
                .map(|(p, s)| format!("{p} {s:.2} s"))
                .collect();
            eprintln!(
                "bench:   run {r}: CPU from apply to Ready: {}",
                cpu.join(", ")
            );
            eprintln!(
                "bench:   run {r}: floor {:.2} s (with reads {:.2} s), apply {:.2} s, converge {:.2} s, ratio {:.2}",
                run.floor.as_secs_f64(),
                run.floor_reads.as_secs_f64(),
                run.apply.as_secs_f64(),
                run.converge.as_secs_f64(),
                run.ratio()
            );
            (ns, objects) = (run.ns.clone(), run.objects.clone());
            runs.push(run);
        }
        let figure = |f: &dyn Fn(&ConvergeRun) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (floor, _, _) = figure(&|r| r.floor.as_secs_f64());
        let (apply, _, _) = figure(&|r| r.apply.as_secs_f64());
        let (took, _, _) = figure(&|r| r.converge.as_secs_f64());
        let (ratio, low, high) = figure(&|r| r.ratio());
        let (floor_reads, _, _) = figure(&|r| r.floor_reads.as_secs_f64());
        let (ratio_reads, _, _) =
            figure(&|r| r.converge.as_secs_f64() / r.floor_reads.as_secs_f64());
        report.add(format!("floor_{n}_s"), floor, "s", None);
        report.add(format!("floor_reads_{n}_s"), floor_reads, "s", None);
        report.add(format!("apply_{n}_s"), apply, "s", None);
        report.add(format!("converge_{n}_s"), took, "s", None);
        report.add(format!("converge_ratio_{n}"), ratio, "", Some(("<=", 1.25)));
        report.add(format!("converge_ratio_{n}_min"), low, "", None);
        report.add(format!("converge_ratio_{n}_max"), high, "", None);
        report.add(format!("converge_ratio_reads_{n}"), ratio_reads, "", None);
        // The profile: CPU per process, the mean over the runs.
        for process in runs[0].cpu.keys() {
            let total: f64 = runs.iter().filter_map(|r| r.cpu.get(process)).sum();
            let mean = total / runs.len() as f64;
            report.add(format!("cpu_converge_{n}_{process}_s"), mean, "s", None);
        }
        ratios.push(ratio);

        if last {
            steady(
                &ctl,
                &client,
                &ns,
                objects.len(),
                poll,
                args.steady_polls,
                &mut report,
            )
            .await?;
        }
        eprintln!("bench: deleting the {n} objects");
        let took = world::delete_all(&client, &ns, Duration::from_secs(1800)).await?;
        report.add(format!("delete_{n}_s"), took.as_secs_f64(), "s", None);
    }
    if !ratios.is_empty() {
        // The worst size is the headline.
        let worst = ratios.iter().copied().fold(0.0, f64::max);
        report.add("converge_ratio", worst, "", Some(("<=", 1.25)));
    }

    // 5. Push mode: apply the mix once, then time `plan` over it.
    if let (true, Some(&n)) = (wants(Scenario::Push), args.sizes.last()) {
        push_mode(&binary, &env, &work, &run_id, n, &mut report).await?;
    }

    // 4. Git: commit to applied, and self-heal.
    if wants(Scenario::Git) {
        git_loop(&client, &env.kubeconfig, &work, &run_id, &args, &mut report).await?;
    }
    // 6. Render: driftless build against the bare tools; a kustomize GitSync.
    if wants(Scenario::Render) {
        render_figures(&binary, &client, &work, &run_id, &args, &mut report).await?;
    }
    ctl.stop();

    // 3. Memory: a fresh controller, then many objects.
    let (paused, active) = (
        wants(Scenario::Memory) || wants(Scenario::MemoryPaused),
        wants(Scenario::Memory) || wants(Scenario::MemoryActive),
    );
    if paused || active {
        let mut variants = vec![memory::Variant::parse("default -", &binary)?];
        for v in &args.variant {
            variants.push(memory::Variant::parse(v, &binary)?);
        }
        let scene = memory::Scene {
            env: &env,
            client: &client,
            ec2: &ec2,
            work: &work,
            run_id: &run_id,
            n: args.memory_objects,
            variants,
            keep: args.keep,
        };
        if paused {
            scene.paused(&mut report).await?;
        }
        if active {
            scene.active(&mut report).await?;
        }
    }

    // 6. Scale-out: K controllers with --shard.
    if wants(Scenario::Shards) {
        let scene = shards::Scene {
            binary: &binary,
            env: &env,
            client: &client,
            ec2: &ec2,
            work: &work,
            run_id: &run_id,
            active_every: args.shard_active_every,
            idle_anon_mib: report.get("rss_idle_anon_mib").unwrap_or(0.0),
        };
        for &config in &args.shard_configs {
            scene.run(config, &mut report).await?;
        }
    }

    print_summary(&report);
    if !env.owns_cluster() {
        eprintln!("bench: the objects stay in namespaces {run_id}-* of your cluster; delete them with kubectl delete ns");
    }
    Ok(())
}

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!(
        "machine: {cpus} CPUs ({model}), {} GiB memory",
        mem / 1024 / 1024
    );
}

/// Cloud calls per managed resource per poll, with nothing drifting.
async fn steady(
    ctl: &Controller,
    client: &kube::Client,
    ns: &str,
    n: usize,
    poll: Duration,
    polls: u32,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Let the creation round settle: each object's first idle poll is due
    // one interval after it became Ready.
    eprintln!("bench: steady state, {n} objects, {polls} polls of {poll:?}");
    tokio::time::sleep(poll + poll / 5).await;
    let before = ctl.calls_by_service().await?;
    let window = poll * polls;
    tokio::time::sleep(window).await;
    let after = ctl.calls_by_service().await?;
    let (ready, total) = world::count_ready(client, ns).await?;
    if ready != total {
        bail!("steady state: only {ready} of {total} objects Ready");
    }
    let delta = |svc: &str| after.get(svc).unwrap_or(&0) - before.get(svc).unwrap_or(&0);
    let per_kind = n / 4;
    let ec2_resources = (per_kind * 3) as f64;
    let polls = f64::from(polls);
    report.add("steady_ec2_calls", delta("ec2") as f64, "calls", None);
    report.add(
        "calls_per_resource_poll",
        delta("ec2") as f64 / ec2_resources / polls,
        "(EC2 kinds)",
        Some(("<=", 0.02)),
    );
    report.add("steady_s3_calls", delta("s3") as f64, "calls", None);
    report.add(
        "s3_calls_per_bucket_poll",
        delta("s3") as f64 / per_kind as f64 / polls,
        "(S3)",
        Some(("<=", 1.0)),
    );
    Ok(())
}

async fn push_mode(
    binary: &Path,
    env: &Env,
    work: &Path,
    run_id: &str,
    n: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = work.join("push");
    std::fs::create_dir_all(&dir)?;
    for (i, o) in world::mix(n, "default", &format!("{run_id}-push"), false)
        .iter()
        .enumerate()
    {
        // JSON is YAML: one object per file.
        std::fs::write(
            dir.join(format!("{i:04}.yaml")),
            serde_json::to_string_pretty(o)?,
        )?;
    }
    let stack = format!("{run_id}-push");
    let push = |verb: &str| {
        let mut c = Command::new(binary);
        c.args([verb, "--stack", &stack])
            .arg(&dir)
            .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
            .env("AWS_REGION", &env.region)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        c
    };
    eprintln!("bench: push mode, driftless apply of {n} objects");
    let start = Instant::now();
    let out = push("apply").output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "driftless apply failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    report.add(format!("push_apply_{n}_s"), took.as_secs_f64(), "s", None);
    eprintln!("bench: push mode, driftless plan over {n} existing resources");
    let start = Instant::now();
    let out = push("plan").output()?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "driftless plan exited {} (expected 0: nothing to change):\n{text}",
            out.status
        );
    }
    report.add(format!("plan_{n}_s"), took.as_secs_f64(), "s", None);
    let calls = cloud_calls_of(&text).context("plan printed no cloud API call count")?;
    report.add(format!("plan_{n}_calls"), calls as f64, "calls", None);
    Ok(())
}

/// The `N cloud API calls` that `driftless plan` and `apply` print last.
fn cloud_calls_of(output: &str) -> Option<u64> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.contains("cloud API calls"))?;
    let before = line.split(" cloud API calls").next()?;
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Objects in the rendered overlay and chart.
const RENDER_OBJECTS: usize = 30;

async fn render_figures(
    binary: &Path,
    client: &kube::Client,
    work: &Path,
    run_id: &str,
    args: &Args,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (kustomize, helm) = (render::tool("kustomize")?, render::tool("helm")?);
    let runs = args.repeat * 4;
    let n = RENDER_OBJECTS;
    let dir = work.join("render");
    let overlay = render::overlay(&dir, "bench", n, "v0")?;
    let overlay_arg = overlay.to_str().context("a UTF-8 path")?;
    eprintln!("bench: render, a {n}-object overlay and chart, {runs} runs each");
    let chart = render::chart(&dir.join("charts"), n)?;
    let chart_arg = chart.to_str().context("a UTF-8 path")?;
    let msec = |d: Duration| d.as_secs_f64() * 1000.0;
    let cases = [
        (
            "kustomize",
            &kustomize,
            vec!["build", overlay_arg],
            overlay_arg,
            "prod",
        ),
        (
            "helm",
            &helm,
            vec!["template", "web", chart_arg],
            chart_arg,
            "charts/web",
        ),
    ];
    for (tool, program, bare_args, target, path) in cases {
        let bare = render::median_run(program, &bare_args, &dir, runs)?;
        // What a GitSync pays: the render step in the controller's process.
        let ours = render::median_in_process(&dir, path, runs).await?;
        // What a user waits for: the whole `driftless build` process.
        let cli = render::median_run(binary, &["build", target], &dir, runs)?;
        report.add(format!("{tool}_bare_ms"), msec(bare), "ms", None);
        report.add(format!("render_{tool}_ms"), msec(ours), "ms", None);
        let ratio = ours.as_secs_f64() / bare.as_secs_f64();
        report.add(
            format!("render_{tool}_ratio"),
            ratio,
            "",
            Some(("<=", 1.10)),
        );
        report.add(format!("build_{tool}_cli_ms"), msec(cli), "ms", None);
    }

    // Commit -> applied, for a GitSync whose path is the overlay.
    let ns = format!("{run_id}-kustomize");
    world::create_namespace(client, &ns).await?;
    let repo = git::Repo::init(&work.join("kustomize-repo"))?;
    let commit = |value: &str| -> anyhow::Result<()> {
        let tree = work.join("kustomize-tree");
        let _ = std::fs::remove_dir_all(&tree);
        render::overlay(&tree, &ns, n, value)?;
        let mut files = Vec::new();
        for sub in ["base", "prod"] {
            for e in std::fs::read_dir(tree.join(sub))? {
                let e = e?;
                let name = format!("{sub}/{}", e.file_name().to_string_lossy());
                files.push((name, std::fs::read_to_string(e.path())?));
            }
        }
        repo.commit(&files, &format!("value {value}"))
    };
    commit("k0")?;
    git::create_gitsync(client, &ns, &repo.url(), "prod").await?;
    let configmaps = n - 1 - (n - 1).div_ceil(3);
    git::wait_values(
        client,
        &ns,
        "k0",
        configmaps,
        Instant::now(),
        Duration::from_secs(120),
    )
    .await?;
    let mut times = Vec::new();
    for r in 1..=args.repeat {
        let value = format!("k{r}");
        commit(&value)?;
        let since = Instant::now();
        git::trigger(client, &ns).await?;
        times.push(
            git::wait_values(
                client,
                &ns,
                &value,
                configmaps,
                since,
                Duration::from_secs(120),
            )
            .await?,
        );
    }
    report.add(
        "git_apply_kustomize_ms",
        ms(median(times)),
        "ms",
        Some(("<=", 1000.0)),
    );
    Ok(())
}

/// One converge run of `n` objects and its floor.
struct ConvergeRun {
    /// The creates only (what the goal is measured against).
    floor: Duration,
    /// The creates plus one read of each new resource.
    floor_reads: Duration,
    /// CPU seconds per process from the apply to all Ready.
    cpu: std::collections::BTreeMap<&'static str, f64>,
    /// Server-side apply of the objects (not part of converge).
    apply: Duration,
    /// From every object existing in the cluster to every one Ready.
    converge: Duration,
    ns: String,
    objects: Vec<serde_json::Value>,
}

impl ConvergeRun {
    fn ratio(&self) -> f64 {
        self.converge.as_secs_f64() / self.floor.as_secs_f64()
    }
}

/// The floor (the same creates from a bare SDK loop), then the mix applied
/// and timed from the moment it exists until a watch sees all of it Ready.
async fn converge_once(
    client: &kube::Client,
    ec2: &aws_sdk_ec2::Client,
    s3: &aws_sdk_s3::Client,
    n: usize,
    run: &str,
    procs: &cpu::Processes,
) -> anyhow::Result<ConvergeRun> {
    eprintln!("bench: floor, {n} creates");
    let (floor, made) = floor::run(ec2, s3, n, run, false).await?;
    made.delete(ec2, s3).await?;
    eprintln!("bench: floor, {n} creates plus a read of each");
    let (floor_reads, made) = floor::run(ec2, s3, n, &format!("{run}r"), true).await?;
    made.delete(ec2, s3).await?;
    eprintln!("bench: converge, {n} objects");
    let ns = format!("{run}-converge-{n}");
    world::create_namespace(client, &ns).await?;
    let objects = world::mix(n, &ns, &format!("{run}-{n}"), false);
    let start = Instant::now();
    let before = procs.sample();
    world::apply_all(client, &objects, 32).await?;
    let apply = start.elapsed();
    let converge =
        world::wait_ready_watched(client, &ns, objects.len(), Duration::from_secs(1800)).await?;
    let cpu = cpu::spent(&before, &procs.sample());
    Ok(ConvergeRun {
        floor,
        floor_reads,
        apply,
        cpu,
        converge,
        ns,
        objects,
    })
}

async fn git_loop(
    client: &kube::Client,
    kubeconfig: &Path,
    work: &Path,
    run_id: &str,
    args: &Args,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ns = format!("{run_id}-git");
    world::create_namespace(client, &ns).await?;
    let repo = git::Repo::init(&work.join("repo"))?;
    repo.commit(
        &[("apps/one.yaml".into(), git::config_map(&ns, "one", "v0"))],
        "one object",
    )?;
    git::create_gitsync(client, &ns, &repo.url(), "").await?;
    git::wait_values(
        client,
        &ns,
        "v0",
        1,
        Instant::now(),
        Duration::from_secs(60),
    )
    .await?;

    eprintln!("bench: git, commit of 1 object, {} times", args.repeat);
    let mut one = Vec::new();
    for r in 1..=args.repeat {
        let value = format!("v{r}");
        repo.commit(
            &[("apps/one.yaml".into(), git::config_map(&ns, "one", &value))],
            "change one",
        )?;
        let since = Instant::now();
        git::trigger(client, &ns).await?;
        one.push(git::wait_values(client, &ns, &value, 1, since, Duration::from_secs(60)).await?);
    }
    report.add("git_apply_ms", ms(median(one)), "ms", Some(("<=", 1000.0)));

    let n = args.git_objects;
    eprintln!("bench: git, commit of {n} objects");
    let files: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("apps/many-{i:04}.yaml"),
                git::config_map(&ns, &format!("many-{i}"), "bulk"),
            )
        })
        .collect();
    repo.commit(&files, "many objects")?;
    let since = Instant::now();
    git::trigger(client, &ns).await?;
    let took = git::wait_values(client, &ns, "bulk", n, since, Duration::from_secs(600)).await?;
    report.add(format!("git_apply_{n}_ms"), ms(took), "ms", None);
    let kubectl = kubectl_apply(client, kubeconfig, work, &format!("{run_id}-kubectl"), n).await?;
    report.add(format!("kubectl_apply_{n}_ms"), ms(kubectl), "ms", None);
    report.add(
        format!("git_apply_{n}_vs_kubectl"),
        took.as_secs_f64() / kubectl.as_secs_f64(),
        "",
        Some(("<=", 1.0)),
    );

    eprintln!("bench: self-heal, {} times", args.repeat);
    let last = format!("v{}", args.repeat);
    let mut heals = Vec::new();
    for _ in 0..args.repeat {
        heals.push(git::self_heal(client, &ns, "one", &last).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.add(
        "self_heal_ms",
        ms(median(heals)),
        "ms",
        Some(("<=", 5000.0)),
    );
    Ok(())
}

/// What a user would otherwise run: `kubectl apply --server-side` of the
/// same `n` ConfigMaps (in a namespace of their own), timed the same way
/// (until a LIST shows them all).
async fn kubectl_apply(
    client: &kube::Client,
    kubeconfig: &Path,
    work: &Path,
    ns: &str,
    n: usize,
) -> anyhow::Result<Duration> {
    world::create_namespace(client, ns).await?;
    let dir = work.join("kubectl");
    std::fs::create_dir_all(&dir)?;
    for i in 0..n {
        let cm = git::config_map(ns, &format!("many-{i}"), "bulk");
        std::fs::write(dir.join(format!("many-{i:04}.yaml")), cm)?;
    }
    eprintln!("bench: kubectl apply --server-side of {n} objects");
    let since = Instant::now();
    let status = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--server-side", "-f"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "kubectl apply --server-side failed");
    git::wait_values(client, ns, "bulk", n, since, Duration::from_secs(600)).await
}

fn print_summary(report: &Report) {
    println!();
    println!("| figure | value | goal |");
    println!("|---|---|---|");
    for f in &report.figures {
        let goal = match (f.goal, f.met()) {
            (Some((op, g)), Some(met)) => {
                format!("{op} {} ({})", fmt(g), if met { "met" } else { "missed" })
            }
            _ => String::new(),
        };
        println!("| {} | {} {} | {goal} |", f.name, fmt(f.value), f.unit);
    }
    println!();
    let v = |name: &str| report.get(name).map_or("n/a".to_string(), fmt);
    println!(
        "bench: converge_ratio={} calls_per_resource_poll={} rss_mib_10k={} git_apply_ms={} self_heal_ms={} s3_calls_per_bucket_poll={} rss_mib_10k_active={} git_apply_500_ms={} git_apply_500_vs_kubectl={}",
        v("converge_ratio"),
        v("calls_per_resource_poll"),
        v("rss_mib_10k"),
        v("git_apply_ms"),
        v("self_heal_ms"),
        v("s3_calls_per_bucket_poll"),
        v("rss_mib_10k_active"),
        v("git_apply_500_ms"),
        v("git_apply_500_vs_kubectl"),
    );
}

/// The driftless binary to measure: `--driftless`, else the one next to
/// this suite's own binary (what `bench/run` builds, in one cargo
/// invocation with the suite).
fn driftless_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("no directory for the bench binary")?
        .join("driftless");
    if !path.exists() {
        bail!(
            "{} is missing: run the suite with bench/run (it builds both), or pass --driftless",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_call_count_that_plan_prints() {
        let out = "stack s: 2 objects\n  = Bucket a/b: up to date\nplan: 0 to create, 0 to update, 0 to delete, 2 unchanged, 0 errors (7 cloud API calls)\n";
        assert_eq!(cloud_calls_of(out), Some(7));
        assert_eq!(cloud_calls_of("plan: nothing"), None);
    }

    #[test]
    fn the_mix_is_a_quarter_of_each_kind_with_references() {
        let objects = world::mix(8, "ns", "run", false);
        assert_eq!(objects.len(), 8);
        for kind in world::KINDS {
            assert_eq!(objects.iter().filter(|o| o["kind"] == kind).count(), 2);
        }
        let subnet = objects.iter().find(|o| o["kind"] == "Subnet").unwrap();
        assert_eq!(subnet["spec"]["forProvider"]["vpcRef"]["name"], "vpc-0");
        let paused = world::mix(4, "ns", "run", true);
        assert!(paused
            .iter()
            .all(|o| o["metadata"]["annotations"]["driftless.dev/paused"] == "true"));
    }
}
