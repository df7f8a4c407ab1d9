//! A diff report as text (a terminal, a CI log) or as Markdown (a
//! pull-request comment, one collapsible section per object).

use std::fmt::Write;

use super::{cloud, Action, Prune, Report};

/// The counts line: `1 to create, 2 to update, 1 to prune, 4 unchanged;
/// cloud: 1 to update (3 cloud API calls, 0 writes)`.
fn summary(r: &Report) -> String {
    let count = |a: Action| r.objects.iter().filter(|o| o.action == a).count();
    let cloud = |s: char| r.cloud.iter().filter(|l| l.sign == s).count();
    let mut cluster = format!(
        "{} to create, {} to update, {} to prune, {} unchanged",
        count(Action::Create),
        count(Action::Update),
        count(Action::Delete),
        r.unchanged
    );
    if !r.errors.is_empty() {
        let _ = write!(cluster, ", {} refused", r.errors.len());
    }
    let total: u64 = r.calls.values().sum();
    format!(
        "{cluster}; cloud: {} to create, {} to update, {} to delete ({total} cloud API calls, {} writes)",
        cloud('+'),
        cloud('~'),
        cloud('-'),
        r.cloud_writes()
    )
}

fn prune_note(p: &Prune) -> Vec<String> {
    match p {
        Prune::Unknown => vec![
            "prune: not shown (no --gitsync: which objects the GitSync applied is in its status.inventory)".into(),
        ],
        Prune::Off(stale) if stale.is_empty() => Vec::new(),
        Prune::Off(stale) => {
            let list: Vec<String> = stale.iter().map(ToString::to_string).collect();
            vec![format!(
                "prune: off (spec.prune: false): {} no longer in PATH stay(s) in the cluster: {}",
                stale.len(),
                list.join(", ")
            )]
        }
        Prune::On(kept) => kept
            .iter()
            .map(|(e, why)| format!("prune: {e} is kept: {why}"))
            .collect(),
    }
}

/// Objects with no change in the cloud plan are not worth a section.
fn cloud_lines(r: &Report) -> Vec<String> {
    r.cloud.iter().map(cloud::Line::to_string).collect()
}

fn title(o: &super::ObjectDiff) -> String {
    let mut t = format!("{} {}", o.action.sign(), o.entry);
    if let Some(origin) = &o.origin {
        let _ = write!(t, " ({origin})");
    }
    if o.action == Action::Delete {
        t.push_str(" (pruned: no longer in PATH)");
    }
    t
}

/// For a terminal or a CI log.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for o in &r.objects {
        let _ = writeln!(out, "{}", title(o));
        if let Some(note) = &o.note {
            let _ = writeln!(out, "  note: {note}");
        }
        out.push_str(&o.diff);
        out.push('\n');
    }
    for line in prune_note(&r.prune) {
        let _ = writeln!(out, "{line}");
    }
    if !r.cloud.is_empty() {
        out.push_str("cloud plan:\n");
        for l in cloud_lines(r) {
            let _ = writeln!(out, "  {}", l.replace('\n', "\n  "));
        }
    }
    for e in &r.errors {
        let _ = writeln!(out, "error: {e}");
    }
    let _ = writeln!(out, "diff: {}", summary(r));
    out
}

/// For a pull-request comment: a collapsible section per object.
pub fn markdown(r: &Report) -> String {
    let mut out = String::from("### driftless diff\n\n");
    let _ = writeln!(out, "{}\n", summary(r));
    if !r.cloud.is_empty() {
        out.push_str("**Cloud plan**\n\n```diff\n");
        for l in cloud_lines(r) {
            let _ = writeln!(out, "{l}");
        }
        out.push_str("```\n\n");
    }
    for o in &r.objects {
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code></summary>\n",
            escape(&title(o))
        );
        if let Some(note) = &o.note {
            let _ = writeln!(out, "{}\n", escape(note));
        }
        let _ = writeln!(out, "```diff\n{}```\n\n</details>\n", o.diff);
    }
    for line in prune_note(&r.prune) {
        let _ = writeln!(out, "- {}", escape(&line));
    }
    for e in &r.errors {
        let _ = writeln!(out, "- **error**: `{}`", e.replace('`', "'"));
    }
    if !r.has_changes() && r.errors.is_empty() {
        out.push_str("No difference.\n");
    }
    out
}

/// Text safe in Markdown's HTML parts.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
