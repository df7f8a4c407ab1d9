//! The one directory walker, for `validate`, push mode and GitSync alike,
//! so a tree means the same thing to all three: every `.yaml` / `.yml`
//! file, recursively, in path order. Names starting with `.` (`.git`,
//! `.github`, editor files) are skipped, and symbolic links are never
//! followed (a link could leave the tree, or loop).

use std::path::Path;

/// A walk that failed: where, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct WalkError {
    /// The directory, as a path from the walk's root (`.` for the root).
    pub dir: String,
    pub reason: String,
}

/// The YAML files under `root/rel` (a directory), each as its path from
/// `root`, sorted.
pub fn yaml_files(root: &Path, rel: &str) -> Result<Vec<String>, WalkError> {
    let max = super::limits::get().max_files;
    let mut files = Vec::new();
    let mut dirs = vec![rel.to_string()];
    while let Some(dir) = dirs.pop() {
        let fail = |e: std::io::Error| WalkError {
            dir: if dir.is_empty() {
                ".".into()
            } else {
                dir.clone()
            },
            reason: format!("cannot read the directory: {e}"),
        };
        for entry in std::fs::read_dir(root.join(&dir)).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            // file_type() does not follow symbolic links: they are neither.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                files.push(path);
                if files.len() > max {
                    return Err(WalkError {
                        dir: if rel.is_empty() {
                            ".".into()
                        } else {
                            rel.into()
                        },
                        reason: super::limits::too_many_files(max),
                    });
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_files_in_path_order_without_dotfiles_or_links() {
        let root =
            std::env::temp_dir().join(format!("driftless-walk-{:08x}", rand::random::<u32>()));
        let write = |p: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "a: 1\n").unwrap();
        };
        for p in [
            "b.yml",
            "a/z.yaml",
            "a.yaml",
            "notes.txt",
            ".github/ci.yaml",
            ".hidden.yaml",
        ] {
            write(p);
        }
        std::os::unix::fs::symlink(root.join("a.yaml"), root.join("link.yaml")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("linked-dir")).unwrap();
        assert_eq!(
            yaml_files(&root, "").unwrap(),
            vec!["a.yaml", "a/z.yaml", "b.yml"]
        );
        assert_eq!(yaml_files(&root, "a").unwrap(), vec!["a/z.yaml"]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
