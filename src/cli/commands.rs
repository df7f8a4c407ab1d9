//! The offline and push-mode commands (`validate`, `build`, `plan`, `apply`,
//! `get`): reading (and rendering) the manifests, and printing what the engine in [`crate::push`]
//! reports. Exit codes: 0 fine, 1 error, 2 (`plan` only) changes pending.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::crds;
use crate::decrypt::{self, Identities};
use crate::manifests::{self, validate, Manifest, ManifestError};
use crate::push::{Options, Progress, Stack, Step};
use crate::render::{self, Local};

/// The objects under `paths`: kustomizations and charts rendered, plain
/// files read as they are, SOPS-encrypted objects decrypted. Every problem
/// is reported; also returns how many files (or renders) were read.
pub(crate) async fn load(
    paths: &[PathBuf],
    render: &Local,
) -> (Vec<Manifest>, Vec<ManifestError>, usize) {
    load_masked(paths, render, false).await
}

/// [`load`], with the values of decrypted Secrets shown as `**SOPS**` when
/// `mask` (what `build` prints: terminals and CI logs are not memory).
async fn load_masked(
    paths: &[PathBuf],
    render: &Local,
    mask: bool,
) -> (Vec<Manifest>, Vec<ManifestError>, usize) {
    let (mut out, written, errors, sources) = load_as_written(paths, render).await;
    if mask {
        for (m, encrypted) in out.iter_mut().zip(&written) {
            mask_values(&mut m.value, encrypted);
        }
    }
    (out, errors, sources)
}

/// [`load`], and each object's value as written, before decryption (in
/// the same order), where what SOPS encrypted is still `ENC[...]`.
pub(crate) async fn load_as_written(
    paths: &[PathBuf],
    render: &Local,
) -> (
    Vec<Manifest>,
    Vec<serde_json::Value>,
    Vec<ManifestError>,
    usize,
) {
    let (mut out, mut written, mut errors, mut sources) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let ids = match push_identities() {
        Ok(ids) => ids,
        Err(why) => {
            let at = manifests::Origin::file("SOPS_AGE_KEY / SOPS_AGE_KEY_FILE");
            return (out, written, vec![ManifestError::new(&at, why)], 0);
        }
    };
    let hint = "set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY) to an age identity file, as for sops";
    for path in paths {
        let loaded = match render::local(render, path).await {
            Some(Ok(rendered)) => {
                sources += 1;
                eprintln!(
                    "rendered {} with {}: {} objects ({} ms)",
                    path.display(),
                    rendered.renderer.name(),
                    rendered.manifests.len(),
                    rendered.took.as_millis()
                );
                rendered.manifests
            }
            Some(Err(e)) => {
                errors.push(e);
                continue;
            }
            None => {
                let (m, e) = manifests::load(std::slice::from_ref(path));
                sources += manifests::find_files(std::slice::from_ref(path)).map_or(0, |f| f.len());
                errors.extend(e);
                m
            }
        };
        // Origins are paths as the user names them: relative to here.
        let before: Vec<serde_json::Value> = loaded.iter().map(|m| m.value.clone()).collect();
        match decrypt::manifests(loaded, Path::new(""), ids.as_ref(), hint) {
            Ok(decrypted) => {
                out.extend(decrypted);
                written.extend(before);
            }
            Err(e) => errors.push(e),
        }
    }
    (out, written, errors, sources)
}

/// A decrypted object as `build` prints it: every value that was
/// encrypted (`ENC[...]` in `encrypted`) shown as `**SOPS**`, as `flux
/// build` does.
pub(crate) fn mask_values(value: &mut serde_json::Value, encrypted: &serde_json::Value) {
    use serde_json::Value;
    match (value, encrypted) {
        (Value::Object(map), Value::Object(enc)) => {
            for (k, v) in map.iter_mut() {
                if let Some(e) = enc.get(k) {
                    mask_values(v, e);
                }
            }
        }
        (Value::Array(items), Value::Array(enc)) => {
            for (v, e) in items.iter_mut().zip(enc) {
                mask_values(v, e);
            }
        }
        (v, Value::String(e)) if e.starts_with("ENC[") => *v = "**SOPS**".into(),
        _ => {}
    }
}

