//! The helm renderer: `helm template` of a chart (in the repository, or
//! fetched from a Helm repository), as a sandboxed child process, with the
//! cluster's version and API versions so `.Capabilities` is right.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chart_repo::ChartSource;
use super::process::{self, TempDir, Tool};
use super::{confined, repo_relative, Request};
use crate::manifests::{self, Manifest, ManifestError, Origin};

/// `spec.helm` of a GitSync: how a chart is rendered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmOptions {
    /// The release name (default: the GitSync's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53))]
    pub release_name: Option<String>,
    /// Values files, relative to the chart, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values, applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub values: Option<Value>,
    /// Render the chart's `crds/` (default true; CRDs are applied first).
    #[serde(
        default,
        rename = "includeCRDs",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_crds: Option<bool>,
    /// Leave out the chart's test hooks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_tests: bool,
    /// A chart from a Helm repository instead of the GitSync's path (the
    /// path then holds only the values files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartSource>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// What helm is told of the cluster (`.Capabilities`).
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    /// e.g. `v1.33.0`; helm's own default when unknown (no cluster).
    pub kube_version: Option<String>,
    /// `group/version` and `group/version/Kind` of everything served.
    pub api_versions: Vec<String>,
}

/// Renders the chart of `req` with helm.
pub async fn render(tool: &Tool, req: &Request<'_>) -> Result<Vec<Manifest>, ManifestError> {
    let values_dir = req.root.join(req.path);
    let chart = req
        .chart_dir
        .map_or_else(|| values_dir.clone(), Path::to_path_buf);
    // Files in messages: repository paths, or `<chart name>/...` for a fetched chart.
    let shown = |p: &Path| match req.chart_dir {
        Some(dir) if p.starts_with(dir) => repo_relative(dir.parent().unwrap_or(dir), p),
        _ => repo_relative(req.root, p),
    };
    let chart_file = Origin::file(shown(&chart.join("Chart.yaml")));
    let fail = |e: String| ManifestError::new(&chart_file, e);
    check_dependencies(&chart, &chart_file)?;
    let helm = req.helm.cloned().unwrap_or_default();
    let scratch = TempDir::new("helm-values").map_err(fail)?;
    let mut args: Vec<OsString> = vec![
        "template".into(),
        helm.release_name
            .as_deref()
            .unwrap_or(req.release_name)
            .into(),
        chart.as_os_str().to_owned(),
        "--namespace".into(),
        req.namespace.into(),
    ];
    for (i, file) in helm.values_files.iter().enumerate() {
        let path = confined(req.root, &values_dir, file)
            .map_err(|why| fail(format!("spec.helm.valuesFiles[{i}] {file}: {why}")))?;
        if !path.is_file() {
            return Err(fail(format!(
                "spec.helm.valuesFiles[{i}] {file}: no such file in the revision"
            )));
        }
        args.extend(["--values".into(), path.into_os_string()]);
    }
    if let Some(values) = &helm.values {
        let file = scratch.path().join("inline-values.json");
        std::fs::write(&file, values.to_string())
            .map_err(|e| fail(format!("cannot write the inline values: {e}")))?;
        args.extend(["--values".into(), file.into_os_string()]);
    }
    if helm.include_crds.unwrap_or(true) {
        args.push("--include-crds".into());
    }
    if helm.skip_tests {
        args.push("--skip-tests".into());
    }
    if let Some(caps) = req.capabilities {
        if let Some(v) = &caps.kube_version {
            args.extend(["--kube-version".into(), v.into()]);
        }
        for api in &caps.api_versions {
            args.extend(["--api-versions".into(), api.into()]);
        }
    }
    let out = process::run(tool, &args, scratch.path(), req.timeout, false)
        .await
        .map_err(|e| fail(tidy(&e, req.root, &chart)))?;
    let text = String::from_utf8(out).map_err(|_| fail("helm printed non-UTF-8 output".into()))?;
    let output = "helm template output";
    let sources = source_lines(&text);
    let objects = manifests::load_files(&[(output.to_string(), text.into_bytes())])?;
    let chart_dir = shown(&chart);
    Ok(objects
        .into_iter()
        .map(|m| {
            let file = source_of(&sources, m.origin.line).map_or_else(
                || chart_file.clone(),
                |s| Origin::file(in_chart(&chart_dir, s)),
            );
            Manifest::placed(file, m.value)
        })
        .collect())
}

