// The global allocator is chosen at build time (README, Memory allocator):
// jemalloc (the default feature), mimalloc, or with neither glibc's malloc.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use driftless::cli::controller::ManagerConfig;
use driftless::cli::{commands, crds, keys};
use driftless::ops::leader::LeaseConfig;
use driftless::ops::notify::Notifier;
use driftless::ops::settings::parse_duration;
use driftless::ops::Shared;
use driftless::push::Options;
use driftless::render::{HelmOptions, Local, Tool, Tools};
use driftless::Settings;
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
    #[command(flatten)]
    limits: LimitsArgs,
    #[command(flatten)]
    cloud: CloudArgs,
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
        /// Longest one reconcile of a managed resource may run (its cloud
        /// calls included); past it, the pass is dropped and retried.
        #[arg(long, env = "DRIFTLESS_RECONCILE_TIMEOUT", default_value = "3m", value_parser = parse_duration)]
        reconcile_timeout: std::time::Duration,
        /// Delete a duplicate cloud resource when it is proven to be this
        /// object's own: made by the same create call (the same create
        /// token; an answer lost, the call retried). Off: duplicates are
        /// only reported (status.duplicates, DuplicatesFound Events).
        #[arg(long, env = "DRIFTLESS_DELETE_PROVEN_DUPLICATES")]
        delete_proven_duplicates: bool,
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "DRIFTLESS_NAMESPACE")]
        namespace: Option<String>,
        /// Reconcile only managed resources and GitSyncs labelled
        /// `driftless.dev/shard=SHARD`, with a Lease of this shard's own
        /// (`driftless-controller-SHARD`). Without it: only those without
        /// that label. Run one controller per shard, plus one without.
        #[arg(long, env = "DRIFTLESS_SHARD", value_parser = driftless::ops::settings::parse_shard)]
        shard: Option<String>,
        /// Where GitSync keeps its bare clones (default: $XDG_CACHE_HOME/driftless/git
        /// or ~/.cache/driftless/git).
        #[arg(long, env = "DRIFTLESS_GIT_CACHE")]
        git_cache: Option<PathBuf>,
        /// Wait for Deployments to be Available before a GitSync is Ready
        /// (`=false` for API servers that run no workload controllers).
        #[arg(long, env = "DRIFTLESS_HEALTH_CHECK_WORKLOADS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        health_check_workloads: bool,
        /// Lock-down mode: a GitSync without spec.serviceAccountName acts as
        /// this ServiceAccount of its own namespace (impersonated), never as
        /// the controller.
        #[arg(long, env = "DRIFTLESS_DEFAULT_SERVICE_ACCOUNT", value_name = "NAME")]
        default_service_account: Option<String>,
        /// Let GitSyncs fetch file:// URLs (they read the controller's own
        /// disk: for tests and laptops).
        #[arg(long, env = "DRIFTLESS_ALLOW_FILE_URLS")]
        allow_file_urls: bool,
        /// Fetch only URLs starting with one of these (repeatable, or
        /// comma-separated), e.g. https://github.com/acme/.
        #[arg(
            long,
            env = "DRIFTLESS_ALLOWED_SOURCE_PREFIX",
            value_delimiter = ',',
            value_name = "PREFIX"
        )]
        allowed_source_prefix: Vec<String>,
        #[command(flatten)]
        ops: Box<OpsArgs>,
        #[command(flatten)]
        render: RenderArgs,
    },
    /// Check manifests offline: YAML syntax, apiVersion/kind/name, the schema
    /// and CEL rules of driftless kinds, and that references resolve within
    /// the given files. No cluster, no cloud. Exit 1 on any error.
    ///
    /// PATHs are files or directories (every .yaml/.yml below, recursively).
    /// A directory holding a kustomization.yaml is rendered with kustomize,
    /// one holding Chart.yaml with helm, and its output checked.
    Validate {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        render: LocalArgs,
    },
    /// Print the objects PATHs stand for as YAML, rendered as GitSync and
    /// push mode see them (like `kustomize build` or `helm template`).
    /// No cluster, no cloud.
    Build {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        render: LocalArgs,
    },
    /// Show what merging PATH would change: in the cluster, object by
    /// object, and in the cloud, field by field. Nothing is changed.
    ///
    /// PATH is rendered as a GitSync renders it (kustomize, helm or plain
    /// YAML; SOPS-encrypted objects decrypted with SOPS_AGE_KEY or
    /// SOPS_AGE_KEY_FILE, as for `validate`), validated, and each object is
    /// sent to the cluster of the current kubeconfig as a server-side apply
    /// with dryRun=All (field manager `driftless`, forced, as the GitSync
    /// applies). A unified diff per object compares the live object with
    /// the dry-run result; managedFields, resourceVersion, generation, uid,
    /// creationTimestamp and status are left out, and a Secret's values are
    /// shown as `***` (`*** (before)` / `*** (after)` where a key changed).
    ///
    /// With --gitsync, objects get that GitSync's namespace, targetNamespace
    /// and owner labels, and the objects of its status.inventory that PATH
    /// no longer has are listed as what prune would delete (when its
    /// spec.prune is true); with --gitsync and no PATH, that GitSync's next
    /// revision is fetched from its repository and compared. Without
    /// --gitsync, objects go to -n (or the
    /// kubeconfig's namespace), keep the owner labels they have live, and
    /// there is no prune list.
    ///
    /// The cloud plan: for every managed resource (Bucket, Vpc, ...) the
    /// change creates, changes or prunes, what the controller would then do
    /// in the cloud, read from the cloud's current state through the
    /// object's ProviderConfig in the cluster (and its credentials Secret):
    /// `+` create, `~` update (each field: have -> want), `-` delete, `=`
    /// nothing. Read-only: only Get/Head/List/Describe calls.
    ///
    /// Exit 0 when there is no difference, 1 when there are differences, 2
    /// on an error (a broken manifest is named by file:line).
    #[command(after_long_help = DIFF_EXAMPLE)]
    Diff {
        /// Manifest files or directories, as for `validate`. None with
        /// --gitsync: the revision the GitSync follows now, fetched from its
        /// repository (what it applies next, e.g. while suspended).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The GitSync that applies PATH: NAMESPACE/NAME, or NAME with -n.
        #[arg(long, value_name = "[NAMESPACE/]NAME")]
        gitsync: Option<String>,
        /// The namespace of --gitsync NAME; without --gitsync, where
        /// objects that name no namespace go (default: the kubeconfig's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// `text`, or `markdown` for a pull-request comment (a collapsible
        /// section per object).
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: driftless::cli::diff::Format,
        #[command(flatten)]
        render: LocalArgs,
    },
    /// Show a GitSync or a managed resource and everything under it, with
    /// health, as the cluster of the current kubeconfig has it now.
    ///
    /// `gitsync/NAME`: the GitSync (Ready, revision, message), then its
    /// objects (status.inventory) by the stage they are applied in. Every
    /// managed resource shows Ready and Synced, its external name, its cloud
    /// state (status.atProvider.state) and the message of a failing
    /// condition; the objects its references point at are its children
    /// (Instance -> subnetId: Subnet -> vpcId: Vpc). `KIND/NAME` (e.g.
    /// `instance/web-1`, `vpc/main`): that managed resource and its
    /// references. A GitSync with spec.kubeConfig is shown with its objects
    /// in that other cluster.
    ///
    /// Exit 0 when everything shown is healthy, 1 when anything is not, 2
    /// on an error. Read-only.
    #[command(after_long_help = TREE_EXAMPLE)]
    Tree {
        /// `gitsync/NAME`, or a managed resource as `KIND/NAME`.
        #[arg(value_name = "TARGET")]
        target: String,
        /// Its namespace (default: the kubeconfig's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// `text` (a tree), or `json` (the same tree as one JSON document).
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: driftless::cli::tree::Format,
        /// Keep running: read the tree again every --interval and redraw it
        /// when anything changed (Ctrl-C stops).
        #[arg(short = 'w', long)]
        watch: bool,
        /// How often --watch reads the tree.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// Show what `apply` would change in the cloud, field by field, without
    /// changing anything. No cluster needed.
    ///
    /// The cloud comes from the AWS environment (AWS_REGION, AWS_ENDPOINT_URL,
    /// credentials from the SDK's default chain). Exit 0 when nothing would
    /// change, 2 when changes are pending, 1 on error.
    Plan {
        #[command(flatten)]
        push: PushArgs,
        /// Also show the stack's resources that PATH no longer declares.
        #[arg(long)]
        prune: bool,
    },
    /// Make the cloud match the manifests under PATH, without a cluster:
    /// references first, independent resources in parallel, each waited for
    /// until ready. Running it again changes nothing.
    ///
    /// Every resource is tagged with the stack and its object; those tags are
    /// the only state (no state file). Exit 1 if anything failed.
    Apply {
        #[command(flatten)]
        push: PushArgs,
        /// Delete the stack's resources that PATH no longer declares (those
        /// applied with `deletionPolicy: Orphan` are left in place). Skipped
        /// when anything else failed.
        #[arg(long)]
        prune: bool,
    },
    /// List a stack's resources as the cloud has them (found by tags).
    Get {
        /// The stack name given to `apply`.
        #[arg(long, env = "DRIFTLESS_STACK")]
        stack: String,
    },
    /// age keys for SOPS, made in the cluster: the private key goes straight
    /// into a Secret (for `spec.decryption`), only the public recipient is
    /// printed (for `sops --encrypt --age` and `.sops.yaml`).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Install driftless into the cluster of the current kubeconfig and
    /// make it manage its own installation from Git (like `flux bootstrap`).
    ///
    /// 1. Writes PATH/driftless-system/install.yaml (what `kubectl apply -k
    ///    deploy/` installs: the CRDs, the namespace, RBAC, the controller's
    ///    Deployment and Service, embedded in this binary) and gitsync.yaml
    ///    (GitSync --gitsync, which applies PATH of --url at --branch, and
    ///    the ServiceAccount it acts as) into the checkout. A file there with
    ///    other content is refused, naming it, unless --force.
    ///
    /// 2. Applies those objects as that GitSync will (server-side apply with
    ///    its field manager `driftless` and owner labels, dry-run first), one
    ///    line per object: created, configured or unchanged.
    ///
    /// 3. Prints the git commands that publish the files: once pushed, the
    ///    GitSync applies PATH, driftless' own install and itself included;
    ///    upgrading driftless is then a commit to install.yaml.
    ///
    /// Running it again changes nothing (every object unchanged, no file
    /// written). Every object it writes is annotated `driftless.dev/prune:
    /// disabled`: deleting the GitSync leaves driftless installed.
    #[command(after_long_help = BOOTSTRAP_EXAMPLE)]
    Bootstrap(driftless::cli::bootstrap::Args),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make an age identity in Secret NAME (key NAME.agekey) and print its
    /// recipient. An existing Secret is never overwritten.
    Create {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        name: String,
    },
    /// Print the recipient of each age identity in Secret NAME.
    Public {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        name: String,
    },
}

