//! Safe unpacking of a chart archive: plain files and directories under
//! one top-level directory, nothing else, within size and count caps.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

const MAX_UNPACKED: u64 = 50 << 20;
const MAX_ENTRIES: usize = 10_000;

/// Bounds the decompressed stream whatever the entries claim (gzip bombs,
/// huge skipped entries).
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(
                "the archive decompresses to too much data",
            ));
        }
        let max = buf.len().min(self.left.try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks a chart archive into `into` and returns its one top-level
/// directory, which must hold Chart.yaml and must not exist yet. Refuses
/// (never skips) absolute paths, `..`, links and device files; caps the
/// total size at 50 MiB and the entries at 10 000. On failure nothing is
/// left behind.
pub(super) fn unpack(tgz: &[u8], into: &Path) -> Result<PathBuf, String> {
    let mut top = None;
    let unpacked = unpack_all(tgz, into, &mut top);
    if unpacked.is_err() {
        if let Some(top) = &top {
            let _ = fs::remove_dir_all(into.join(top));
        }
    }
    unpacked
}

fn unpack_all(tgz: &[u8], into: &Path, top: &mut Option<PathBuf>) -> Result<PathBuf, String> {
    // Headers and padding add at most ~10 MiB to the capped contents.
    let gz = flate2::read::GzDecoder::new(tgz);
    let mut archive = tar::Archive::new(Capped {
        inner: gz,
        left: MAX_UNPACKED + (16 << 20),
    });
    let bad = |e: io::Error| format!("bad chart archive: {e}");
    let mut written = 0;
    for (i, entry) in archive.entries().map_err(bad)?.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(format!(
                "the chart archive has more than {MAX_ENTRIES} entries"
            ));
        }
        unpack_entry(&mut entry.map_err(bad)?, into, top, &mut written)?;
    }
    let top = top.as_ref().ok_or("the chart archive is empty")?;
    match into.join(top).join("Chart.yaml").is_file() {
        true => Ok(into.join(top)),
        false => Err(format!(
            "the chart archive has no {}/Chart.yaml",
            top.display()
        )),
    }
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    into: &Path,
    top: &mut Option<PathBuf>,
    written: &mut u64,
) -> Result<(), String> {
    use tar::EntryType as T;
    let raw = entry
        .path()
        .map_err(|e| format!("bad chart archive: {e}"))?
        .into_owned();
    let kind = entry.header().entry_type();
    let is_dir = match kind {
        T::Regular | T::Continuous => false,
        T::Directory => true,
        T::XGlobalHeader | T::XHeader => return Ok(()), // metadata only
        _ => {
            return Err(format!(
                "refusing chart archive entry {}: {kind:?} (only files and directories)",
                raw.display()
            ))
        }
    };
    let rel = safe_path(&raw)?;
    let Some(first) = rel.components().next() else {
        return Ok(()); // "./" itself
    };
    if !is_dir && rel.components().count() < 2 {
        return Err(format!(
            "refusing chart archive entry {}: outside the chart directory",
            raw.display()
        ));
    }
    claim_top(Path::new(first.as_os_str()), into, top)?;
    let dest = into.join(&rel);
    let io_err = |e: io::Error| format!("cannot unpack {}: {e}", dest.display());
    if is_dir {
        return fs::create_dir_all(&dest).map_err(io_err);
    }
    write_file(entry, &dest, written).map_err(io_err)
}

fn write_file<R: Read>(
    entry: &mut tar::Entry<R>,
    dest: &Path,
    written: &mut u64,
) -> io::Result<()> {
    *written += entry.size();
    if *written > MAX_UNPACKED {
        let mib = MAX_UNPACKED >> 20;
        return Err(io::Error::other(format!(
            "the chart archive unpacks to more than {mib} MiB"
        )));
    }
    fs::create_dir_all(dest.parent().expect("has a parent"))?;
    io::copy(entry, &mut fs::File::create(dest)?).map(|_| ())
}

