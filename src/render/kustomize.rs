//! The kustomize renderer: `kustomize build` of the path, as a sandboxed
//! child process, after a check of every kustomization it reaches (remote
//! bases refused unless allowed, no directory outside the checkout). Each
//! object is traced back to the file kustomize read it from, so errors
//! point at the source, not at the build output.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::process::{self, TempDir, Tool};
use super::{confined, normalize, repo_relative, Request};
use crate::manifests::{self, Manifest, ManifestError, Origin};

/// The file names kustomize looks for, in its order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// The annotation `buildMetadata: [originAnnotations]` adds: where an object came from.
const ORIGIN: &str = "config.kubernetes.io/origin";
/// The largest kustomization file read.
const MAX_KUSTOMIZATION: u64 = 1 << 20;
/// How deep bases may nest.
const MAX_DEPTH: usize = 64;

/// Renders `req.path` with kustomize.
pub async fn render(
    tool: &Tool,
    allow_remote: bool,
    req: &Request<'_>,
) -> Result<Vec<Manifest>, ManifestError> {
    let root = req.root;
    let dir = root.join(req.path);
    let mut scan = Scan {
        root,
        allow_remote,
        seen: HashSet::new(),
    };
    scan.dir(&dir, 0)?;
    let shown = kustomization_file(&dir).map_or_else(
        || Origin::file(repo_relative(root, &dir)),
        |f| Origin::file(repo_relative(root, &f)),
    );
    let fail = |e: String| ManifestError::new(&shown, e);
    // A wrapper asks kustomize to say where each object came from, without
    // writing into the user's tree.
    let wrapper = TempDir::new("kustomize-build").map_err(fail)?;
    let target = relative_path(wrapper.path(), &dir).map_err(fail)?;
    let text = format!(
        "resources:\n- {}\nbuildMetadata: [originAnnotations]\n",
        serde_json::to_string(&target).expect("a string serializes")
    );
    std::fs::write(wrapper.path().join("kustomization.yaml"), text)
        .map_err(|e| fail(format!("cannot write the build wrapper: {e}")))?;
    let args = ["build".into(), wrapper.path().as_os_str().to_owned()];
    let out = process::run(tool, &args, root, req.timeout, allow_remote)
        .await
        .map_err(|e| fail(tidy(&e, root, wrapper.path(), &target, req.path)))?;
    let output = Path::new("kustomize build output");
    let mut objects = manifests::load_files(&[(output.display().to_string(), out)])?;
    let mut sources = Sources::default();
    for m in &mut objects {
        let from = take_origin(&mut m.value);
        *m = sources.trace(root, wrapper.path(), &shown, from, m);
    }
    Ok(objects)
}

/// The kustomization file of `dir`, if it has one.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The walk over every kustomization a build reaches.
struct Scan<'a> {
    root: &'a Path,
    allow_remote: bool,
    seen: HashSet<PathBuf>,
}

