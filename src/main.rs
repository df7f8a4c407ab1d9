use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use driftless::{crds, settings::parse_duration, Settings};
use driftless_provider::CallCounter;

/// driftless: GitOps for infrastructure and apps in one loop.
///
/// Cloud resources (S3 buckets, EC2 VPCs, ...) are Kubernetes custom
/// resources; the controller reconciles them against the cloud, corrects
/// drift and reports the truth in `status`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "DRIFTLESS_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster of the current kubeconfig
    /// (in a pod: its service account).
    ///
    /// The AWS endpoint comes from each ProviderConfig, or from
    /// AWS_ENDPOINT_URL (e.g. http://127.0.0.1:4566 for LocalStack).
    Controller {
        /// How often idle resources are observed to correct drift (jittered ±10%).
        #[arg(long, env = "DRIFTLESS_POLL_INTERVAL", default_value = "1m", value_parser = parse_duration)]
        poll_interval: std::time::Duration,
        /// Reconciles running at once, per kind.
        #[arg(long, env = "DRIFTLESS_CONCURRENCY", default_value_t = 8)]
        concurrency: u16,
        /// Retry delay for errors that retrying cannot fix (a spec change retries at once).
        #[arg(long, env = "DRIFTLESS_TERMINAL_BACKOFF", default_value = "10m", value_parser = parse_duration)]
        terminal_backoff: std::time::Duration,
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "DRIFTLESS_NAMESPACE")]
        namespace: Option<String>,
        /// Where GitSync keeps its bare clones (default: $XDG_CACHE_HOME/driftless/git
        /// or ~/.cache/driftless/git).
        #[arg(long, env = "DRIFTLESS_GIT_CACHE")]
        git_cache: Option<PathBuf>,
        /// Wait for Deployments to be Available before a GitSync is Ready
        /// (`=false` for API servers that run no workload controllers).
        #[arg(long, env = "DRIFTLESS_HEALTH_CHECK_WORKLOADS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        health_check_workloads: bool,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftless: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Controller {
            poll_interval,
            concurrency,
            terminal_backoff,
            namespace,
            git_cache,
            health_check_workloads,
        } => {
            let client = kube::Client::try_default().await.map_err(|e| {
                anyhow::anyhow!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}")
            })?;
            let settings = Settings {
                poll_interval,
                concurrency,
                terminal_backoff,
                namespace,
                git_cache: git_cache.unwrap_or_else(driftless::settings::default_git_cache),
                health_check_workloads,
            };
            driftless::controller::run(client, settings, Arc::new(CallCounter::default())).await;
            Ok(())
        }
        Command::Crds { out } => {
            let all = crds::all();
            match out {
                None => {
                    for crd in &all {
                        print!("{}", crds::to_yaml(crd));
                    }
                }
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                    for crd in &all {
                        let path = dir.join(crds::file_name(crd));
                        std::fs::write(&path, crds::to_yaml(crd))
                            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                        eprintln!("wrote {}", path.display());
                    }
                }
            }
            Ok(())
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTLESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,aws=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
