//! What one revision (or one `validate` run) may cost: the limits every
//! reader checks, set once per process ([`set`], from the command line)
//! and read where they are enforced ([`get`]): the checkout and the file
//! readers check sizes before reading, the YAML reader checks depth and
//! alias expansion while it builds, the loader counts objects.

use std::sync::RwLock;

/// The limits. Defaults fit a controller under a 256 MiB memory limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one file (checked before it is read).
    pub max_file_size: u64,
    /// Bytes of one revision: every file checked out (or read by `validate`).
    pub max_revision_size: u64,
    /// Files of one revision: its checkout, or the YAML files `validate` reads.
    pub max_files: usize,
    /// Objects of one revision (after rendering).
    pub max_objects: usize,
    /// Nesting depth of one YAML document (mappings and sequences).
    pub max_yaml_depth: usize,
    /// Nodes copied by anchors and aliases while reading one revision.
    pub max_alias_expansion: usize,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: 8 * MIB,
            max_revision_size: 64 * MIB,
            max_files: 10_000,
            max_objects: 10_000,
            max_yaml_depth: 100,
            max_alias_expansion: 100_000,
        }
    }
}

static LIMITS: RwLock<Option<Limits>> = RwLock::new(None);

/// The limits of this process (the defaults unless [`set`]).
pub fn get() -> Limits {
    LIMITS.read().expect("limits poisoned").unwrap_or_default()
}

/// Sets the limits of this process (once, at start).
pub fn set(limits: Limits) {
    *LIMITS.write().expect("limits poisoned") = Some(limits);
}

/// The message for a revision of more than `max` files.
pub fn too_many_files(max: usize) -> String {
    format!("the revision has more than {max} files (the limit of --max-files); refused")
}

/// `8 MiB`, `64 MiB`, `512 bytes`: a size for a message.
pub fn size(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Parses `8MiB`, `64Mi`, `512KiB`, `1G`, `1000000`: a size flag.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 8MiB, 512KiB, 1000000)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" | "kb" => 1024,
        "m" | "mi" | "mib" | "mb" => MIB,
        "g" | "gi" | "gib" | "gb" => 1024 * MIB,
        _ => {
            return Err(format!(
                "invalid size {s:?} (examples: 8MiB, 512KiB, 1000000)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 * MIB);
        assert_eq!(parse_size("512Ki").unwrap(), 512 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert_eq!(size(8 * MIB), "8 MiB");
        assert_eq!(size(100), "100 bytes");
    }
}
