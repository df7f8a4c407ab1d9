//! Render: the objects a directory stands for, for GitSync and push mode
//! alike, so a directory means the same thing with and without a cluster.
//!
//! Detected as Flux and Argo CD do: a `kustomization.yaml` (`.yml`,
//! `Kustomization`) is built with kustomize, a `Chart.yaml` with helm,
//! anything else is plain YAML. kustomize and helm are the real binaries,
//! run as sandboxed child processes ([`process`]); every read stays inside
//! the root (a checkout, or the repository of a local path).

pub mod chart_repo;
pub mod helm;
pub mod kustomize;
mod plain;
pub mod process;

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub use helm::{Capabilities, HelmOptions};
pub use process::Tool;

use crate::manifests::{Manifest, ManifestError, Origin};

/// Which renderer a directory takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renderer {
    Plain,
    Kustomize,
    Helm,
}

impl Renderer {
    pub const ALL: [Renderer; 3] = [Self::Plain, Self::Kustomize, Self::Helm];

    /// As status messages, Events and metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Kustomize => "kustomize",
            Self::Helm => "helm",
        }
    }

    /// The renderer for a directory holding the files `names`.
    pub fn for_files<S: AsRef<str>>(names: &[S]) -> Self {
        let has = |n: &str| names.iter().any(|x| x.as_ref() == n);
        if kustomize::FILE_NAMES.iter().any(|n| has(n)) {
            Self::Kustomize
        } else if has("Chart.yaml") {
            Self::Helm
        } else {
            Self::Plain
        }
    }

    /// The renderer for directory `dir` on disk.
    pub fn for_dir(dir: &Path) -> Self {
        let names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Self::for_files(&names)
    }

    /// Whether it reads beyond its directory (an overlay's `../base`), so
    /// the whole repository must be checked out.
    pub fn needs_whole_repository(self) -> bool {
        self != Self::Plain
    }
}

/// The tools and what they may do: the controller's and push mode's flags.
#[derive(Clone, Debug)]
pub struct Tools {
    pub kustomize: Tool,
    pub helm: Tool,
    /// Let kustomize fetch remote bases (Git, HTTP): off by default.
    pub allow_remote_bases: bool,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            kustomize: Tool {
                name: "kustomize",
                binary: "kustomize".into(),
            },
            helm: Tool {
                name: "helm",
                binary: "helm".into(),
            },
            allow_remote_bases: false,
        }
    }
}

/// One render: where, and the options of whoever asks.
pub struct Request<'a> {
    /// The root every read stays inside: a checkout, or a local repository.
    pub root: &'a Path,
    /// The directory to render, relative to `root` ("" for all of it).
    pub path: &'a str,
    pub helm: Option<&'a HelmOptions>,
    /// helm's release name unless `helm.releaseName` says otherwise.
    pub release_name: &'a str,
    /// helm's `--namespace`.
    pub namespace: &'a str,
    /// How long a tool may run before it is killed.
    pub timeout: Duration,
    /// `.Capabilities` for helm (`None`: helm's defaults, no cluster).
    pub capabilities: Option<&'a Capabilities>,
    /// A chart fetched from a Helm repository (instead of `path`).
    pub chart_dir: Option<&'a Path>,
}

/// What a render produced, and what it took.
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub renderer: Renderer,
    pub took: Duration,
}

/// Renders `req` with the renderer its directory (or `spec.helm.chart`) takes.
pub async fn render(tools: &Tools, req: &Request<'_>) -> Result<Rendered, ManifestError> {
    let started = Instant::now();
    let renderer = match req.chart_dir {
        Some(_) => Renderer::Helm,
        None => Renderer::for_dir(&req.root.join(req.path)),
    };
    let manifests = match renderer {
        Renderer::Plain => plain::render(req)?,
        Renderer::Kustomize => {
            kustomize::render(&tools.kustomize, tools.allow_remote_bases, req).await?
        }
        Renderer::Helm => helm::render(&tools.helm, req).await?,
    };
    Ok(Rendered {
        manifests,
        renderer,
        took: started.elapsed(),
    })
}

/// `path` with `.` and `..` resolved by their names alone (no disk reads).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `dir/entry`, if it stays inside `root`, both by its name and, when it
/// exists, once symbolic links are resolved.
pub fn confined(root: &Path, dir: &Path, entry: &str) -> Result<PathBuf, String> {
    let leaves = || format!("it leaves the repository ({entry} is outside the checkout)");
    let root = normalize(root);
    let target = normalize(&dir.join(entry));
    if !target.starts_with(&root) {
        return Err(leaves());
    }
    if let (Ok(real), Ok(real_root)) =
        (std::fs::canonicalize(&target), std::fs::canonicalize(&root))
    {
        if !real.starts_with(&real_root) {
            return Err(leaves());
        }
    }
    Ok(target)
}