/// How the controller process runs: endpoints, leader election, notifications.
#[derive(clap::Args)]
struct OpsArgs {
    /// Where /healthz, /readyz, /metrics and the Git webhooks
    /// (POST /hooks/<namespace>/<gitsync>) are served.
    #[arg(long, env = "DRIFTLESS_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Serve /metrics here instead, and only here (not on --http-addr).
    #[arg(long, env = "DRIFTLESS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Elect a leader through a Lease so that only one replica acts
    /// (default: on in a pod or when --leader-election-namespace is given,
    /// off outside a cluster).
    #[arg(long, env = "DRIFTLESS_LEADER_ELECT", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// Namespace of the Lease (default: the pod's namespace, POD_NAMESPACE, else driftless-system).
    #[arg(long, env = "DRIFTLESS_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// A leader that has not renewed the Lease for this long is replaced.
    #[arg(long, env = "DRIFTLESS_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: std::time::Duration,
    /// After SIGTERM, how long reconciles in flight may finish before the
    /// process releases its Lease and exits (keep it under the pod's
    /// terminationGracePeriodSeconds, 30 s by default).
    #[arg(long, env = "DRIFTLESS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// Send notifications to the provider this Secret describes (keys
    /// `provider`: generic, generic-hmac, slack, github, gitlab; `url`,
    /// `token`, `key`, ...: see README "Notifications"). Repeatable, or
    /// comma-separated: one provider per Secret.
    #[arg(
        long,
        env = "DRIFTLESS_NOTIFICATION_SECRET",
        value_name = "NAMESPACE/NAME",
        value_delimiter = ','
    )]
    notification_secret: Vec<String>,
    /// Serve the web dashboard here (off by default; keep it on loopback and
    /// reach it with `kubectl port-forward`). Read-only unless --ui-actions.
    #[arg(long, env = "DRIFTLESS_UI_ADDR")]
    ui_addr: Option<std::net::SocketAddr>,
    /// Offer "sync now" and suspend/resume on the dashboard, to requests
    /// carrying the token of --ui-token-file (or DRIFTLESS_UI_TOKEN).
    #[arg(long, env = "DRIFTLESS_UI_ACTIONS", requires = "ui_addr")]
    ui_actions: bool,
    /// A file holding the dashboard's action token (at least 16 characters).
    #[arg(long, env = "DRIFTLESS_UI_TOKEN_FILE", requires = "ui_actions")]
    ui_token_file: Option<PathBuf>,
}

