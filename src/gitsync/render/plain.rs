//! The plain-YAML renderer: every `.yaml`/`.yml` file,
//! multi-document files and `kind: List`, each object with the file and line
//! it starts at. Any problem fails the whole revision, with `file:line: reason`.
//!
//! The one entry point is [`load_dir`]: a directory in, [`Manifest`]s (object
//! + [`Origin`]) or one [`ManifestError`] out.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

/// Where an object (or a problem) is in the revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Path from the repository root.
    pub file: String,
    /// 1-based line; 0 when unknown.
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}", self.file, self.line)
        } else {
            write!(f, "{}", self.file)
        }
    }
}

/// A problem with a revision's manifests, located in the revision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct ManifestError {
    pub origin: Origin,
    pub reason: String,
}

impl ManifestError {
    pub fn new(origin: &Origin, reason: impl Into<String>) -> Self {
        Self {
            origin: origin.clone(),
            reason: reason.into(),
        }
    }
}

/// One object of the revision, as written in Git.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub origin: Origin,
    /// A JSON object with at least apiVersion, kind and metadata.name.
    pub object: Value,
}

impl Manifest {
    fn str_at(&self, pointer: &str) -> &str {
        self.object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
    /// `metadata.namespace` as written (may be empty).
    pub fn namespace(&self) -> &str {
        self.str_at("/metadata/namespace")
    }
    /// The API group: `apps` for `apps/v1`, empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
    }
    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn display(&self) -> String {
        match self.namespace() {
            "" => format!("{} {}", self.kind(), self.name()),
            ns => format!("{} {ns}/{}", self.kind(), self.name()),
        }
    }
}

/// Plain YAML: the files as they are.
pub struct Plain;

impl super::Renderer for Plain {
    fn name(&self) -> &'static str {
        "plain YAML"
    }

    fn render(&self, root: &Path, path: &str) -> Result<Vec<Manifest>, ManifestError> {
        load_dir(root, path)
    }
}

/// Loads every `.yaml`/`.yml` file under `root/path`, recursively, in path
/// order. Files are named (in origins and errors) by their path from `root`,
/// e.g. `clusters/prod/app/web.yaml:7`. Symbolic links are not followed and
/// `path` may not leave `root` (`..`).
pub fn load_dir(root: &Path, path: &str) -> Result<Vec<Manifest>, ManifestError> {
    let at = |file: &str, reason: String| {
        ManifestError::new(
            &Origin {
                file: file.to_string(),
                line: 0,
            },
            reason,
        )
    };
    let shown = if path.is_empty() { "." } else { path };
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(at(
            shown,
            "the path leaves the repository (it has ..)".into(),
        ));
    }
    let base = parts.join("/");
    match std::fs::symlink_metadata(root.join(&base)) {
        Ok(m) if m.is_dir() => {}
        _ => return Err(at(shown, "not a directory in this revision".into())),
    }
    // The one walker (validate and push mode read a tree the same way).
    let names =
        crate::manifests::walk::yaml_files(root, &base).map_err(|e| at(&e.dir, e.reason))?;
    let mut files = Vec::new();
    for rel in names {
        let bytes = std::fs::read(root.join(&rel))
            .map_err(|e| at(&rel, format!("cannot read the file: {e}")))?;
        files.push((rel, bytes));
    }
    load(&files)
}

/// Reads every file (path, contents) into manifests, in file order.
fn load(files: &[(String, Vec<u8>)]) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (file, bytes) in files {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ManifestError::new(
                &Origin {
                    file: file.clone(),
                    line: line_of_offset(bytes, e.valid_up_to()),
                },
                "not UTF-8 text",
            )
        })?;
        for (line, value) in parse(file, text)? {
            let origin = Origin {
                file: file.clone(),
                line,
            };
            out.push(check(origin, value)?);
        }
    }
    let mut seen: HashMap<(String, String, String, String), Origin> = HashMap::new();
    for m in &out {
        let key = (
            m.group().to_string(),
            m.kind().to_string(),
            m.namespace().to_string(),
            m.name().to_string(),
        );
        if let Some(first) = seen.get(&key) {
            return Err(ManifestError::new(
                &m.origin,
                format!("{} is also defined at {first}", m.display()),
            ));
        }
        seen.insert(key, m.origin.clone());
    }
    Ok(out)
}

