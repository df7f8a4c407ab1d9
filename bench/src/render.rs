//! Render figures: `driftless build` of a kustomize overlay and of a chart
//! next to the bare `kustomize build` / `helm template` of the same input
//! (whole processes, the median of several runs), and commit -> applied for
//! a GitSync whose path is an overlay.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::git;

/// A base of `n` objects (ConfigMaps and Deployments) in namespace `ns`,
/// and an overlay with namePrefix, images, a patch and a generator.
pub fn overlay(dir: &Path, ns: &str, n: usize, value: &str) -> anyhow::Result<PathBuf> {
    let base = dir.join("base");
    std::fs::create_dir_all(&base)?;
    let mut names = Vec::new();
    for i in 0..n.saturating_sub(1) {
        let file = format!("object-{i:03}.yaml");
        let text = if i % 3 == 0 {
            deployment(&format!("web-{i}"))
        } else {
            git::config_map(ns, &format!("cm-{i}"), value)
        };
        std::fs::write(base.join(&file), text)?;
        names.push(file);
    }
    std::fs::write(
        base.join("kustomization.yaml"),
        format!("resources:\n{}", list(&names)),
    )?;
    let prod = dir.join("prod");
    std::fs::create_dir_all(&prod)?;
    std::fs::write(
        prod.join("kustomization.yaml"),
        format!(
            "namespace: {ns}
namePrefix: prod-
resources: [../base]
images:
- name: nginx
  newTag: \"1.27\"
configMapGenerator:
- name: generated
  literals: [value={value}]
patches:
- target: {{kind: Deployment}}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 2
"
        ),
    )?;
    Ok(prod)
}

/// A chart of `n` templates.
pub fn chart(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let chart = dir.join("web");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    )?;
    std::fs::write(chart.join("values.yaml"), "replicas: 2\ntag: \"1.27\"\n")?;
    for i in 0..n {
        let text = if i % 3 == 0 {
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web-IDX\nspec:\n  replicas: {{ .Values.replicas }}\n  selector: {matchLabels: {app: web-IDX}}\n  template:\n    metadata: {labels: {app: web-IDX}}\n    spec:\n      containers:\n      - name: web\n        image: \"nginx:{{ .Values.tag }}\"\n"
        } else {
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm-IDX\ndata:\n  value: {{ .Values.tag | quote }}\n"
        };
        std::fs::write(
            chart.join(format!("templates/object-{i:03}.yaml")),
            text.replace("IDX", &i.to_string()),
        )?;
    }
    Ok(chart)
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n"
    )
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("- {i}\n")).collect()
}

/// The median wall time of `runs` runs of `program args...` (its output
/// discarded), after one warm-up run.
pub fn median_run(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    runs: usize,
) -> anyhow::Result<Duration> {
    let once = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(started.elapsed())
    };
    once()?;
    let mut times = (0..runs)
        .map(|_| once())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// A tool's binary from `DRIFTLESS_<NAME>_BINARY` (bench/run sets them
/// with tools/fetch).
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let var = format!("DRIFTLESS_{}_BINARY", name.to_uppercase());
    std::env::var_os(&var).map(PathBuf::from).with_context(|| {
        format!(
            "{var} is not set: run `eval \"$(tools/fetch kustomize helm)\"` first (bench/run does)"
        )
    })
}

/// The median time of `runs` in-process renders of `path` under `root`, as
/// the controller renders a revision (after one warm-up).
pub async fn median_in_process(root: &Path, path: &str, runs: usize) -> anyhow::Result<Duration> {
    let tool = |name: &'static str| -> anyhow::Result<driftless::render::Tool> {
        Ok(driftless::render::Tool {
            name,
            binary: self::tool(name)?,
        })
    };
    let tools = driftless::render::Tools {
        kustomize: tool("kustomize")?,
        helm: tool("helm")?,
        allow_remote_bases: false,
    };
    let request = driftless::render::Request {
        root,
        path,
        helm: None,
        release_name: "web",
        namespace: "bench",
        timeout: Duration::from_secs(60),
        capabilities: None,
        chart_dir: None,
    };
    let mut times = Vec::new();
    for i in 0..=runs {
        let started = Instant::now();
        driftless::render::render(&tools, &request)
            .await
            .map_err(|e| anyhow::anyhow!("rendering {path}: {e}"))?;
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}