/// How long one cloud call may take (the controller and push mode alike).
#[derive(clap::Args)]
struct CloudArgs {
    /// Longest one attempt of a cloud call may wait for its answer.
    #[arg(long, global = true, env = "DRIFTLESS_CLOUD_ATTEMPT_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    cloud_attempt_timeout: std::time::Duration,
    /// Longest one cloud call may take, its retries included.
    #[arg(long, global = true, env = "DRIFTLESS_CLOUD_OPERATION_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    cloud_operation_timeout: std::time::Duration,
}

impl CloudArgs {
    fn apply(&self) {
        driftless_aws::config::set_call_timeouts(driftless_aws::config::CallTimeouts {
            attempt: self.cloud_attempt_timeout,
            operation: self.cloud_operation_timeout.max(self.cloud_attempt_timeout),
        });
    }
}

/// Limits on what one revision (or one `validate` run) may hold; past one,
/// it is refused with the file:line and nothing is applied.
#[derive(clap::Args)]
struct LimitsArgs {
    /// Largest manifest file (e.g. 8MiB).
    #[arg(long, global = true, env = "DRIFTLESS_MAX_FILE_SIZE", default_value = "8MiB", value_parser = parse_size)]
    max_file_size: u64,
    /// Largest total of a revision's manifests.
    #[arg(long, global = true, env = "DRIFTLESS_MAX_REVISION_SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_revision_size: u64,
    /// Most files in one revision (its checkout; raise it for a large
    /// monorepo rendered with kustomize, which checks out everything).
    #[arg(
        long,
        global = true,
        env = "DRIFTLESS_MAX_FILES",
        default_value_t = 10_000
    )]
    max_files: usize,
    /// Most objects in one revision.
    #[arg(
        long,
        global = true,
        env = "DRIFTLESS_MAX_OBJECTS",
        default_value_t = 10_000
    )]
    max_objects: usize,
    /// Deepest YAML nesting.
    #[arg(
        long,
        global = true,
        env = "DRIFTLESS_MAX_YAML_DEPTH",
        default_value_t = 100
    )]
    max_yaml_depth: usize,
    /// Most nodes YAML aliases may expand to, per revision (the bomb guard).
    #[arg(
        long,
        global = true,
        env = "DRIFTLESS_MAX_ALIAS_EXPANSION",
        default_value_t = 100_000
    )]
    max_alias_expansion: usize,
}

