//! The pinned external tools (tools/versions) run and are the pinned versions:
//! CI renders and encrypts with exactly these.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::{repo_root, tool, tool_var};

/// Binary name -> (its tool's pinned version, the binary's pinned sha256).
fn pins() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(repo_root().join("tools/versions")).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 5 && !f[0].starts_with('#'))
        .collect();
    let version: BTreeMap<&str, &str> = lines
        .iter()
        .filter(|f| f[0] != "bin")
        .map(|f| (f[0], f[1]))
        .collect();
    lines
        .iter()
        .filter(|f| f[0] == "bin")
        .map(|f| {
            let v = version.get(f[1]).expect("a bin line names a pinned tool");
            (f[2].to_string(), (v.to_string(), f[4].to_string()))
        })
        .collect()
}

fn run(name: &str, args: &[&str]) -> String {
    let bin = tool(name);
    let out = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} ({}): {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}): {text}",
        out.status
    );
    text
}

fn sha256(name: &str) -> String {
    let out = Command::new("sha256sum").arg(tool(name)).output().unwrap();
    assert!(out.status.success(), "sha256sum of {name}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn pinned_tools_run_and_report_their_versions() {
    let pins = pins();
    let names = ["kustomize", "helm", "sops", "age", "age-keygen"];
    let mut pinned: Vec<&str> = pins.keys().map(String::as_str).collect();
    let mut expected = names.to_vec();
    pinned.sort_unstable();
    expected.sort_unstable();
    assert_eq!(pinned, expected, "the binaries tools/versions pins");
    for name in names {
        let (version, bin_sha) = &pins[name];
        let (args, want): (&[&str], String) = match name {
            "kustomize" => (&["version"], format!("v{version}")),
            "helm" => (&["version"], format!("Version:\"v{version}\"")),
            "sops" => (
                &["--version", "--disable-version-check"],
                format!("sops {version}"),
            ),
            _ => (&["--version"], version.clone()),
        };
        let said = run(name, args);
        let said = said.trim();
        if name == "kustomize" && said == "(devel)" {
            // Debian builds kustomize without the release's version stamp:
            // then it must be exactly the binary tools/versions pins.
            assert_eq!(
                &sha256(name),
                bin_sha,
                "kustomize says (devel) and is not the pinned Debian build ({}={})",
                tool_var(name),
                tool(name).display()
            );
            continue;
        }
        assert!(
            said.lines().any(|l| match name {
                "helm" => l.contains(want.as_str()),
                _ => l.trim() == want,
            }),
            "{name} {args:?} said {said:?}, expected {want:?} ({}={})",
            tool_var(name),
            tool(name).display()
        );
    }
}
