//! Git faults (issue 21): a server that accepts and never answers (a
//! tarpit), a force-push that rewrites the applied history, and a git cache
//! whose objects were damaged on disk. Each test prints what it measured.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftless::gitsync::source::IO_TIMEOUT;
use driftless::gitsync::GitSync;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::gitsync::{
    condition, event_notes, new_gitsync, ready_at, rev, trigger, wait_gitsync, Repo,
};
use crate::support::{controller_command, http_request, wait_for, Owned, Scope};

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_secs(2);

/// A TCP server that accepts every connection and never writes a byte. It
/// reads (and drops) what the client sends, so it sees when the client
/// gives up and closes.
struct Tarpit {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    /// The most connections open at once.
    peak: Arc<AtomicUsize>,
    /// How long each closed connection was held open by the client.
    held: Arc<Mutex<Vec<Duration>>>,
    first: Arc<Mutex<Option<Instant>>>,
}

impl Tarpit {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tarpit = Self {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            live: Arc::default(),
            peak: Arc::default(),
            held: Arc::default(),
            first: Arc::default(),
        };
        let (accepted, live, peak, held, first) = (
            tarpit.accepted.clone(),
            tarpit.live.clone(),
            tarpit.peak.clone(),
            tarpit.held.clone(),
            tarpit.first.clone(),
        );
        // Lives as long as the test process: it only ever holds sockets.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let since = Instant::now();
                first.lock().unwrap().get_or_insert(since);
                accepted.fetch_add(1, Ordering::SeqCst);
                let now_live = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_live, Ordering::SeqCst);
                let (live, held) = (live.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    live.fetch_sub(1, Ordering::SeqCst);
                    held.lock().unwrap().push(since.elapsed());
                });
            }
        });
        tarpit
    }
}

/// The address the controller logged for its HTTP server (`--log-json`).
pub(crate) async fn controller_addr(log: &Path) -> SocketAddr {
    wait_for("the controller's HTTP address", WAIT, || async {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let fields = v.get("fields")?;
            let message = fields.get("message")?.as_str()?;
            if !message.starts_with("serving /healthz") {
                return None;
            }
            fields.get("bound")?.as_str()?.parse().ok()
        })
    })
    .await
}