/// `path` as a path from `root` (for messages), or as it is when outside.
pub fn repo_relative(root: &Path, path: &Path) -> String {
    let (root, path) = (normalize(root), normalize(path));
    match path.strip_prefix(&root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// How push mode, `validate` and `build` render a local directory.
#[derive(Clone, Debug)]
pub struct Local {
    pub tools: Tools,
    /// `--values` / `--release-name` for charts (like `spec.helm`).
    pub helm: Option<HelmOptions>,
    pub timeout: Duration,
}

/// Renders a local directory (push mode, `validate`, `build`) when it is a
/// kustomization or a chart; `None` for plain YAML, which the caller loads
/// itself (reporting every problem, not just the first). Reads stay inside
/// the Git repository holding `dir`, else the current directory when it
/// holds `dir`; files are named as from where the user stands.
pub async fn local(opts: &Local, dir: &Path) -> Option<Result<Rendered, ManifestError>> {
    if !dir.is_dir() || Renderer::for_dir(dir) == Renderer::Plain {
        return None;
    }
    let (root, path, shown) = match local_root(dir) {
        Ok(r) => r,
        Err(why) => return Some(Err(ManifestError::new(&Origin::file(dir), why))),
    };
    let release = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "release".into());
    let request = Request {
        root: &root,
        path: &path,
        helm: opts.helm.as_ref(),
        release_name: &release,
        namespace: "default",
        timeout: opts.timeout,
        capabilities: None,
        chart_dir: None,
    };
    let seen_from = |mut o: Origin| {
        o.file = shown.join(&o.file);
        o
    };
    Some(match render(&opts.tools, &request).await {
        Ok(mut r) => {
            for m in &mut r.manifests {
                m.origin = seen_from(m.origin.clone());
            }
            Ok(r)
        }
        Err(mut e) => {
            e.origin = seen_from(e.origin);
            Err(e)
        }
    })
}

/// The root of a local directory (absolute), the directory's path from it,
/// and the root as the user names it (relative to the current directory).
fn local_root(dir: &Path) -> Result<(PathBuf, String, PathBuf), String> {
    let abs = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .unwrap_or_else(|_| abs.clone());
    let repo = abs.ancestors().find(|a| a.join(".git").exists());
    let root = match repo {
        Some(r) => r.to_path_buf(),
        None if abs.starts_with(&cwd) => cwd.clone(),
        // Outside any repository and the current directory: the user's own
        // files, read where kustomize itself would.
        None => PathBuf::from("/"),
    };
    let rel = abs
        .strip_prefix(&root)
        .expect("the root holds the directory")
        .to_string_lossy()
        .into_owned();
    let shown = match root.strip_prefix(&cwd) {
        Ok(r) => r.to_path_buf(),
        Err(_) => root.clone(),
    };
    Ok((root, rel, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_follows_flux_and_argo() {
        assert_eq!(
            Renderer::for_files(&["kustomization.yaml"]),
            Renderer::Kustomize
        );
        assert_eq!(Renderer::for_files(&["Kustomization"]), Renderer::Kustomize);
        assert_eq!(
            Renderer::for_files(&["kustomization.yml", "Chart.yaml"]),
            Renderer::Kustomize
        );
        assert_eq!(
            Renderer::for_files(&["Chart.yaml", "values.yaml"]),
            Renderer::Helm
        );
        assert_eq!(Renderer::for_files(&["web.yaml"]), Renderer::Plain);
    }

    #[test]
    fn confinement_is_by_name_and_by_link() {
        let root = Path::new("/repo");
        assert_eq!(
            confined(root, Path::new("/repo/overlays/prod"), "../../base").unwrap(),
            PathBuf::from("/repo/base")
        );
        let err = confined(root, Path::new("/repo/overlays/prod"), "../../../etc").unwrap_err();
        assert!(err.contains("leaves the repository"), "{err}");
        assert!(confined(root, Path::new("/repo"), "/etc/passwd").is_err());
    }

    #[test]
    fn messages_name_files_from_the_root() {
        assert_eq!(
            repo_relative(Path::new("/r"), Path::new("/r/a/../b/c.yaml")),
            "b/c.yaml"
        );
        assert_eq!(repo_relative(Path::new("/r"), Path::new("/r")), ".");
    }
}
