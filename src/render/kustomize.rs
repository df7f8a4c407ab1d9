//! The kustomize renderer: `kustomize build` of the path, as a sandboxed
//! child process, after a check of every kustomization it reaches (remote
//! bases refused unless allowed, no directory outside the checkout). That
//! walk also lists the files kustomize reads objects from, so each rendered
//! object is traced back to the document it was built from: errors point at
//! the source, not at the build output.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::process::{self, Tool};
use super::{confined, repo_relative, Request};
use crate::manifests::{self, Manifest, ManifestError, Origin};

/// The file names kustomize looks for, in its order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// The largest kustomization file read.
const MAX_KUSTOMIZATION: u64 = 1 << 20;
/// How deep bases may nest.
const MAX_DEPTH: usize = 64;
/// The largest resource file read back to place objects (larger ones are
/// named without a line).
const MAX_TRACED_FILE: u64 = 4 << 20;

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
        files: Vec::new(),
        generators: Vec::new(),
    };
    scan.dir(&dir, 0)?;
    // Read before kustomize runs, so a file that does not parse is named
    // with its file:line (kustomize's message has neither).
    let sources = scan.sources()?;
    let built = kustomization_file(&dir).map_or_else(
        || Origin::file(repo_relative(root, &dir)),
        |f| Origin::file(repo_relative(root, &f)),
    );
    let args = ["build".into(), dir.as_os_str().to_owned()];
    let out = process::run(tool, &args, root, req.timeout, allow_remote)
        .await
        .map_err(|e| ManifestError::new(&built, tidy(&e, root)))?;
    let output = "kustomize build output".to_string();
    let objects = manifests::load_files(&[(output, out)])?;
    Ok(objects
        .into_iter()
        .map(|m| trace(&sources, &scan.generators, &built, m))
        .collect())
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
    /// Resource files, in the order reached.
    files: Vec<PathBuf>,
    /// `configMapGenerator` / `secretGenerator` names, and where written.
    generators: Vec<(String, Origin)>,
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
                } else if target.is_file() && !self.files.contains(&target) {
                    self.files.push(target);
                }
            }
        }
        for field in ["configMapGenerator", "secretGenerator"] {
            let items = k.value.get(field).and_then(Value::as_array);
            for (i, item) in items.into_iter().flatten().enumerate() {
                if let Some(name) = item.get("name").and_then(Value::as_str) {
                    let (line, col) = k.position(&format!("{field}[{i}]"));
                    self.generators
                        .push((name.to_string(), Origin::at(&shown, line, col)));
                }
            }
        }
        Ok(())
    }

    /// The documents of every resource file, parsed once. One that does not
    /// parse refuses the build, named with its file:line.
    fn sources(&self) -> Result<Vec<Manifest>, ManifestError> {
        let mut docs = Vec::new();
        for file in &self.files {
            let shown = repo_relative(self.root, file);
            let size = std::fs::metadata(file).map_or(0, |m| m.len());
            if size > MAX_TRACED_FILE {
                continue; // kustomize reads it; its objects are named by file only
            }
            let text = std::fs::read_to_string(file).map_err(|e| {
                ManifestError::new(&Origin::file(&shown), format!("cannot read: {e}"))
            })?;
            docs.extend(manifests::parse(Path::new(&shown), &text)?);
        }
        Ok(docs)
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

/// A tool message with the checkout's path shown as the repository root.
fn tidy(message: &str, root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    message
        .replace(&format!("{}/", root.display()), "")
        .replace(&root.display().to_string(), ".")
}

/// `m` placed where it is written: the source document it was built from
/// (its line, and the lines of its fields), else the generator that made
/// it, else (unknown) the built kustomization.
fn trace(
    sources: &[Manifest],
    generators: &[(String, Origin)],
    built: &Origin,
    m: Manifest,
) -> Manifest {
    if let Some(source) = best_match(sources, &m) {
        return source.with_value(m.value);
    }
    let generated = matches!(m.kind(), "ConfigMap" | "Secret");
    let generator = generators
        .iter()
        .filter(|(name, _)| generated && m.name().contains(name.as_str()))
        .max_by_key(|(name, _)| name.len());
    let origin = generator.map_or_else(|| built.clone(), |(_, at)| at.clone());
    Manifest::placed(origin, m.value)
}

/// The source document `m` was built from: the same kind, with the longest
/// name that `m`'s name contains (kustomize adds prefixes and suffixes).
fn best_match<'a>(docs: &'a [Manifest], m: &Manifest) -> Option<&'a Manifest> {
    docs.iter()
        .filter(|d| d.kind() == m.kind() && !d.name().is_empty() && m.name().contains(d.name()))
        .max_by_key(|d| d.name().len())
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
    fn objects_are_traced_to_their_source_or_generator() {
        let docs = manifests::parse(
            Path::new("base/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-extra\n",
        )
        .unwrap();
        let rendered = |name: &str| {
            Manifest::placed(
                Origin::file("out"),
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
            )
        };
        let built = Origin::file("prod/kustomization.yaml");
        let generators = vec![(
            "flags".to_string(),
            Origin::at("prod/kustomization.yaml", 7, 3),
        )];
        let t = trace(&docs, &generators, &built, rendered("prod-web-extra"));
        assert_eq!(t.origin.to_string(), "base/cm.yaml:6:1");
        let t = trace(&docs, &generators, &built, rendered("prod-web"));
        assert_eq!(t.origin.to_string(), "base/cm.yaml:1:1");
        let t = trace(
            &docs,
            &generators,
            &built,
            rendered("prod-flags-6gc9d749f7"),
        );
        assert_eq!(t.origin.to_string(), "prod/kustomization.yaml:7:3");
        let t = trace(&docs, &generators, &built, rendered("other"));
        assert_eq!(t.origin, built);
    }
}