fn line_of_offset(bytes: &[u8], offset: usize) -> u64 {
    1 + bytes[..offset].iter().filter(|b| **b == b'\n').count() as u64
}

/// The objects of one file, each with its line; a `kind: List` becomes its
/// items. The same YAML reader as `driftless validate` and push mode.
fn parse(file: &str, text: &str) -> Result<Vec<(u64, Value)>, ManifestError> {
    let docs = crate::manifests::parse(Path::new(file), text).map_err(|e| {
        ManifestError::new(
            &Origin {
                file: file.to_string(),
                line: e.line as u64,
            },
            e.message,
        )
    })?;
    Ok(docs.into_iter().map(|m| (m.line as u64, m.value)).collect())
}

/// Every object needs apiVersion, kind and metadata.name.
fn check(origin: Origin, value: Value) -> Result<Manifest, ManifestError> {
    let Value::Object(map) = &value else {
        return Err(ManifestError::new(
            &origin,
            format!(
                "a document must be a mapping (an object), not {}",
                crate::manifests::yaml_type_name(&value)
            ),
        ));
    };
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let kind = text("kind");
    let what = kind
        .map(|k| format!("{k} object"))
        .unwrap_or("object".into());
    if text("apiVersion").is_none() {
        return Err(ManifestError::new(
            &origin,
            format!("{what} has no apiVersion"),
        ));
    }
    if kind.is_none() {
        return Err(ManifestError::new(&origin, "object has no kind"));
    }
    let meta = map.get("metadata");
    if meta.is_some_and(|m| !m.is_object()) {
        return Err(ManifestError::new(
            &origin,
            format!("{what}: metadata is not a mapping"),
        ));
    }
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        return Err(ManifestError::new(
            &origin,
            format!("{what} has no metadata.name"),
        ));
    }
    if let Some(ns) = meta.and_then(|m| m.get("namespace")) {
        if !ns.is_string() {
            return Err(ManifestError::new(
                &origin,
                format!("{what}: metadata.namespace is not a string"),
            ));
        }
    }
    Ok(Manifest {
        origin,
        object: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect()
    }

    fn err(list: &[(&str, &str)]) -> String {
        load(&files(list)).unwrap_err().to_string()
    }

    const CM: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: x\ndata:\n  k: v\n";

    #[test]
    fn multi_document_files_with_lines() {
        let text = format!("# leading comment\n---\n{CM}---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n");
        let ms = load(&files(&[("apps/cm.yaml", &text)])).unwrap();
        assert_eq!(ms.len(), 2, "{ms:?}");
        assert_eq!(ms[0].name(), "a");
        assert_eq!(ms[0].namespace(), "x");
        assert_eq!(ms[0].origin.to_string(), "apps/cm.yaml:3");
        assert_eq!(ms[1].name(), "b");
        assert_eq!(ms[1].origin.to_string(), "apps/cm.yaml:13");
        assert_eq!(ms[0].object["data"]["k"], "v");
    }

    #[test]
    fn lists_become_their_items_with_their_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: two}\n";
        let ms = load(&files(&[("l.yml", text)])).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].kind(), ms[0].origin.line), ("ConfigMap", 4));
        assert_eq!((ms[1].kind(), ms[1].origin.line), ("Secret", 7));
        let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n- apiVersion: v1\n  metadata: {name: two}\n";
        assert_eq!(err(&[("l.yml", bad)]), "l.yml:7: object has no kind");
    }

    #[test]
    fn yaml_syntax_errors_name_file_and_line() {
        let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: [unclosed\n  j: v\n";
        let e = load(&files(&[("ok.yaml", CM), ("app/broken.yaml", broken)])).unwrap_err();
        assert_eq!(e.origin.file, "app/broken.yaml");
        assert!((6..=8).contains(&e.origin.line), "{e}");
        assert!(e.reason.starts_with("invalid YAML: "), "{e}");
        assert!(!e.reason.contains('\n'), "{e}");
        let tabs = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: a\n";
        let e = load(&files(&[("t.yaml", tabs)])).unwrap_err();
        assert_eq!(
            (e.origin.file.as_str(), e.origin.line),
            ("t.yaml", 4),
            "{e}"
        );
    }

    #[test]
    fn objects_need_api_version_kind_and_name() {
        assert_eq!(
            err(&[("a.yaml", "kind: ConfigMap\nmetadata: {name: a}\n")]),
            "a.yaml:1: ConfigMap object has no apiVersion"
        );
        assert_eq!(
            err(&[(
                "a.yaml",
                &format!("{CM}---\n# the second\napiVersion: v1\nmetadata: {{name: a}}\n")
            )]),
            "a.yaml:10: object has no kind"
        );
        assert_eq!(
            err(&[(
                "a.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels: {a: b}\n"
            )]),
            "a.yaml:1: Deployment object has no metadata.name"
        );
        assert_eq!(
            err(&[("a.yaml", "- just\n- a list\n")]),
            "a.yaml:1: a document must be a mapping (an object), not a sequence"
        );
        assert_eq!(
            err(&[("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n")]),
            "a.yaml:1: ConfigMap object: metadata is not a mapping"
        );
    }

    #[test]
    fn duplicates_and_bad_encoding_are_refused() {
        let e = err(&[("a.yaml", CM), ("b/c.yaml", CM)]);
        assert_eq!(e, "b/c.yaml:1: ConfigMap x/a is also defined at a.yaml:1");
        let e = load(&[("bin.yaml".to_string(), b"a: 1\nb: \xff\n".to_vec())]).unwrap_err();
        assert_eq!(e.to_string(), "bin.yaml:2: not UTF-8 text");
    }

    #[test]
    fn directories_are_read_recursively_in_path_order() {
        let root =
            std::env::temp_dir().join(format!("driftless-load-{:08x}", rand::random::<u32>()));
        let write = |p: &str, c: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        };
        let cm =
            |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
        write("clusters/prod/b.yml", &cm("b"));
        write("clusters/prod/a/z.yaml", &format!("# first\n{}", cm("z")));
        write("clusters/prod/notes.txt", "not: [yaml");
        write("clusters/other/broken.yaml", "not: [yaml");
        write("outside.yaml", &cm("outside"));
        std::os::unix::fs::symlink(
            root.join("outside.yaml"),
            root.join("clusters/prod/link.yaml"),
        )
        .unwrap();
        let ms = load_dir(&root, "./clusters/prod/").unwrap();
        let got: Vec<String> = ms
            .iter()
            .map(|m| format!("{} {}", m.origin, m.name()))
            .collect();
        assert_eq!(
            got,
            vec!["clusters/prod/a/z.yaml:2 z", "clusters/prod/b.yml:1 b"]
        );
        let e = load_dir(&root, "clusters").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("clusters/other/broken.yaml:1: invalid YAML"),
            "{e}"
        );
        assert_eq!(
            load_dir(&root, "").unwrap_err().origin.file,
            "clusters/other/broken.yaml"
        );
        let e = load_dir(&root, "clusters/none").unwrap_err();
        assert_eq!(
            e.to_string(),
            "clusters/none: not a directory in this revision"
        );
        let e = load_dir(&root, "clusters/../..").unwrap_err();
        assert!(e.reason.contains(".."), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn scalars_keep_their_types() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.example/web:v1\n        env: [{name: A, value: \"1\"}]\n";
        let m = &load(&files(&[("d.yaml", text)])).unwrap()[0];
        assert_eq!(m.object["spec"]["replicas"], 3);
        let c = &m.object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example/web:v1");
        assert_eq!(c["env"][0]["value"], "1");
        assert_eq!(m.group(), "apps");
        assert_eq!(m.display(), "Deployment web");
    }
}