/// Finished passes of GitSync `ns/name`, from the controller's /metrics.
fn passes(addr: SocketAddr, ns: &str, name: &str) -> u64 {
    let (status, body) = http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200, "{body}");
    let series =
        format!("driftless_gitsync_duration_seconds_count{{namespace=\"{ns}\",name=\"{name}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// A GitSync whose server accepts and never answers: FetchFailed within
/// spec.timeout + 5 s; the abandoned fetch really ends (the server timeout
/// closes its connection) and no second fetch of that cache starts while it
/// runs; over 20 passes the controller's thread count does not grow.
#[tokio::test]
async fn a_tarpit_fails_the_fetch_in_time_and_leaks_no_threads() {
    let scope = Scope::new("tarpit").await;
    let tarpit = Tarpit::start();
    let cache = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let controller = controller_command(&scope.ns)
        .args(["--log-json", "--poll-interval", "2s", "--git-cache"])
        .arg(cache.path())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(Owned)
        .unwrap();
    let pid = controller.0.id();
    let addr = controller_addr(log.path()).await;
    let gitsyncs: Api<GitSync> = scope.api();
    let timeout = Duration::from_secs(5);
    let url = format!("http://{}/team/platform.git", tarpit.addr);
    let gs = new_gitsync("tarpit", &url, json!({"interval": "1s", "timeout": "5s"}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    let failed = wait_gitsync(&gitsyncs, "tarpit", "FetchFailed", WAIT, |g| {
        condition(g, "Ready").is_some_and(|c| c.status == "False" && c.reason == "FetchFailed")
    })
    .await;
    let first_connect = tarpit
        .first
        .lock()
        .unwrap()
        .expect("the controller connected");
    let took = first_connect.elapsed();
    let message = condition(&failed, "Ready").unwrap().message.clone();
    eprintln!(
        "tarpit: FetchFailed {:.2}s after the controller connected (spec.timeout {timeout:?}): {message}",
        took.as_secs_f64()
    );
    assert!(
        took <= timeout + Duration::from_secs(5),
        "FetchFailed after {took:?}"
    );
    assert!(message.contains("took longer than 5s"), "{message}");

    // Twenty more passes (one a second): threads sampled at each.
    let start = passes(addr, &scope.ns, "tarpit");
    let threads_before = threads(pid);
    let mut most = threads_before;
    let began = Instant::now();
    let mut messages = std::collections::BTreeSet::new();
    for n in 1..=20 {
        wait_for("the next pass", WAIT, || async {
            (passes(addr, &scope.ns, "tarpit") >= start + n).then_some(())
        })
        .await;
        most = most.max(threads(pid));
        if let Some(c) = gitsyncs
            .get("tarpit")
            .await
            .ok()
            .as_ref()
            .and_then(|g| condition(g, "Ready").cloned())
        {
            assert_eq!(c.reason, "FetchFailed", "{c:?}");
            messages.insert(c.message);
        }
    }
    let threads_after = threads(pid);
    let held = tarpit.held.lock().unwrap().clone();
    let longest = held.iter().max().copied().unwrap_or_default();
    eprintln!(
        "tarpit: 20 passes in {:.1}s; controller threads {threads_before} before, {threads_after} after, at most {most}; \
         {} fetches connected, at most {} at once; {} connections closed by the controller, held at most {:.1}s (server timeout {IO_TIMEOUT:?})",
        began.elapsed().as_secs_f64(),
        tarpit.accepted.load(Ordering::SeqCst),
        tarpit.peak.load(Ordering::SeqCst),
        held.len(),
        longest.as_secs_f64()
    );
    for m in &messages {
        eprintln!("tarpit: message seen: {m}");
    }
    assert!(
        most <= threads_before + 2,
        "controller threads grew from {threads_before} to {most}"
    );
    assert_eq!(
        tarpit.peak.load(Ordering::SeqCst),
        1,
        "two fetches of one cache ran at once"
    );
    assert!(!held.is_empty(), "no abandoned fetch ever ended");
    assert!(
        longest <= IO_TIMEOUT + Duration::from_secs(5),
        "a fetch held its connection for {longest:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("still running")),
        "{messages:?}"
    );
}

/// A force-push of a rewritten history: the new revision is applied (Git
/// is the truth), a Warning Event HistoryRewritten names both commits, and
/// `status.lastHistoryRewrite` records it. A fast-forward says nothing.
#[tokio::test]
async fn a_force_push_is_applied_and_reported() {
    let mut scope = Scope::new("forcepush").await;
    scope.start_controller(POLL);
    let gitsyncs: Api<GitSync> = scope.api();
    let configmaps: Api<ConfigMap> = scope.api();
    let repo = Repo::new();
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{v: \"{v}\"}}\n")
    };
    repo.write("clusters/test/cm.yaml", &cm("1"));
    let c1 = repo.commit("one");
    let gs = new_gitsync("app", &repo.url(), json!({}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&gitsyncs, "app", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    repo.write("clusters/test/cm.yaml", &cm("2"));
    let c2 = repo.commit("two");
    trigger(&gitsyncs, "app").await;
    let fast_forward = wait_gitsync(&gitsyncs, "app", "Ready at c2", WAIT, |g| {
        ready_at(g, &rev(&c2))
    })
    .await;
    assert!(
        event_notes(&scope, "app", "HistoryRewritten")
            .await
            .is_empty(),
        "a fast-forward was reported as a rewrite"
    );
    assert!(fast_forward.status.unwrap().last_history_rewrite.is_none());

    // Rewrite: drop c2, commit c3 on c1, push --force.
    repo.git(&["reset", "-q", "--hard", &c1]);
    repo.write("clusters/test/cm.yaml", &cm("3"));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "three, rewritten"]);
    repo.git(&["push", "-q", "--force", "origin", "main"]);
    let c3 = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    let since = trigger(&gitsyncs, "app").await;
    let applied = wait_gitsync(&gitsyncs, "app", "Ready at c3", WAIT, |g| {
        ready_at(g, &rev(&c3))
    })
    .await;
    let took = since.elapsed();
    let data = configmaps.get("app").await.unwrap().data.unwrap();
    assert_eq!(data["v"], "3", "the rewritten revision was not applied");
    let notes = event_notes(&scope, "app", "HistoryRewritten").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(&c2) && notes[0].contains(&c3),
        "{}",
        notes[0]
    );
    let record = applied.status.unwrap().last_history_rewrite.unwrap();
    assert_eq!(
        (record.from.as_str(), record.to.as_str()),
        (rev(&c2).as_str(), rev(&c3).as_str())
    );
    eprintln!(
        "force-push: applied {:.2}s after the trigger; Event HistoryRewritten: {}; status.lastHistoryRewrite: {}",
        took.as_secs_f64(),
        notes[0],
        serde_json::to_string(&record).unwrap()
    );
}

/// The bare clone of GitSync `name` under the controller's git cache.
fn cache_of(root: &Path, ns: &str, name: &str) -> PathBuf {
    let dir = root.join(ns);
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("{name}-")) && n.ends_with(".git")
        })
        .unwrap_or_else(|| panic!("no cache of {name} in {}", dir.display()))
}

