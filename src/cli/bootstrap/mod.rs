//! `driftless bootstrap`: install driftless into the current cluster and
//! make it manage its own installation from Git, as `flux bootstrap` does.
//!
//! 1. the files: `PATH/driftless-system/install.yaml` (what `deploy/`
//!    installs, embedded: [`install`]) and `gitsync.yaml` (the GitSync that
//!    applies PATH, and the ServiceAccount it acts as), rendered and checked
//!    against the checkout first: a file with other content is refused
//!    (unless `--force`) before anything is applied;
//! 2. those same objects applied as the GitSync's first pass would apply
//!    them (the GitSync's field manager and owner labels, dry-run first,
//!    CRDs established before the rest): the GitSync then finds them as its
//!    own, and a later `bootstrap` as unchanged;
//! 3. the files written (only those that differ), and the git commands that
//!    publish them.

mod files;
pub mod install;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::gitsync::apply::{Change, Kinds, Owner};
use crate::gitsync::{rollout, PRUNE};
use crate::manifests::Manifest;

/// The directory under PATH that bootstrap writes.
pub const DIR: &str = "driftless-system";
/// The file holding what `deploy/` installs.
pub const INSTALL_FILE: &str = "install.yaml";
/// The file holding the GitSync, its ServiceAccount and binding.
pub const GITSYNC_FILE: &str = "gitsync.yaml";
/// The ClusterRole the GitSync's ServiceAccount is bound to.
pub const CLUSTER_ROLE: &str = "driftless-bootstrap";

/// What `driftless bootstrap` is asked to do.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The Git repository the GitSync follows, as the controller reaches
    /// it: `https://...`, `ssh://...`, `user@host:path`, `file:///...`.
    #[arg(long)]
    pub url: String,
    /// The directory of the repository the GitSync applies (its
    /// spec.path), e.g. `clusters/prod`; bootstrap's files go into
    /// PATH/driftless-system/ of the checkout.
    #[arg(long, value_name = "PATH")]
    pub path: String,
    /// The branch the GitSync follows.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The local clone of --url the files are written into (default: the
    /// Git work tree holding the current directory).
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
    /// The GitSync to create, NAMESPACE/NAME. Its ServiceAccount is NAME-bootstrap in NAMESPACE.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "driftless-system/driftless"
    )]
    pub gitsync: String,
    /// How often the GitSync checks Git and re-applies (its spec.interval).
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// A Secret in the GitSync's namespace with the Git credentials (its
    /// spec.secretRef: `token`, or `username` + `password`, for HTTPS;
    /// `identity` + `known_hosts` for SSH). Create it before or after.
    #[arg(long, value_name = "NAME")]
    pub secret_ref: Option<String>,
    /// Install `deploy/lockdown` instead of `deploy/`: every other GitSync
    /// acts as a ServiceAccount of its own namespace.
    #[arg(long)]
    pub lockdown: bool,
    /// Overwrite files under PATH/driftless-system whose content differs
    /// (each is named); without it, bootstrap refuses and changes nothing.
    #[arg(long)]
    pub force: bool,
    /// How long applying may take (CRDs to be established included).
    #[arg(long, default_value = "2m", value_parser = crate::ops::settings::parse_duration)]
    pub timeout: Duration,
}

/// The GitSync that bootstrap creates, and where its files go.
struct Target {
    namespace: String,
    name: String,
    /// PATH as spec.path has it: relative, normalised (`""`: the root).
    path: String,
    checkout: PathBuf,
}

/// `driftless bootstrap`: 0 when the cluster and the files are as they
/// should be (changed now, or already), 1 on any error.
pub async fn command(args: &Args) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftless bootstrap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let target = target(args)?;
    let texts = render(args, &target)?;
    let planned = files::plan(&target.checkout, &texts)?;
    files::refuse_conflicts(&planned, args.force)?;
    let manifests = parse(&texts)?;
    let client = connect().await?;
    ensure_namespace(&client, &target, &manifests).await?;
    let owner = Owner {
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        target_namespace: None,
    };
    let applied = rollout::apply(
        &client,
        &Kinds::default(),
        &manifests,
        &owner,
        true,
        args.timeout,
    )
    .await
    .map_err(|e| anyhow::anyhow!("applying the install: {e}"))?;
    let mut counts = [0usize; 3];
    for a in &applied {
        let (i, word) = match a.change {
            Change::Created => (0, "created"),
            Change::Configured => (1, "configured"),
            Change::Unchanged => (2, "unchanged"),
        };
        counts[i] += 1;
        println!("{word:<10} {}", a.planned.entry);
    }
    let written = files::write(&target.checkout, &planned)?;
    println!(
        "bootstrap: {} objects ({} created, {} configured, {} unchanged); {} files written, {} unchanged",
        applied.len(),
        counts[0],
        counts[1],
        counts[2],
        written,
        planned.len() - written
    );
    if written > 0 {
        next_steps(args, &target);
    } else if counts[0] + counts[1] == 0 {
        println!("already bootstrapped: nothing changed");
    }
    Ok(())
}