impl Scan<'_> {
    /// Checks the kustomization in `dir` and every directory it names.
    fn dir(&mut self, dir: &Path, depth: usize) -> Result<(), ManifestError> {
        let Some(file) = kustomization_file(dir) else {
            return Ok(()); // kustomize itself says what is missing
        };
        if !self.seen.insert(file.clone()) {
            return Ok(());
        }
        let shown = repo_relative(self.root, &file);
        if depth > MAX_DEPTH {
            let why = format!("bases nest deeper than {MAX_DEPTH} levels");
            return Err(ManifestError::new(&Origin::file(shown), why));
        }
        let k = read_kustomization(&file, &shown)?;
        for field in ["resources", "bases", "components"] {
            let Some(entries) = k.value.get(field).and_then(Value::as_array) else {
                continue;
            };
            for (i, entry) in entries.iter().enumerate() {
                let Some(entry) = entry.as_str() else {
                    continue;
                };
                let at = || {
                    let (line, col) = k.position(&format!("{field}[{i}]"));
                    Origin::at(&shown, line, col)
                };
                if is_remote(entry, dir) {
                    if self.allow_remote {
                        continue;
                    }
                    let why = format!("remote base {entry} is refused: the controller runs without --allow-remote-bases");
                    return Err(ManifestError::new(&at(), why));
                }
                let target = confined(self.root, dir, entry).map_err(|why| {
                    ManifestError::new(&at(), format!("{field} entry {entry}: {why}"))
                })?;
                if target.is_dir() {
                    self.dir(&target, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a kustomization with the manifests parser, so that a broken one
/// is named with its file:line.
fn read_kustomization(file: &Path, shown: &str) -> Result<Manifest, ManifestError> {
    let origin = Origin::file(shown);
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if size > MAX_KUSTOMIZATION {
        let why = format!(
            "a kustomization of {size} bytes is over the {} MiB limit",
            MAX_KUSTOMIZATION >> 20
        );
        return Err(ManifestError::new(&origin, why));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| ManifestError::new(&origin, format!("cannot read: {e}")))?;
    let mut docs = manifests::parse(Path::new(shown), &text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(ManifestError::new(&origin, "the kustomization is empty")),
        n => Err(ManifestError::new(
            &origin,
            format!("a kustomization is one YAML document, this file has {n}"),
        )),
    }
}

/// Whether kustomize would fetch `entry` over the network (a Git or HTTP
/// URL, or a `host/org/repo` shorthand) rather than read it from disk.
fn is_remote(entry: &str, dir: &Path) -> bool {
    if entry.contains("://") || entry.starts_with("git@") || entry.contains("?ref=") {
        return true;
    }
    if entry.starts_with('.') || entry.starts_with('/') || dir.join(entry).exists() {
        return false;
    }
    // `github.com/org/repo//path`: a first segment that looks like a host.
    let host = entry.split('/').next().unwrap_or_default();
    host.contains('.') && entry.contains('/')
}

/// `to` as a path relative to the directory `from` (both absolute).
fn relative_path(from: &Path, to: &Path) -> Result<String, String> {
    let canon = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
    };
    let (from, to) = (canon(from)?, canon(to)?);
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    Ok(rel.to_string_lossy().into_owned())
}

/// A tool message with the scratch paths taken out (they mean nothing to
/// the user): the wrapper's way to the built directory becomes its path in
/// the repository, and the checkout's path the repository root.
fn tidy(message: &str, root: &Path, wrapper: &Path, target: &str, path: &str) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let path = if path.is_empty() { "." } else { path };
    message
        .replace(target, path)
        .replace(&format!("{}/", wrapper.display()), "")
        .replace(&format!("{}/", root.display()), "")
        .replace(&root.display().to_string(), ".")
}

/// The origin annotation kustomize added, removed from the object.
fn take_origin(value: &mut Value) -> Option<Value> {
    let annotations = value
        .pointer_mut("/metadata/annotations")?
        .as_object_mut()?;
    let origin = annotations.remove(ORIGIN)?;
    if annotations.is_empty() {
        if let Some(meta) = value
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    let text = origin.as_str()?.to_string();
    let mut docs = manifests::parse(Path::new(ORIGIN), &text).ok()?;
    (!docs.is_empty()).then(|| docs.remove(0).value)
}

/// Source files read back to place rendered objects, each parsed once.
#[derive(Default)]
struct Sources {
    files: HashMap<PathBuf, Vec<Manifest>>,
}

impl Sources {
    /// `m` placed at where it is written: the document in its source file
    /// (its line, and the lines of its fields), or the kustomization that
    /// generated it, or (unknown) the built kustomization.
    fn trace(
        &mut self,
        root: &Path,
        wrapper: &Path,
        built: &Origin,
        from: Option<Value>,
        m: &Manifest,
    ) -> Manifest {
        let field = |k: &str| {
            from.as_ref()
                .and_then(|f| f.get(k))
                .and_then(Value::as_str)
                .map(|p| normalize(&wrapper.join(p)))
        };
        if let Some(file) = field("path") {
            let shown = repo_relative(root, &file);
            let docs = self.files.entry(file.clone()).or_insert_with(|| {
                std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| manifests::parse(Path::new(&shown), &t).ok())
                    .unwrap_or_default()
            });
            if let Some(source) = best_match(docs, m) {
                return source.with_value(m.value.clone());
            }
            return Manifest::placed(Origin::file(shown), m.value.clone());
        }
        if let Some(file) = field("configuredIn") {
            return Manifest::placed(Origin::file(repo_relative(root, &file)), m.value.clone());
        }
        Manifest::placed(built.clone(), m.value.clone())
    }
}

/// The source document `m` was built from: the same kind, with the longest
/// name that `m`'s name contains (kustomize adds prefixes and suffixes).
fn best_match<'a>(docs: &'a [Manifest], m: &Manifest) -> Option<&'a Manifest> {
    docs.iter()
        .filter(|d| d.kind() == m.kind() && m.name().contains(d.name()))
        .max_by_key(|d| d.name().len())
        .or_else(|| docs.iter().find(|d| d.kind() == m.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_bases_are_recognised() {
        let dir = Path::new("/nonexistent");
        for remote in [
            "https://github.com/org/repo//base?ref=v1",
            "github.com/kubernetes-sigs/kustomize/examples/helloWorld?ref=v3.3.1",
            "git@github.com:org/repo.git",
            "gitlab.com/org/repo/base",
        ] {
            assert!(is_remote(remote, dir), "{remote}");
        }
        for local in [
            "../base",
            "deploy.yaml",
            "./x/y",
            "base",
            "app.v2/deploy.yaml",
        ] {
            assert!(!is_remote(local, dir) || local.contains('/'), "{local}");
        }
        assert!(!is_remote("../base", dir));
        assert!(!is_remote("deploy.yaml", dir));
    }

    #[test]
    fn relative_paths_climb_and_descend() {
        let tmp = std::env::temp_dir().join(format!("driftless-rel-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("a/b")).unwrap();
        std::fs::create_dir_all(tmp.join("c")).unwrap();
        assert_eq!(
            relative_path(&tmp.join("a/b"), &tmp.join("c")).unwrap(),
            "../../c"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_origin_annotation_is_taken_out() {
        let mut v = serde_json::json!({"metadata": {"name": "x", "annotations": {ORIGIN: "path: ../base/cm.yaml\n"}}});
        let from = take_origin(&mut v).unwrap();
        assert_eq!(from["path"], "../base/cm.yaml");
        assert_eq!(v, serde_json::json!({"metadata": {"name": "x"}}));
    }
}