/// Damages every object file of the cache `dir` (packs overwritten with
/// garbage of the same size, loose objects cut in half), leaving HEAD,
/// config and refs: the repository still opens. Returns the files damaged.
fn corrupt(dir: &Path) -> usize {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&dir.join("objects"), &mut files);
    let mut damaged = 0;
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let len = std::fs::metadata(&f).unwrap().len() as usize;
        if name.ends_with(".pack") {
            std::fs::write(&f, vec![0x5a; len]).unwrap();
        } else if name.ends_with(".idx")
            || name.ends_with(".rev")
            || f.parent().unwrap().ends_with("info")
        {
            continue;
        } else {
            let keep = std::fs::read(&f).unwrap()[..len / 2].to_vec();
            std::fs::write(&f, keep).unwrap();
        }
        damaged += 1;
    }
    assert!(damaged > 0, "no object files in {}", dir.display());
    damaged
}

/// A git cache whose objects were damaged on disk (it still opens): the
/// next pass notices, deletes it, clones again and goes on, within one
/// interval, with a Warning Event CacheRecloned. Twice: with no new commit
/// (the applied commit cannot be read) and with a new one (its unchanged
/// files cannot be read).
#[tokio::test]
async fn a_corrupt_cache_is_recloned_within_an_interval() {
    let mut scope = Scope::new("corrupt").await;
    let root = std::env::temp_dir().join("driftless-tests").join(&scope.ns);
    let git_cache = root.clone();
    scope.start_controller_with(POLL, move |s| s.git_cache = git_cache);
    let gitsyncs: Api<GitSync> = scope.api();
    let configmaps: Api<ConfigMap> = scope.api();
    let repo = Repo::new();
    let cm = |name: &str, v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{v: \"{v}\"}}\n"
        )
    };
    repo.write("clusters/test/a.yaml", &cm("a", "1"));
    repo.write("clusters/test/b.yaml", &cm("b", "1"));
    let c1 = repo.commit("one");
    let interval = Duration::from_secs(10);
    let gs = new_gitsync("app", &repo.url(), json!({"interval": "10s"}));
    gitsyncs.create(&PostParams::default(), &gs).await.unwrap();
    wait_gitsync(&gitsyncs, "app", "Ready at c1", WAIT, |g| {
        ready_at(g, &rev(&c1))
    })
    .await;
    let cache = cache_of(&root, &scope.ns, "app");

    // 1. No new commit: the applied commit itself cannot be read.
    let files = corrupt(&cache);
    let since = Instant::now();
    let reclones = |n: usize| {
        let scope = &scope;
        async move {
            wait_for("a CacheRecloned Event", interval + WAIT, || async {
                let notes = event_notes(scope, "app", "CacheRecloned").await;
                (notes.len() >= n).then_some(notes)
            })
            .await
        }
    };
    let notes = reclones(1).await;
    let first = since.elapsed();
    let gs = gitsyncs.get("app").await.unwrap();
    assert!(ready_at(&gs, &rev(&c1)), "{:?}", gs.status);
    eprintln!(
        "corrupt cache ({files} object files damaged), no new commit: re-cloned {:.2}s later (interval {interval:?}): {}",
        first.as_secs_f64(),
        notes[0]
    );

    // 2. A new commit on a damaged cache: b.yaml is unchanged, so the
    // fetch brings only what changed and the old, damaged objects are read.
    let files = corrupt(&cache);
    repo.write("clusters/test/a.yaml", &cm("a", "2"));
    let c2 = repo.commit("two");
    let since = Instant::now();
    wait_gitsync(&gitsyncs, "app", "Ready at c2", interval + WAIT, |g| {
        ready_at(g, &rev(&c2))
    })
    .await;
    let second = since.elapsed();
    let notes = reclones(2).await;
    let a = configmaps.get("a").await.unwrap().data.unwrap();
    let b = configmaps.get("b").await.unwrap().data.unwrap();
    assert_eq!((a["v"].as_str(), b["v"].as_str()), ("2", "1"));
    eprintln!(
        "corrupt cache ({files} object files damaged), new commit: Ready at it {:.2}s after the push (interval {interval:?}): {}",
        second.as_secs_f64(),
        notes.iter().find(|n| **n != notes[0]).unwrap_or(&notes[0])
    );
    // One interval, and the re-clone's time on a loaded machine.
    let bound = interval + Duration::from_secs(5);
    assert!(first <= bound, "re-cloned after {first:?}");
    assert!(second <= bound, "Ready after {second:?}");
    let _ = std::fs::remove_dir_all(&root);
}