fn parse_size(s: &str) -> Result<u64, String> {
    driftless::manifests::limits::parse_size(s)
}

impl LimitsArgs {
    fn apply(&self) {
        let mut l = driftless::manifests::limits::get();
        l.max_file_size = self.max_file_size;
        l.max_revision_size = self.max_revision_size;
        l.max_files = self.max_files;
        l.max_objects = self.max_objects;
        l.max_yaml_depth = self.max_yaml_depth;
        l.max_alias_expansion = self.max_alias_expansion;
        driftless::manifests::limits::set(l);
    }
}

/// How kustomizations and charts are rendered (the controller, and every
/// command that reads a PATH).
#[derive(clap::Args)]
struct RenderArgs {
    /// The kustomize binary for directories holding a kustomization.yaml
    /// (tested with 5.8.1; tools/fetch gets it).
    #[arg(long, env = "DRIFTLESS_KUSTOMIZE_BINARY", default_value = "kustomize")]
    kustomize_binary: PathBuf,
    /// The helm binary for directories holding a Chart.yaml (tested with
    /// 4.1.4; tools/fetch gets it).
    #[arg(long, env = "DRIFTLESS_HELM_BINARY", default_value = "helm")]
    helm_binary: PathBuf,
    /// Let kustomize fetch remote bases (Git or HTTP URLs in `resources`).
    /// Off: a kustomization naming one is refused, and the tools run with
    /// no network.
    #[arg(long, env = "DRIFTLESS_ALLOW_REMOTE_BASES")]
    allow_remote_bases: bool,
}

