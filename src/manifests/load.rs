//! Loading: the walker's files through the reader, each object checked for
//! what every object needs. [`load`] (validate, push mode) reports every
//! problem; [`load_dir`] (GitSync) refuses a revision at its first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::limits::{self, size};
use super::{parse_with, walk, Budget, Manifest, ManifestError, Origin};

/// Every `.yaml` / `.yml` file under `paths` (files or directories,
/// recursively, by [`walk::yaml_files`]), in a stable order. A file named
/// on the command line is read whatever its name.
pub fn find_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let found = walk::yaml_files(p, "")
                .map_err(|e| format!("{}: {}: {}", p.display(), e.dir, e.reason))?;
            files.extend(found.into_iter().map(|f| p.join(f)));
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Loads every manifest under `paths`: the objects that passed, and every
/// problem found (one per file that does not parse, one per bad object).
pub fn load(paths: &[PathBuf]) -> (Vec<Manifest>, Vec<ManifestError>) {
    let files = match find_files(paths) {
        Ok(f) => f,
        Err(e) => {
            let file = e.split(':').next().unwrap_or_default().to_string();
            return (Vec::new(), vec![ManifestError::new(&Origin::file(file), e)]);
        }
    };
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    let mut budget = Budget::new();
    let mut total = 0;
    for file in files {
        let shown = file.display().to_string();
        match read_capped(&file, &shown, &mut total) {
            Ok(bytes) => objects(&file, &bytes, &mut budget, &mut manifests, &mut errors),
            Err(e) => {
                let stop = e.message.contains("--max-revision-size");
                errors.push(e);
                if stop {
                    break;
                }
            }
        }
        if let Some(e) = too_many(manifests.len(), &file) {
            errors.push(e);
            break;
        }
    }
    (manifests, errors)
}

/// Loads every YAML file under `root/path` (a checkout), named by its path
/// from `root` (e.g. `clusters/prod/app/web.yaml:7:1`). The first problem
/// refuses them all; `path` may not leave `root` (`..`).
pub fn load_dir(root: &Path, path: &str) -> Result<Vec<Manifest>, ManifestError> {
    let shown = if path.is_empty() { "." } else { path };
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        let why = "the path leaves the repository (it has ..)";
        return Err(ManifestError::new(&Origin::file(shown), why));
    }
    let base = parts.join("/");
    match std::fs::symlink_metadata(root.join(&base)) {
        Ok(m) if m.is_dir() => {}
        _ => {
            let why = "not a directory in this revision";
            return Err(ManifestError::new(&Origin::file(shown), why));
        }
    }
    let names = walk::yaml_files(root, &base)
        .map_err(|e| ManifestError::new(&Origin::file(&e.dir), e.reason))?;
    let mut files = Vec::new();
    let mut total = 0;
    for rel in names {
        let bytes = read_capped(&root.join(&rel), &rel, &mut total)?;
        files.push((rel, bytes));
    }
    load_files(&files)
}

/// The objects of `(name, contents)` files, in order; the first problem
/// (or an object defined twice) refuses them all.
pub fn load_files(files: &[(String, Vec<u8>)]) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    let mut budget = Budget::new();
    for (file, bytes) in files {
        let mut errors = Vec::new();
        objects(Path::new(file), bytes, &mut budget, &mut out, &mut errors);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if let Some(e) = too_many(out.len(), Path::new(file)) {
            return Err(e);
        }
    }
    let mut seen: HashMap<(&str, &str, &str, &str), &Origin> = HashMap::new();
    for m in &out {
        let key = (m.group(), m.kind(), m.namespace(), m.name());
        if let Some(first) = seen.get(&key) {
            let why = format!("{} is also defined at {first}", m.describe());
            return Err(ManifestError::new(&m.origin, why));
        }
        seen.insert(key, &m.origin);
    }
    Ok(out)
}