/// Refuses a chart whose `Chart.yaml` lists dependencies that are not
/// vendored under `charts/` (rendering never downloads them).
fn check_dependencies(chart: &Path, chart_file: &Origin) -> Result<(), ManifestError> {
    let file = chart.join("Chart.yaml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ManifestError::new(chart_file, format!("cannot read the chart: {e}")))?;
    let docs = manifests::parse(&chart_file.file, &text)?;
    let Some(meta) = docs.first() else {
        return Err(ManifestError::new(chart_file, "Chart.yaml is empty"));
    };
    let deps = meta
        .value
        .get("dependencies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, dep) in deps.iter().enumerate() {
        let name = dep.get("name").and_then(Value::as_str).unwrap_or_default();
        if !vendored(&chart.join("charts"), name) {
            let (line, col) = meta.position(&format!("dependencies[{i}]"));
            let repo = dep.get("repository").and_then(Value::as_str).unwrap_or("?");
            let why = format!(
                "dependency {name} (from {repo}) is not vendored under charts/: run `helm dependency build` and commit charts/ (driftless never downloads dependencies while rendering)"
            );
            return Err(ManifestError::new(
                &Origin::at(&chart_file.file, line, col),
                why,
            ));
        }
    }
    Ok(())
}

/// Whether `charts/` holds dependency `name`: a directory, or a packaged
/// `name-<version>.tgz`.
fn vendored(charts: &Path, name: &str) -> bool {
    if charts.join(name).join("Chart.yaml").is_file() {
        return true;
    }
    let prefix = format!("{name}-");
    std::fs::read_dir(charts).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(".tgz")
        })
    })
}

/// The `# Source: chart/templates/x.yaml` comments of helm's output, by line.
fn source_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| Some((i + 1, l.strip_prefix("# Source: ")?.trim().to_string())))
        .collect()
}

/// The template an object starting at `line` of the output came from.
fn source_of(sources: &[(usize, String)], line: usize) -> Option<&str> {
    sources
        .iter()
        .rev()
        .find(|(at, _)| *at <= line)
        .map(|(_, s)| s.as_str())
}

/// `web/templates/cm.yaml` (helm names files from the chart's name) as a
/// path under the chart's directory.
fn in_chart(chart_dir: &str, source: &str) -> PathBuf {
    let within = source.split_once('/').map_or(source, |(_, rest)| rest);
    Path::new(chart_dir).join(within)
}

/// A helm message with the checkout's path shown as the repository root.
fn tidy(message: &str, root: &Path, chart: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let chart_parent = chart.parent().unwrap_or(chart);
    message
        .replace(&format!("{}/", root.display()), "")
        .replace(&format!("{}/", chart_parent.display()), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_traced_to_their_templates() {
        let out = "---\n# Source: web/crds/crd.yaml\nkind: A\n---\n# Source: web/templates/cm.yaml\nkind: B\n";
        let s = source_lines(out);
        assert_eq!(source_of(&s, 3), Some("web/crds/crd.yaml"));
        assert_eq!(source_of(&s, 6), Some("web/templates/cm.yaml"));
        assert_eq!(source_of(&s, 1), None);
        assert_eq!(
            in_chart("charts/web", "web/charts/sub/templates/a.yaml"),
            PathBuf::from("charts/web/charts/sub/templates/a.yaml")
        );
    }

    #[test]
    fn options_use_helms_field_names() {
        let o: HelmOptions = serde_json::from_value(serde_json::json!({
            "releaseName": "r", "valuesFiles": ["a.yaml"], "values": {"x": 1},
            "includeCRDs": false, "skipTests": true
        }))
        .unwrap();
        assert_eq!(o.include_crds, Some(false));
        assert!(o.skip_tests);
        assert_eq!(o.values_files, ["a.yaml"]);
    }
}