/// How a command that reads PATHs renders them: the tools, and a chart's
/// values (what `spec.helm` gives a GitSync).
#[derive(clap::Args)]
struct LocalArgs {
    #[command(flatten)]
    render: RenderArgs,
    /// A values file for a chart PATH, like `helm template -f` (repeatable,
    /// applied in order after the chart's values.yaml).
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    values: Vec<PathBuf>,
    /// The release name a chart PATH is rendered with (default: the
    /// chart directory's name).
    #[arg(long, value_name = "NAME")]
    release_name: Option<String>,
    /// How long kustomize or helm may run before it is killed.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    render_timeout: std::time::Duration,
}

impl LocalArgs {
    fn local(&self) -> anyhow::Result<Local> {
        let mut values_files = Vec::new();
        for f in &self.values {
            let abs = std::fs::canonicalize(f)
                .map_err(|e| anyhow::anyhow!("--values {}: {e}", f.display()))?;
            values_files.push(abs.to_string_lossy().into_owned());
        }
        let helm = (!values_files.is_empty() || self.release_name.is_some()).then(|| HelmOptions {
            release_name: self.release_name.clone(),
            values_files,
            ..HelmOptions::default()
        });
        Ok(Local {
            tools: self.render.tools(),
            helm,
            timeout: self.render_timeout,
        })
    }
}

impl RenderArgs {
    fn tools(&self) -> Tools {
        Tools {
            kustomize: Tool {
                name: "kustomize",
                binary: self.kustomize_binary.clone(),
            },
            helm: Tool {
                name: "helm",
                binary: self.helm_binary.clone(),
            },
            allow_remote_bases: self.allow_remote_bases,
        }
    }
}

/// The options push mode's `plan` and `apply` share.
#[derive(clap::Args)]
struct PushArgs {
    /// Manifest files or directories (every .yaml/.yml below, recursively;
    /// a kustomization or a chart is rendered).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    render: LocalArgs,
    /// The stack: a name that groups the resources of one `apply`, written
    /// into their tags.
    #[arg(long, env = "DRIFTLESS_STACK")]
    stack: String,
    /// Resources worked on at once (only independent ones run together).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long one resource may take to create, update or become ready.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: std::time::Duration,
}

impl PushArgs {
    fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            stack: valid_stack(self.stack.clone())?,
            concurrency: self.concurrency.max(1),
            timeout: self.timeout,
        })
    }
}