/// sops' own ways to give age identities: `SOPS_AGE_KEY` (the text),
/// `SOPS_AGE_KEY_FILE`, else its default `$XDG_CONFIG_HOME/sops/age/keys.txt`
/// (`~/.config/...`) when that exists. `None` when none is given.
pub(crate) fn push_identities() -> Result<Option<Identities>, String> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(text) = var("SOPS_AGE_KEY") {
        return Identities::from_text("SOPS_AGE_KEY", &text.to_string_lossy()).map(Some);
    }
    let (file, source) = match var("SOPS_AGE_KEY_FILE") {
        Some(f) => (PathBuf::from(f), "SOPS_AGE_KEY_FILE"),
        None => {
            let config = var("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
            match config.map(|c| c.join("sops/age/keys.txt")) {
                Some(f) if f.is_file() => (f, "sops' default age key file"),
                _ => return Ok(None),
            }
        }
    };
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("{source} {}: {e}", file.display()))?;
    Identities::from_text(&format!("{source} {}", file.display()), &text).map(Some)
}

/// Loads and validates the manifests under `paths`, printing every problem.
/// `None` when there was any.
async fn load_valid(paths: &[PathBuf], render: &Local, quiet: bool) -> Option<Vec<Manifest>> {
    let started = Instant::now();
    let (manifests, mut errors, sources) = load(paths, render).await;
    errors.extend(validate::validate(&manifests, &crds::all()));
    for e in &errors {
        println!("{e}");
    }
    let summary = format!(
        "{} objects from {} files or renders, {} errors ({} ms)",
        manifests.len(),
        sources,
        errors.len(),
        started.elapsed().as_millis()
    );
    if errors.is_empty() {
        if !quiet {
            eprintln!("valid: {summary}");
        }
        Some(manifests)
    } else {
        eprintln!("invalid: {summary}");
        None
    }
}

