//! What `kubectl apply -k deploy/` (or `deploy/lockdown`) installs, rendered
//! in the binary: the CRDs from the Rust types, `deploy/base`'s files and
//! the kustomizations' `images:` and `patches:`, embedded at build time, so
//! that `driftless bootstrap` works anywhere, without kustomize or the
//! source tree. The integration test `bootstrap::embedded_install_is_what_kustomize_builds`
//! compares this with `kustomize build` of both.

use serde_json::Value;

use crate::cli::crds;

/// `deploy/base/kustomization.yaml`.
const BASE: &str = include_str!("../../../deploy/base/kustomization.yaml");
/// `deploy/lockdown/kustomization.yaml`.
const LOCKDOWN: &str = include_str!("../../../deploy/lockdown/kustomization.yaml");
/// The CRDs, as `deploy/base` names them (generated: [`crds::all`]).
const CRDS: &str = "../../crds";
/// `deploy/base`'s own files, as its kustomization lists them.
const BASE_FILES: [(&str, &str); 4] = [
    (
        "namespace.yaml",
        include_str!("../../../deploy/base/namespace.yaml"),
    ),
    ("rbac.yaml", include_str!("../../../deploy/base/rbac.yaml")),
    (
        "deployment.yaml",
        include_str!("../../../deploy/base/deployment.yaml"),
    ),
    (
        "service.yaml",
        include_str!("../../../deploy/base/service.yaml"),
    ),
];
/// The files `deploy/lockdown`'s patches name by `path`.
const LOCKDOWN_FILES: [(&str, &str); 1] = [(
    "clusterrole.yaml",
    include_str!("../../../deploy/lockdown/clusterrole.yaml"),
)];

/// Every object of the install, in the order `deploy/base` lists them
/// (CRDs and the Namespace first). `lockdown`: `deploy/lockdown` instead.
pub fn objects(lockdown: bool) -> Result<Vec<Value>, String> {
    let base = yaml("deploy/base/kustomization.yaml", BASE)?;
    let mut out = Vec::new();
    for resource in strings(&base["resources"]) {
        if resource == CRDS {
            for crd in crds::all() {
                out.push(serde_json::to_value(crd).expect("a CRD serializes"));
            }
            continue;
        }
        let (_, text) = BASE_FILES
            .iter()
            .find(|(name, _)| *name == resource)
            .ok_or_else(|| format!("deploy/base lists {resource}, which is not embedded"))?;
        out.extend(documents(&format!("deploy/base/{resource}"), text)?);
    }
    for image in base["images"].as_array().into_iter().flatten() {
        set_image(&mut out, image);
    }
    if lockdown {
        let overlay = yaml("deploy/lockdown/kustomization.yaml", LOCKDOWN)?;
        for patch in overlay["patches"].as_array().into_iter().flatten() {
            apply_patch(&mut out, patch)?;
        }
    }
    Ok(out)
}

fn yaml(file: &str, text: &str) -> Result<Value, String> {
    serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))
}

/// Every document of a multi-document YAML file.
fn documents(file: &str, text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| format!("{file}: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// kustomize's `images:` entry: every container image named `name` (with
/// or without a tag) becomes `newName:newTag` (or `@digest`).
fn set_image(objects: &mut [Value], image: &Value) {
    let Some(name) = image["name"].as_str() else {
        return;
    };
    for obj in objects.iter_mut() {
        // `get_mut`, not indexing: indexing would add the keys it misses.
        let Some(spec) = obj.pointer_mut("/spec/template/spec") else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in containers {
                let Some(current) = c["image"].as_str() else {
                    continue;
                };
                let (bare, tag) = split_image(current);
                if bare != name {
                    continue;
                }
                let new_name = image["newName"].as_str().unwrap_or(bare);
                let suffix = match (image["digest"].as_str(), image["newTag"].as_str()) {
                    (Some(d), _) => format!("@{d}"),
                    (None, Some(t)) => format!(":{t}"),
                    (None, None) => tag.to_string(),
                };
                c["image"] = Value::String(format!("{new_name}{suffix}"));
            }
        }
    }
}

/// `repo/name:tag` into (`repo/name`, `:tag`); a port is not a tag.
fn split_image(image: &str) -> (&str, &str) {
    if let Some(at) = image.find('@') {
        return (&image[..at], &image[at..]);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i..]),
        _ => (image, ""),
    }
}

/// One `patches:` entry of `deploy/lockdown`: an inline JSON 6902 patch, or
/// a file that replaces the target's top-level fields (what a strategic
/// merge does with `rules`, a list without a merge key).
fn apply_patch(objects: &mut [Value], patch: &Value) -> Result<(), String> {
    let (kind, name) = (
        patch["target"]["kind"].as_str(),
        patch["target"]["name"].as_str(),
    );
    let target = objects
        .iter_mut()
        .find(|o| o["kind"].as_str() == kind && o["metadata"]["name"].as_str() == name)
        .ok_or_else(|| format!("deploy/lockdown patches {kind:?} {name:?}, which is not there"))?;
    if let Some(ops) = patch["patch"].as_str() {
        let ops: json_patch::Patch = serde_json::from_value(yaml("deploy/lockdown patch", ops)?)
            .map_err(|e| format!("deploy/lockdown: a patch is not JSON 6902: {e}"))?;
        json_patch::patch(target, &ops).map_err(|e| format!("deploy/lockdown: {e}"))?;
    } else if let Some(path) = patch["path"].as_str() {
        let (_, text) = LOCKDOWN_FILES
            .iter()
            .find(|(p, _)| *p == path)
            .ok_or_else(|| format!("deploy/lockdown names {path}, which is not embedded"))?;
        let with = yaml(&format!("deploy/lockdown/{path}"), text)?;
        for (key, value) in with.as_object().into_iter().flatten() {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                target[key] = value.clone();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_set_from_the_kustomization() {
        let objects = objects(false).unwrap();
        let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            "ghcr.io/driftless-dev/driftless:v0.1.0"
        );
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", ""));
        assert_eq!(split_image("x:1"), ("x", ":1"));
    }

    #[test]
    fn lockdown_adds_the_default_service_account_and_its_role() {
        let base = objects(false).unwrap();
        let locked = objects(true).unwrap();
        assert_eq!(base.len(), locked.len());
        let args = |objs: &[Value]| {
            objs.iter().find(|o| o["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"]
                ["containers"][0]["args"]
                .clone()
        };
        assert_eq!(
            args(&locked),
            serde_json::json!([
                "controller",
                "--log-json",
                "--default-service-account=gitsync"
            ])
        );
        let role = |objs: &[Value]| {
            objs.iter().find(|o| o["kind"] == "ClusterRole").unwrap()["rules"].clone()
        };
        assert_ne!(role(&base), role(&locked));
    }
}
