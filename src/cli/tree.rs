//! `driftless tree`: a GitSync or a managed resource and everything under
//! it, with health, as the cluster has it now (or redrawn on change).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use crate::tree::{self, Node, Root};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `TARGET` (`gitsync/NAME` or `KIND/NAME`) in namespace `ns`.
pub fn root(target: &str, ns: &str) -> Result<Root, String> {
    let Some((kind, name)) = target.split_once('/') else {
        return Err(format!(
            "{target:?}: give gitsync/NAME or KIND/NAME (e.g. instance/web-1)"
        ));
    };
    if kind.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("{target:?}: expected KIND/NAME"));
    }
    let (namespace, name) = (ns.to_string(), name.to_string());
    Ok(match kind.to_ascii_lowercase().as_str() {
        "gitsync" | "gitsyncs" => Root::GitSync { namespace, name },
        _ => Root::Managed {
            kind: kind.to_string(),
            namespace,
            name,
        },
    })
}

/// Prints the tree once (exit 0 when all of it is healthy, 1 when not, 2
/// on an error), or with `watch` every `interval` when it changed.
pub async fn command(
    client: &kube::Client,
    root: &Root,
    format: Format,
    watch: Option<Duration>,
) -> ExitCode {
    let mut last = String::new();
    loop {
        let (text, code) = match tree::read(client, root).await {
            Ok(node) => (render(&node, format), u8::from(!node.all_healthy())),
            Err(e) => (format!("driftless tree: {e}\n"), 2),
        };
        let Some(interval) = watch else {
            match code {
                2 => eprint!("{text}"),
                _ => print!("{text}"),
            }
            return ExitCode::from(code);
        };
        if text != last {
            redraw(&text, format);
            last = text;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::from(code),
        }
    }
}

/// On a terminal the screen is cleared first; otherwise each change is
/// printed after the last, with the time.
fn redraw(text: &str, format: Format) {
    if std::io::stdout().is_terminal() {
        print!("\x1b[H\x1b[2J{text}");
    } else if format == Format::Json {
        print!("{text}");
    } else {
        let now = k8s_openapi::jiff::Timestamp::now();
        print!("--- {}\n{text}", now.strftime("%Y-%m-%dT%H:%M:%SZ"));
    }
}

fn render(node: &Node, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string(node).expect("a tree serializes");
            s.push('\n');
            s
        }
        Format::Text => {
            let mut out = format!("{}\n", line(node));
            children(node, "", &mut out);
            out
        }
    }
}

/// A node's children: stages (their objects below), then references.
fn children(node: &Node, prefix: &str, out: &mut String) {
    let stages = node.stages.iter().map(Child::Stage);
    let refs = node.references.iter().map(Child::Node);
    let all: Vec<Child> = stages.chain(refs).collect();
    for (i, child) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        let (branch, next) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let inner = format!("{prefix}{next}");
        match child {
            Child::Stage(s) => {
                out.push_str(&format!("{prefix}{branch}{}\n", s.name));
                for (j, o) in s.objects.iter().enumerate() {
                    let last = j + 1 == s.objects.len();
                    let (b, n) = if last {
                        ("└── ", "    ")
                    } else {
                        ("├── ", "│   ")
                    };
                    out.push_str(&format!("{inner}{b}{}\n", line(o)));
                    children(o, &format!("{inner}{n}"), out);
                }
            }
            Child::Node(n) => {
                out.push_str(&format!("{prefix}{branch}{}\n", line(n)));
                children(n, &inner, out);
            }
        }
    }
}

enum Child<'a> {
    Stage(&'a tree::Stage),
    Node(&'a Node),
}

/// `[via: ]Kind ns/name  Ready=… Synced=…  external-name  state  message`.
fn line(n: &Node) -> String {
    let mut parts = vec![match &n.via {
        Some(field) => format!("{field}: {}", n.title()),
        None => n.title(),
    }];
    let conditions: Vec<String> = [("Ready", &n.ready), ("Synced", &n.synced)]
        .into_iter()
        .filter_map(|(t, s)| s.as_ref().map(|s| format!("{t}={s}")))
        .collect();
    if conditions.is_empty() {
        parts.push(if n.healthy { "healthy" } else { "not healthy" }.into());
    } else {
        parts.push(conditions.join(" "));
    }
    parts.extend(n.revision.clone());
    parts.extend(n.external_name.clone());
    parts.extend(n.cloud_state.clone());
    if let Some(m) = n.message.as_ref().filter(|m| !m.is_empty()) {
        parts.push(m.clone());
    }
    parts.join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &str, name: &str, healthy: bool) -> Node {
        let mut n = Node::missing("v1", kind, "ns", name, "");
        n.healthy = healthy;
        n.message = None;
        n
    }

    #[test]
    fn stages_then_references_are_drawn_as_a_tree() {
        let mut vpc = node("Vpc", "main", true);
        vpc.ready = Some("True".into());
        vpc.synced = Some("True".into());
        vpc.external_name = Some("vpc-1".into());
        vpc.cloud_state = Some("available".into());
        vpc.via = Some("vpcId".into());
        let mut subnet = node("Subnet", "a", true);
        subnet.references.push(vpc);
        let mut root = node("GitSync", "apps", true);
        root.stages = vec![
            tree::Stage {
                name: "Namespaces and CRDs".into(),
                objects: vec![node("Namespace", "ns", true)],
            },
            tree::Stage {
                name: "Objects".into(),
                objects: vec![subnet, node("ConfigMap", "c", false)],
            },
        ];
        let text = render(&root, Format::Text);
        let expected = "\
GitSync ns/apps  healthy
├── Namespaces and CRDs
│   └── Namespace ns/ns  healthy
└── Objects
    ├── Subnet ns/a  healthy
    │   └── vpcId: Vpc ns/main  Ready=True Synced=True  vpc-1  available
    └── ConfigMap ns/c  not healthy
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_target_is_kind_slash_name() {
        assert!(matches!(
            root("gitsync/apps", "x"),
            Ok(Root::GitSync { .. })
        ));
        assert!(matches!(
            root("Instance/web", "x"),
            Ok(Root::Managed { .. })
        ));
        assert!(root("apps", "x").unwrap_err().contains("gitsync/NAME"));
    }
}