/// Reads a file whose size is within the limits (checked before reading),
/// adding it to the `total` read so far.
fn read_capped(path: &Path, shown: &str, total: &mut u64) -> Result<Vec<u8>, ManifestError> {
    let limits = limits::get();
    let fail = |why: String| ManifestError::new(&Origin::file(shown), why);
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read the file: {e}")))?
        .len();
    if len > limits.max_file_size {
        return Err(fail(file_too_large(len, limits.max_file_size)));
    }
    *total += len;
    if *total > limits.max_revision_size {
        return Err(fail(revision_too_large(limits.max_revision_size)));
    }
    // Never more than the limit, even if the file grew since.
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(|e| fail(format!("cannot read the file: {e}")))?,
            limits.max_file_size + 1,
        ),
        &mut bytes,
    )
    .map_err(|e| fail(format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > limits.max_file_size {
        return Err(fail(file_too_large(
            bytes.len() as u64,
            limits.max_file_size,
        )));
    }
    Ok(bytes)
}

/// The message for a file over `--max-file-size`.
pub fn file_too_large(len: u64, max: u64) -> String {
    format!(
        "the file is {}, more than the limit of {} (--max-file-size)",
        size(len),
        size(max)
    )
}

/// The message for a revision over `--max-revision-size`.
pub fn revision_too_large(max: u64) -> String {
    format!(
        "the revision is more than {} with this file (--max-revision-size)",
        size(max)
    )
}

/// An error when `count` objects are more than `--max-objects`.
fn too_many(count: usize, file: &Path) -> Option<ManifestError> {
    let max = limits::get().max_objects;
    (count > max).then(|| {
        let why =
            format!("the revision has more than {max} objects with this file (--max-objects)");
        ManifestError::new(&Origin::file(file), why)
    })
}

/// Reads one file's objects into `out`, its problems into `errors`.
fn objects(
    file: &Path,
    bytes: &[u8],
    budget: &mut Budget,
    out: &mut Vec<Manifest>,
    errors: &mut Vec<ManifestError>,
) {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            let at = Origin::at(file, line, 0);
            errors.push(ManifestError::new(&at, "not UTF-8 text"));
            return;
        }
    };
    match parse_with(file, text, budget) {
        Ok(docs) => {
            for m in docs {
                match check(&m) {
                    Some(e) => errors.push(e),
                    None => out.push(m),
                }
            }
        }
        Err(e) => errors.push(e),
    }
}