/// The entry's path relative to the archive root; absolute and `..` paths
/// are refused.
fn safe_path(raw: &Path) -> Result<PathBuf, String> {
    let mut rel = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "refusing chart archive entry {}: absolute or `..` path",
                    raw.display()
                ))
            }
        }
    }
    Ok(rel)
}

/// All entries share one top-level directory, which is new under `into`.
fn claim_top(first: &Path, into: &Path, top: &mut Option<PathBuf>) -> Result<(), String> {
    match top {
        Some(t) if t == first => Ok(()),
        Some(t) => Err(format!(
            "the chart archive has more than one top-level directory ({} and {})",
            t.display(),
            first.display()
        )),
        None => {
            let dir = into.join(first);
            if fs::symlink_metadata(&dir).is_ok() {
                return Err(format!(
                    "cannot unpack into {}: it already exists",
                    dir.display()
                ));
            }
            *top = Some(first.to_path_buf());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A .tgz of `(path, kind, data)`, paths written raw (the tar crate's
    /// builder would refuse the malicious ones).
    fn tgz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    use tar::EntryType as T;

    fn try_unpack(entries: &[(&str, tar::EntryType, &[u8])]) -> Result<PathBuf, String> {
        let into = tempfile::tempdir().unwrap();
        let out = unpack(&tgz(entries), into.path());
        if out.is_err() {
            assert!(
                !into.path().join("web").exists(),
                "a failed unpack cleans up"
            );
        }
        out.map(|p| p.strip_prefix(into.path()).unwrap().to_path_buf())
    }

    #[test]
    fn unpacks_a_chart() {
        let into = tempfile::tempdir().unwrap();
        let archive = tgz(&[
            ("web/", T::Directory, b""),
            ("web/Chart.yaml", T::Regular, b"name: web\n"),
            ("./web/templates/cm.yaml", T::Regular, b"kind: ConfigMap\n"),
        ]);
        let dir = unpack(&archive, &into.path().join("new")).unwrap();
        assert_eq!(dir, into.path().join("new/web"));
        assert_eq!(
            fs::read_to_string(dir.join("templates/cm.yaml")).unwrap(),
            "kind: ConfigMap\n"
        );
        let again = unpack(&archive, &into.path().join("new")).unwrap_err();
        assert!(again.contains("already exists"), "{again}");
    }

    #[test]
    fn unpack_refuses_escapes_links_and_strays() {
        let chart = ("web/Chart.yaml", T::Regular, &b"name: web\n"[..]);
        let refused = |entry: (&str, T, &[u8]), why: &str| {
            let err = try_unpack(&[chart, entry]).unwrap_err();
            assert!(err.contains(why), "{err}");
        };
        refused(("web/../../evil", T::Regular, b"x"), "absolute or `..`");
        refused(("/etc/evil", T::Regular, b"x"), "absolute or `..`");
        refused(("web/link", T::Symlink, b""), "Symlink");
        refused(("web/hard", T::Link, b""), "Link");
        refused(("web/dev", T::Char, b""), "Char");
        refused(("README", T::Regular, b"x"), "outside the chart directory");
        refused(
            ("db/Chart.yaml", T::Regular, b"x"),
            "more than one top-level",
        );
        let err = try_unpack(&[("web/values.yaml", T::Regular, b"")]).unwrap_err();
        assert!(
            err.contains("no ") && err.contains("web/Chart.yaml"),
            "{err}"
        );
        assert!(try_unpack(&[]).unwrap_err().contains("empty"));
        assert!(unpack(b"not gzip", Path::new("/nonexistent"))
            .unwrap_err()
            .contains("bad chart"));
    }

    #[test]
    fn unpack_caps_size_and_entries() {
        let big = vec![0u8; (MAX_UNPACKED / 2 + 1) as usize];
        let err = try_unpack(&[("web/a", T::Regular, &big), ("web/b", T::Regular, &big)]);
        assert!(err.unwrap_err().contains("more than 50 MiB"));
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("web/{i}")).collect();
        let many: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), T::Regular, &b""[..]))
            .collect();
        assert!(try_unpack(&many)
            .unwrap_err()
            .contains("more than 10000 entries"));
    }
}