/// The GitSync, PATH and the checkout, each checked.
fn target(args: &Args) -> anyhow::Result<Target> {
    let (namespace, name) = match args.gitsync.split_once('/') {
        Some((ns, name)) if dns_label(ns) && dns_label(name) => (ns, name),
        _ => anyhow::bail!(
            "--gitsync {:?}: expected NAMESPACE/NAME (lowercase letters, digits and '-')",
            args.gitsync
        ),
    };
    check_url(&args.url)?;
    anyhow::ensure!(
        crate::gitsync::duration(&args.interval).is_some()
            && regex::Regex::new(r"^([0-9]+(ms|s|m|h))+$")
                .expect("a valid regex")
                .is_match(&args.interval),
        "--interval {:?}: expected a duration such as 30s, 1m or 1h30m",
        args.interval
    );
    anyhow::ensure!(
        !args.branch.is_empty(),
        "--branch: give the branch to follow"
    );
    if let Some(s) = &args.secret_ref {
        anyhow::ensure!(
            dns_label(s) || s.split('.').all(dns_label),
            "--secret-ref {s:?}: not a Secret name"
        );
    }
    let path = normalise_path(&args.path)?;
    let checkout = checkout(args.checkout.as_deref())?;
    Ok(Target {
        namespace: namespace.into(),
        name: name.into(),
        path,
        checkout,
    })
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `--url`: one the GitSync accepts (its schema's pattern), and for the
/// URL forms, one that parses with a host (but file://).
fn check_url(url: &str) -> anyhow::Result<()> {
    let scp = regex::Regex::new(r"^[A-Za-z0-9._-]+@[^:/]+:.+").expect("a valid regex");
    if scp.is_match(url) {
        return Ok(());
    }
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--url {url:?}: {why}; give https://..., ssh://..., user@host:path or file:///..."
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "https" | "http" | "ssh" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "https" | "http" | "ssh" => Err(bad("no host")),
        "file" if parsed.path().len() > 1 => Ok(()),
        "file" => Err(bad("no path")),
        other => Err(bad(&format!("scheme {other}: is not one GitSync fetches"))),
    }
}

/// PATH relative to the repository root, with no `..`: what spec.path says
/// and where the files go (`.` and `""` are the root).
fn normalise_path(path: &str) -> anyhow::Result<String> {
    let p = Path::new(path);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => anyhow::bail!(
                "--path {path:?}: escapes the checkout; give a directory inside the repository, e.g. clusters/prod"
            ),
        }
    }
    Ok(parts.join("/"))
}

/// `--checkout`, else the Git work tree holding the current directory.
fn checkout(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        anyhow::ensure!(
            dir.is_dir(),
            "--checkout {}: not a directory",
            dir.display()
        );
        return Ok(dir.to_path_buf());
    }
    let repo = git2::Repository::discover(".").map_err(|_| {
        anyhow::anyhow!(
            "the current directory is in no Git checkout: run bootstrap in your clone of --url, or give --checkout DIR"
        )
    })?;
    repo.workdir().map(Path::to_path_buf).ok_or_else(|| {
        anyhow::anyhow!("the current directory is in a bare repository: give --checkout DIR")
    })
}

/// The two files' paths (relative to the checkout) and contents.
fn render(args: &Args, target: &Target) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let dir = Path::new(&target.path).join(DIR);
    let mut install = install::objects(args.lockdown).map_err(|e| anyhow::anyhow!(e))?;
    let version = env!("CARGO_PKG_VERSION");
    let mode = if args.lockdown {
        "deploy/lockdown"
    } else {
        "deploy/"
    };
    let header = format!(
        "# driftless {version}, {mode}: written by `driftless bootstrap`, applied by GitSync\n# {}/{} (gitsync.yaml). Edit it here, commit and push: driftless applies it.\n",
        target.namespace, target.name
    );
    for obj in &mut install {
        keep_on_prune(obj);
    }
    let mut gitsync = gitsync_objects(args, target);
    for obj in &mut gitsync {
        keep_on_prune(obj);
    }
    Ok(vec![
        (dir.join(INSTALL_FILE), to_yaml(&header, &install)?),
        (dir.join(GITSYNC_FILE), to_yaml(&header, &gitsync)?),
    ])
}