/// Every object needs apiVersion, kind and metadata.name; metadata must be
/// a mapping and a namespace a string.
fn check(m: &Manifest) -> Option<ManifestError> {
    let fail = |why: String| Some(ManifestError::new(&m.origin, why));
    let file_name = m.origin.file.file_name().and_then(|n| n.to_str());
    if matches!(file_name, Some("kustomization.yaml" | "kustomization.yml")) {
        let dir = m.origin.file.parent().unwrap_or(Path::new("."));
        return fail(format!(
            "a kustomization inside a plain-YAML directory: only the directory a path names is rendered with kustomize; point the path at {} to render it",
            dir.display()
        ));
    }
    let what = match m.kind() {
        "" => "object".to_string(),
        k => format!("{k} object"),
    };
    if m.api_version().is_empty() {
        return fail(format!("{what} has no apiVersion"));
    }
    if m.kind().is_empty() {
        return fail("object has no kind".into());
    }
    let meta = m.value.get("metadata");
    if meta.is_some_and(|m| !m.is_object()) {
        return fail(format!("{what}: metadata is not a mapping"));
    }
    if m.name().is_empty() {
        return fail(format!("{what} has no metadata.name"));
    }
    if meta
        .and_then(|m| m.get("namespace"))
        .is_some_and(|ns| !ns.is_string())
    {
        return fail(format!("{what}: metadata.namespace is not a string"));
    }
    None
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
        load_files(&files(list)).unwrap_err().to_string()
    }

    const CM: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: x\ndata:\n  k: v\n";

    #[test]
    fn a_kustomization_in_a_plain_tree_says_where_to_point() {
        let e = err(&[("apps/prod/kustomization.yaml", "resources: [web.yaml]\n")]);
        assert!(e.contains("apps/prod/kustomization.yaml:1:1"), "{e}");
        assert!(e.contains("point the path at apps/prod"), "{e}");
    }

    #[test]
    fn multi_document_files_with_lines() {
        let text = format!("# leading comment\n---\n{CM}---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n");
        let ms = load_files(&files(&[("apps/cm.yaml", &text)])).unwrap();
        assert_eq!(ms.len(), 2, "{ms:?}");
        assert_eq!(ms[0].name(), "a");
        assert_eq!(ms[0].namespace(), "x");
        assert_eq!(ms[0].origin.to_string(), "apps/cm.yaml:3:1");
        assert_eq!(ms[1].name(), "b");
        assert_eq!(ms[1].origin.to_string(), "apps/cm.yaml:13:1");
        assert_eq!(ms[0].value["data"]["k"], "v");
    }

    #[test]
    fn lists_become_their_items_with_their_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: two}\n";
        let ms = load_files(&files(&[("l.yml", text)])).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].kind(), ms[0].origin.line), ("ConfigMap", 4));
        assert_eq!((ms[1].kind(), ms[1].origin.line), ("Secret", 7));
        let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n- apiVersion: v1\n  metadata: {name: two}\n";
        assert_eq!(err(&[("l.yml", bad)]), "l.yml:7:3: object has no kind");
    }

    #[test]
    fn yaml_syntax_errors_name_file_and_line() {
        let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: [unclosed\n  j: v\n";
        let e = load_files(&files(&[("ok.yaml", CM), ("app/broken.yaml", broken)])).unwrap_err();
        assert_eq!(e.origin.file, Path::new("app/broken.yaml"));
        assert!((6..=8).contains(&e.origin.line), "{e}");
        assert!(e.message.starts_with("invalid YAML: "), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
        let tabs = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: a\n";
        let e = load_files(&files(&[("t.yaml", tabs)])).unwrap_err();
        assert_eq!(
            (e.origin.file.as_path(), e.origin.line),
            (Path::new("t.yaml"), 4),
            "{e}"
        );
    }

    #[test]
    fn objects_need_api_version_kind_and_name() {
        assert_eq!(
            err(&[("a.yaml", "kind: ConfigMap\nmetadata: {name: a}\n")]),
            "a.yaml:1:1: ConfigMap object has no apiVersion"
        );
        assert_eq!(
            err(&[(
                "a.yaml",
                &format!("{CM}---\n# the second\napiVersion: v1\nmetadata: {{name: a}}\n")
            )]),
            "a.yaml:10:1: object has no kind"
        );
        assert_eq!(
            err(&[(
                "a.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels: {a: b}\n"
            )]),
            "a.yaml:1:1: Deployment object has no metadata.name"
        );
        assert_eq!(
            err(&[("a.yaml", "- just\n- a list\n")]),
            "a.yaml:1:1: a document must be a mapping (an object), not a sequence"
        );
        assert_eq!(
            err(&[("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n")]),
            "a.yaml:1:1: ConfigMap object: metadata is not a mapping"
        );
    }

    #[test]
    fn duplicates_and_bad_encoding_are_refused() {
        let e = err(&[("a.yaml", CM), ("b/c.yaml", CM)]);
        assert_eq!(
            e,
            "b/c.yaml:1:1: ConfigMap x/a is also defined at a.yaml:1:1"
        );
        let e = load_files(&[("bin.yaml".to_string(), b"a: 1\nb: \xff\n".to_vec())]).unwrap_err();
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
        write("clusters/prod/.github/ci.yaml", "not: [yaml");
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
            vec!["clusters/prod/a/z.yaml:2:1 z", "clusters/prod/b.yml:1:1 b"]
        );
        let e = load_dir(&root, "clusters").unwrap_err();
        assert!(
            e.to_string().starts_with("clusters/other/broken.yaml:1:"),
            "{e}"
        );
        assert!(e.message.starts_with("invalid YAML"), "{e}");
        assert_eq!(
            load_dir(&root, "").unwrap_err().origin.file,
            Path::new("clusters/other/broken.yaml")
        );
        let e = load_dir(&root, "clusters/none").unwrap_err();
        assert_eq!(
            e.to_string(),
            "clusters/none: not a directory in this revision"
        );
        let e = load_dir(&root, "clusters/../..").unwrap_err();
        assert!(e.message.contains(".."), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn scalars_keep_their_types() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.example/web:v1\n        env: [{name: A, value: \"1\"}]\n";
        let m = &load_files(&files(&[("d.yaml", text)])).unwrap()[0];
        assert_eq!(m.value["spec"]["replicas"], 3);
        let c = &m.value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example/web:v1");
        assert_eq!(c["env"][0]["value"], "1");
        assert_eq!(m.group(), "apps");
        assert_eq!(m.describe(), "Deployment web");
    }

    #[test]
    fn objects_need_identity() {
        let dir =
            std::env::temp_dir().join(format!("driftless-identity-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("m.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        )
        .unwrap();
        let (ok, errors) = load(std::slice::from_ref(&dir));
        assert!(ok.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].message, "ConfigMap object has no metadata.name");
        assert_eq!((errors[0].origin.line, errors[0].origin.col), (1, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