pub async fn validate(paths: &[PathBuf], render: &Local) -> ExitCode {
    match load_valid(paths, render, false).await {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

/// `driftless build`: the objects under `paths` as YAML, rendered (like
/// `kustomize build` or `helm template`), without validating them.
pub async fn build(paths: &[PathBuf], render: &Local) -> ExitCode {
    let (manifests, errors, _) = load_masked(paths, render, true).await;
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    for m in &manifests {
        let yaml = match serde_saphyr::to_string(&m.value) {
            Ok(yaml) => yaml,
            Err(e) => {
                eprintln!("driftless: {}: cannot print as YAML: {e}", m.origin);
                return ExitCode::FAILURE;
            }
        };
        // A closed pipe (`| head`) ends the output quietly.
        if write!(out, "---\n{yaml}").is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

async fn stack(paths: &[PathBuf], render: &Local, options: Options) -> Option<Stack> {
    let manifests = load_valid(paths, render, true).await?;
    match Stack::new(&manifests, options) {
        Ok(stack) => {
            let others = manifests.len() - stack.len();
            if others > 0 {
                let managed = stack.kinds();
                let mut kinds: Vec<&str> = manifests
                    .iter()
                    .map(Manifest::kind)
                    .filter(|k| !managed.contains(*k))
                    .collect();
                kinds.sort();
                kinds.dedup();
                eprintln!(
                    "note: {others} of {} objects are not cloud resources and are left to a cluster (GitSync or kubectl): {}",
                    manifests.len(),
                    kinds.join(", ")
                );
            }
            Some(stack)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("driftless: {e}");
            }
            None
        }
    }
}

pub async fn plan(paths: &[PathBuf], render: &Local, options: Options, prune: bool) -> ExitCode {
    let name = options.stack.clone();
    let Some(stack) = stack(paths, render, options).await else {
        return ExitCode::FAILURE;
    };
    let steps = stack.plan(prune).await;
    let (mut create, mut update, mut delete, mut unchanged, mut failed) = (0, 0, 0, 0, 0);
    println!("stack {name}: {} objects", stack.len());
    for (key, step) in &steps {
        match step {
            Ok(Step::Create { after }) if after.is_empty() => {
                create += 1;
                println!("  + {key}: create");
            }
            Ok(Step::Create { after }) => {
                create += 1;
                let after: Vec<String> = after.iter().map(ToString::to_string).collect();
                println!("  + {key}: create (after {})", after.join(", "));
            }
            Ok(Step::Update(diff)) => {
                update += 1;
                println!("  ~ {key}: update");
                for d in diff {
                    println!("      {d}");
                }
            }
            Ok(Step::Unchanged) => {
                unchanged += 1;
                println!("  = {key}: up to date");
            }
            Ok(Step::Skipped(why)) => {
                unchanged += 1;
                println!("  = {key}: {why}");
            }
            Ok(Step::Delete {
                external_name,
                orphan: true,
            }) => {
                unchanged += 1;
                println!("  = {key}: no longer declared; {external_name} is kept (deletionPolicy: Orphan)");
            }
            Ok(Step::Delete {
                external_name,
                orphan: false,
            }) => {
                delete += 1;
                println!("  - {key}: delete {external_name} (no longer declared)");
            }
            Err(e) => {
                failed += 1;
                println!("  ! {key}: {e}");
            }
        }
    }
    println!(
        "plan: {create} to create, {update} to update, {delete} to delete, {unchanged} unchanged, {failed} errors ({} cloud API calls)",
        stack.cloud_calls()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else if create + update + delete > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn apply(paths: &[PathBuf], render: &Local, options: Options, prune: bool) -> ExitCode {
    let name = options.stack.clone();
    let Some(stack) = stack(paths, render, options).await else {
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    eprintln!("applying stack {name}: {} objects", stack.len());
    let report = |p: Progress| {
        let width = p.total.to_string().len();
        match p.outcome {
            Ok((what, id)) => eprintln!(
                "[{:>width$}/{}] {what:<9} {} ({id}, {:.1} s)",
                p.done,
                p.total,
                p.key,
                p.elapsed.as_secs_f64()
            ),
            Err(e) => eprintln!("[{:>width$}/{}] FAILED    {}: {e}", p.done, p.total, p.key),
        }
    };
    let results = stack.apply(prune, &report).await;
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut failures = Vec::new();
    for (key, r) in &results {
        match r {
            Ok(what) => *counts.entry(what).or_default() += 1,
            Err(e) => failures.push(format!("  {key}: {e}")),
        }
    }
    let mut summary: Vec<String> = counts
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    summary.push(format!("{} failed", failures.len()));
    println!(
        "apply: {} ({:.1} s, {} cloud API calls)",
        summary.join(", "),
        started.elapsed().as_secs_f64(),
        stack.cloud_calls()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed:");
        for f in &failures {
            println!("{f}");
        }
        ExitCode::FAILURE
    }
}

pub async fn get(options: Options) -> ExitCode {
    let name = options.stack.clone();
    let stack = match Stack::new(&[], options) {
        Ok(stack) => stack,
        Err(errors) => {
            for e in errors {
                eprintln!("driftless: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match stack.get().await {
        Ok(rows) if rows.is_empty() => {
            eprintln!("no resources in stack {name}");
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            let table: Vec<[String; 5]> = rows
                .into_iter()
                .map(|(key, owned)| {
                    [
                        key.kind,
                        format!("{}/{}", key.namespace, key.name),
                        if owned.ready { "True" } else { "False" }.to_string(),
                        owned.external_name,
                        owned.state,
                    ]
                })
                .collect();
            print_table(["KIND", "NAME", "READY", "EXTERNAL-NAME", "STATE"], &table);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("driftless: listing stack {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Columns padded like `kubectl get`.
fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