/// `driftless.dev/prune: disabled`: deleting the GitSync, or these files,
/// leaves driftless installed (orphaned) instead of deleting the controller,
/// its CRDs and so every custom resource, mid-way through its own deletion.
fn keep_on_prune(obj: &mut Value) {
    let meta = &mut obj["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][PRUNE] = json!("disabled");
}

/// The GitSync that applies PATH, and the ServiceAccount it acts as: bound
/// to a ClusterRole that may apply anything, since PATH holds driftless'
/// own RBAC (granting more than the controller's ClusterRole holds needs
/// it) and whatever else the cluster's configuration is.
fn gitsync_objects(args: &Args, target: &Target) -> Vec<Value> {
    let (ns, name) = (&target.namespace, &target.name);
    let account = format!("{name}-bootstrap");
    let mut spec = json!({
        "url": args.url,
        "ref": {"branch": args.branch},
        "path": target.path,
        "interval": args.interval,
        "prune": true,
        "serviceAccountName": account,
    });
    if target.path.is_empty() {
        spec.as_object_mut().expect("a mapping").remove("path");
    }
    if let Some(secret) = &args.secret_ref {
        spec["secretRef"] = json!({"name": secret});
    }
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": ns},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{CLUSTER_ROLE}:{ns}:{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        }),
        json!({
            "apiVersion": "driftless.dev/v1alpha1",
            "kind": "GitSync",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }),
    ]
}

fn to_yaml(header: &str, objects: &[Value]) -> anyhow::Result<String> {
    let mut out = header.to_string();
    for obj in objects {
        let yaml = serde_saphyr::to_string(obj)
            .map_err(|e| anyhow::anyhow!("cannot print an object as YAML: {e}"))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

/// The objects read back from the files' text, as the GitSync reads them:
/// what is applied now is what it applies later, origins at file:line.
fn parse(texts: &[(PathBuf, String)]) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (path, text) in texts {
        out.extend(crate::manifests::parse(path, text).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    Ok(out)
}

/// A client for the kubeconfig's cluster, once the cluster has answered.
async fn connect() -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("no cluster to install into (KUBECONFIG or in-cluster config): {e}")
    })?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot connect to the cluster at {url}: {e}"))?;
    client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("the cluster at {url} does not answer: {e}"))?;
    Ok(client)
}

/// The GitSync's namespace exists, or the install creates it.
async fn ensure_namespace(
    client: &kube::Client,
    target: &Target,
    manifests: &[Manifest],
) -> anyhow::Result<()> {
    let created = manifests
        .iter()
        .any(|m| m.kind() == "Namespace" && m.name() == target.namespace);
    if created {
        return Ok(());
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    match api.get_opt(&target.namespace).await? {
        Some(_) => Ok(()),
        None => anyhow::bail!(
            "--gitsync {}/{}: namespace {} does not exist; create it first",
            target.namespace,
            target.name,
            target.namespace
        ),
    }
}

/// What the user does next: commit and push, so that the GitSync finds
/// the files it was created to apply.
fn next_steps(args: &Args, target: &Target) {
    let dir = Path::new(&target.path).join(DIR);
    let c = target.checkout.display();
    println!(
        "next: commit and push {}, so that GitSync {}/{} finds it (until then it reports the path missing):",
        dir.display(),
        target.namespace,
        target.name
    );
    println!("  git -C {c} add {}", dir.display());
    println!("  git -C {c} commit -m \"driftless bootstrap\"");
    println!("  git -C {c} push origin HEAD:{}", args.branch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_checkout() {
        assert_eq!(normalise_path("clusters/prod/").unwrap(), "clusters/prod");
        assert_eq!(normalise_path("./clusters//prod").unwrap(), "clusters/prod");
        assert_eq!(normalise_path(".").unwrap(), "");
        for bad in ["../x", "clusters/../../x", "/etc"] {
            let e = normalise_path(bad).unwrap_err().to_string();
            assert!(e.contains("escapes the checkout"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_are_ones_gitsync_fetches() {
        for ok in [
            "https://github.com/acme/fleet",
            "ssh://git@github.com/acme/fleet",
            "git@github.com:acme/fleet.git",
            "file:///srv/git/fleet.git",
        ] {
            check_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["github.com/acme/fleet", "ftp://x/y", "https://", "file://"] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(e.contains("--url"), "{bad}: {e}");
        }
    }
}
