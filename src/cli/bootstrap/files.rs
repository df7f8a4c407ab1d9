//! Bootstrap's files in the checkout: compared before anything is applied,
//! written (atomically) only where they differ, never over a user's edit
//! unless `--force`.

use std::path::{Path, PathBuf};

/// A file as it stands in the checkout, compared with what bootstrap writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    Missing,
    Same,
    Different,
}

/// One file to (maybe) write.
#[derive(Debug)]
pub struct Planned {
    /// Relative to the checkout, as printed.
    pub path: PathBuf,
    pub text: String,
    pub state: FileState,
}

/// Each file's state. Refuses a directory on the way that leaves the
/// checkout through a symbolic link.
pub fn plan(checkout: &Path, texts: &[(PathBuf, String)]) -> anyhow::Result<Vec<Planned>> {
    let root = std::fs::canonicalize(checkout)
        .map_err(|e| anyhow::anyhow!("--checkout {}: {e}", checkout.display()))?;
    let mut out = Vec::new();
    for (path, text) in texts {
        inside(&root, checkout, path)?;
        let full = checkout.join(path);
        let state = match std::fs::read(&full) {
            Ok(bytes) if bytes == text.as_bytes() => FileState::Same,
            Ok(_) => FileState::Different,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
            Err(e) => anyhow::bail!("cannot read {}: {e}", full.display()),
        };
        out.push(Planned {
            path: path.clone(),
            text: text.clone(),
            state,
        });
    }
    Ok(out)
}

/// The deepest existing directory of `path` must resolve inside `root`.
fn inside(root: &Path, checkout: &Path, path: &Path) -> anyhow::Result<()> {
    let mut dir = checkout.join(path);
    while !dir.exists() {
        if !dir.pop() {
            return Ok(());
        }
    }
    let real = std::fs::canonicalize(&dir)
        .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", dir.display()))?;
    anyhow::ensure!(
        real.starts_with(root),
        "--path: {} resolves to {}, outside the checkout {}",
        dir.display(),
        real.display(),
        root.display()
    );
    Ok(())
}

/// Without `force`, a file with other content stops everything, each one
/// named; with it, each is named as overwritten.
pub fn refuse_conflicts(planned: &[Planned], force: bool) -> anyhow::Result<()> {
    let differing: Vec<String> = planned
        .iter()
        .filter(|p| p.state == FileState::Different)
        .map(|p| p.path.display().to_string())
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    if force {
        for f in &differing {
            eprintln!("--force: overwriting {f}, whose content differs");
        }
        return Ok(());
    }
    anyhow::bail!(
        "{} already exist{} with other content (an edit, or another driftless version's); nothing was applied or written. Commit or move the change and run again, or give --force to overwrite",
        differing.join(", "),
        if differing.len() == 1 { "s" } else { "" }
    )
}

/// Writes the files that differ or are missing; returns how many.
pub fn write(checkout: &Path, planned: &[Planned]) -> anyhow::Result<usize> {
    let mut written = 0;
    for p in planned {
        if p.state == FileState::Same {
            println!("unchanged  {}", p.path.display());
            continue;
        }
        let full = checkout.join(&p.path);
        let dir = full.parent().expect("a file has a directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        // Write then rename: a reader (or a crash) never sees half a file.
        let tmp = dir.join(format!(
            ".{}.tmp",
            full.file_name().expect("a name").to_string_lossy()
        ));
        std::fs::write(&tmp, &p.text)
            .and_then(|()| std::fs::rename(&tmp, &full))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", full.display()))?;
        println!("wrote      {}", p.path.display());
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_files_are_written_and_edits_are_refused() {
        let dir = std::env::temp_dir().join(format!("driftless-boot-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let texts = vec![(PathBuf::from("c/driftless-system/a.yaml"), "a: 1\n".into())];
        let planned = plan(&dir, &texts).unwrap();
        assert_eq!(planned[0].state, FileState::Missing);
        assert_eq!(write(&dir, &planned).unwrap(), 1);
        let again = plan(&dir, &texts).unwrap();
        assert_eq!(again[0].state, FileState::Same);
        assert_eq!(write(&dir, &again).unwrap(), 0);
        std::fs::write(dir.join("c/driftless-system/a.yaml"), "a: 2\n").unwrap();
        let edited = plan(&dir, &texts).unwrap();
        let e = refuse_conflicts(&edited, false).unwrap_err().to_string();
        assert!(
            e.contains("c/driftless-system/a.yaml") && e.contains("--force"),
            "{e}"
        );
        refuse_conflicts(&edited, true).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