/// A `--stack` name: it goes into tags, so 1 to 64 safe characters.
fn valid_stack(stack: String) -> anyhow::Result<String> {
    anyhow::ensure!(
        !stack.is_empty()
            && stack.len() <= 64
            && stack
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "--stack {stack:?}: use 1 to 64 letters, digits, '-' or '_'"
    );
    Ok(stack)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    cli.limits.apply();
    cli.cloud.apply();
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftless: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Controller {
            poll_interval,
            concurrency,
            terminal_backoff,
            reconcile_timeout,
            delete_proven_duplicates,
            namespace,
            shard,
            git_cache,
            health_check_workloads,
            default_service_account,
            allow_file_urls,
            allowed_source_prefix,
            ops,
            render,
        } => {
            let settings = Settings {
                poll_interval,
                concurrency,
                terminal_backoff,
                reconcile_timeout,
                delete_proven_duplicates,
                namespace,
                git_cache: git_cache.unwrap_or_else(driftless::ops::settings::default_git_cache),
                health_check_workloads,
                render: render.tools(),
                default_service_account,
                sources: driftless::gitsync::source::UrlPolicy {
                    allow_file_urls,
                    allowed_prefixes: allowed_source_prefix,
                },
                shard,
                ..Settings::default()
            };
            controller(settings, *ops).await
        }
        Command::Validate { paths, render } => {
            Ok(commands::validate(&paths, &render.local()?).await)
        }
        Command::Build { paths, render } => Ok(commands::build(&paths, &render.local()?).await),
        Command::Diff {
            paths,
            gitsync,
            namespace,
            output,
            render,
        } => {
            let local = match render.local() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("driftless diff: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let request = match diff_request(paths, gitsync, namespace) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("driftless diff: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            Ok(driftless::cli::diff::command(&request, &local, output).await)
        }
        Command::Plan { push, prune } => {
            let render = push.render.local()?;
            Ok(commands::plan(&push.paths, &render, push.options()?, prune).await)
        }
        Command::Apply { push, prune } => {
            let render = push.render.local()?;
            Ok(commands::apply(&push.paths, &render, push.options()?, prune).await)
        }
        Command::Get { stack } => {
            let options = Options {
                stack: valid_stack(stack)?,
                concurrency: 8,
                timeout: std::time::Duration::from_secs(60),
            };
            Ok(commands::get(options).await)
        }
        Command::Tree {
            target,
            namespace,
            output,
            watch,
            interval,
        } => Ok(tree(&target, namespace, output, watch.then_some(interval)).await),
        Command::Keys { action } => keys(action).await,
        Command::Bootstrap(args) => Ok(driftless::cli::bootstrap::command(&args).await),
        Command::Crds { out } => {
            crds::write(out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Examples for `driftless tree --help`.
const TREE_EXAMPLE: &str = "Examples:

  driftless tree gitsync/staging -n driftless-system
  driftless tree instance/web-1 -n demo
  driftless tree gitsync/staging -n driftless-system --watch
  driftless tree gitsync/staging -n driftless-system -o json | jq '.stages[].objects[] | select(.healthy | not)'";

/// `driftless tree`: exit 2 when the cluster cannot be reached.
async fn tree(
    target: &str,
    namespace: Option<String>,
    output: driftless::cli::tree::Format,
    watch: Option<std::time::Duration>,
) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("driftless tree: no cluster: {e}");
            return ExitCode::from(2);
        }
    };
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    match driftless::cli::tree::root(target, &ns) {
        Ok(root) => driftless::cli::tree::command(&client, &root, output, watch).await,
        Err(e) => {
            eprintln!("driftless tree: {e}");
            ExitCode::from(2)
        }
    }
}

/// An example for `driftless bootstrap --help`.
const BOOTSTRAP_EXAMPLE: &str = "Example, in a clone of the fleet repository:

  driftless bootstrap --url https://github.com/acme/fleet --path clusters/prod \\
      --secret-ref git-credentials
  created    CustomResourceDefinition buckets.aws.driftless.dev
  ...
  created    GitSync driftless-system/driftless
  wrote      clusters/prod/driftless-system/install.yaml
  wrote      clusters/prod/driftless-system/gitsync.yaml
  bootstrap: 26 objects (26 created, 0 configured, 0 unchanged); 2 files written, 0 unchanged
  next: commit and push clusters/prod/driftless-system, ...
    git -C . add clusters/prod/driftless-system
    git -C . commit -m \"driftless bootstrap\"
    git -C . push origin HEAD:main

Exit 0 when the cluster and the files are as they should be, 1 on an error
(no cluster, a bad --url or --path, a file that differs).";

/// An example CI step for `driftless diff --help`.
const DIFF_EXAMPLE: &str = "Example: a CI step on every pull request (GitHub Actions):

  - name: driftless diff
    run: |
      driftless diff clusters/prod --gitsync web/apps -o markdown > diff.md || code=$?
      gh pr comment \"$PR\" --body-file diff.md
      test \"${code:-0}\" -ne 2   # 1 (changes) is fine, 2 (an error) fails the job

Sample output:

  ~ Bucket web/uploads (clusters/prod/bucket.yaml:1:1)
  --- live  Bucket web/uploads
  +++ after Bucket web/uploads
  @@ -14,7 +14,7 @@
     forProvider:
       forceDestroy: false
  -    versioning: Suspended
  +    versioning: Enabled
  ...
  cloud plan:
    ~ Bucket web/uploads: forProvider.versioning: Suspended -> Enabled
    - Bucket web/logs: delete logs (deletionPolicy Delete)
  diff: 0 to create, 1 to update, 1 to prune, 3 unchanged; cloud: 0 to create, 1 to update, 1 to delete (4 cloud API calls, 0 writes)";

/// `--gitsync NAMESPACE/NAME` or `-n NAMESPACE --gitsync NAME`.
fn diff_request(
    paths: Vec<PathBuf>,
    gitsync: Option<String>,
    namespace: Option<String>,
) -> Result<driftless::cli::diff::Request, String> {
    let gitsync = match gitsync {
        None => None,
        Some(g) => Some(match (g.split_once('/'), &namespace) {
            (Some((ns, name)), _) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                (ns.to_string(), name.to_string())
            }
            (None, Some(ns)) if !g.is_empty() => (ns.clone(), g),
            (None, None) => {
                return Err(format!(
                    "--gitsync {g:?}: give NAMESPACE/NAME, or -n NAMESPACE --gitsync NAME"
                ))
            }
            _ => return Err(format!("--gitsync {g:?}: expected NAMESPACE/NAME")),
        }),
    };
    if paths.is_empty() && gitsync.is_none() {
        return Err("give PATH, or --gitsync for the GitSync's next revision".into());
    }
    Ok(driftless::cli::diff::Request {
        paths,
        gitsync,
        namespace,
    })
}

