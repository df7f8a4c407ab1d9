//! Tells the crate which compiler built it (`driftless_build_info`'s
//! `rustc` label). Runs again only when this file changes: a new compiler
//! rebuilds everything anyway. The Git commit is not read here (it would
//! rebuild the crate on every commit); builds that want it set
//! `DRIFTLESS_GIT_SHA` (see deploy/Dockerfile).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        // "rustc 1.95.0 (59807616e 2026-04-14)" -> "1.95.0"
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DRIFTLESS_RUSTC_VERSION={version}");
}