/// `driftless keys create|public`: the recipient(s) on stdout, nothing else.
async fn keys(action: KeysAction) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}")
    })?;
    match action {
        KeysAction::Create { namespace, name } => {
            let recipient = keys::create(&client, &namespace, &name).await?;
            eprintln!("created Secret {namespace}/{name} (key {name}.agekey); its recipient:");
            println!("{recipient}");
        }
        KeysAction::Public { namespace, name } => {
            for r in keys::public(&client, &namespace, &name).await? {
                println!("{r}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `driftless controller`: connect, then run every engine (behind leader
/// election when it is on).
async fn controller(settings: Settings, ops: OpsArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}")
    })?;
    let mut shared = Shared::new(Arc::new(CallCounter::default()));
    if !ops.notification_secret.is_empty() {
        shared.notifier = Arc::new(notifier(&client, &ops.notification_secret, &shared).await?);
    }
    let config = ManagerConfig {
        http_addr: ops.http_addr,
        metrics_addr: ops.metrics_addr,
        lease: lease(&ops, settings.shard.as_deref()),
        shutdown_timeout: ops.shutdown_timeout,
        ui: ui_config(&ops)?,
    };
    Ok(driftless::cli::controller::run(client, settings, shared, config).await)
}

/// The dashboard of `--ui-addr`, if asked for; a token without
/// `--ui-actions`, or the reverse, stops the controller with the reason.
fn ui_config(ops: &OpsArgs) -> anyhow::Result<Option<driftless::ops::ui::Config>> {
    let Some(addr) = ops.ui_addr else {
        return Ok(None);
    };
    let token = std::env::var("DRIFTLESS_UI_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    driftless::ops::ui::Config::from_flags(
        addr,
        ops.ui_actions,
        ops.ui_token_file.as_deref(),
        token,
    )
    .map(Some)
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The providers of `--notification-secret`, each Secret checked now: one
/// that is invalid (a token over plain http, an unknown provider) stops the
/// controller with a message naming it; one that is missing is only logged.
async fn notifier(
    client: &kube::Client,
    secrets: &[String],
    shared: &Shared,
) -> anyhow::Result<Notifier> {
    let mut named = Vec::new();
    for secret in secrets {
        let (ns, name) = secret
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("--notification-secret {secret:?}: expected NAMESPACE/NAME")
            })?;
        named.push((ns.to_string(), name.to_string()));
    }
    let notifier = Notifier::from_secrets(
        client.clone(),
        &named,
        Some(shared.metrics.clone()),
        driftless::ops::notify::Delivery::default(),
    );
    notifier
        .check()
        .await
        .map_err(|e| anyhow::anyhow!("--notification-secret: {e}"))?;
    Ok(notifier)
}

/// The Lease to hold, when leader election is on (in a pod, or asked for),
/// logging which and why.
fn lease(ops: &OpsArgs, shard: Option<&str>) -> Option<LeaseConfig> {
    let (elect, why) = driftless::ops::election::decide(
        ops.leader_elect,
        ops.leader_election_namespace.is_some(),
        driftless::ops::election::in_pod(),
    );
    if !elect {
        tracing::info!("leader election off: {why}");
        return None;
    }
    let lease = LeaseConfig {
        namespace: ops
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "driftless-system".into()),
        // Each shard elects its own leader.
        name: match shard {
            Some(shard) => format!("driftless-controller-{shard}"),
            None => "driftless-controller".into(),
        },
        identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        }),
        duration: ops.lease_duration,
    };
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), "leader election on: {why}");
    Some(lease)
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
