//! Fetching a GitSync's source with libgit2 (git2) into a bare cache
//! repository, and reading manifests straight from a commit's tree.
//!
//! The cheap check for a new revision lists the remote's refs (what
//! `git ls-remote` does: no objects move); objects are fetched only when the
//! ref points at a commit the cache does not have. Files are read from the
//! commit's tree, never from a working copy, so a half-written checkout can
//! never be applied.
//!
//! Everything here blocks: call it from `spawn_blocking`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode,
    FetchOptions, Oid, RemoteCallbacks, Repository,
};
use sha1::{Digest, Sha1};

mod credentials;
mod known_hosts;

pub use credentials::{redact_url, Credentials};
pub use known_hosts::{check_host_key, HostKey};

use super::GitRef;

/// A commit of the source, with the branch or tag it was found under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Branch or tag name; empty for a pinned commit.
    pub name: String,
    pub sha: String,
}

impl Revision {
    /// The revision a status field records (the inverse of `Display`).
    pub fn parse(s: &str) -> Option<Self> {
        let (name, sha) = match s.rsplit_once("@sha1:") {
            Some((name, sha)) => (name, sha),
            None => ("", s.strip_prefix("sha1:")?),
        };
        let hex = sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| Self {
            name: name.to_string(),
            sha: sha.to_string(),
        })
    }
}

impl fmt::Display for Revision {
    /// `main@sha1:<sha>`, `v1.2.0@sha1:<sha>`, or `sha1:<sha>` for a commit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "sha1:{}", self.sha)
        } else {
            write!(f, "{}@sha1:{}", self.name, self.sha)
        }
    }
}

/// Where the cache of one GitSync's source lives: one bare repository per
/// object (by its UID, which no other GitSync's spec can name) and URL, so
/// that no two reconciles share one.
pub fn cache_dir(root: &Path, namespace: &str, name: &str, uid: &str, url: &str) -> PathBuf {
    let digest = Sha1::digest(format!("{uid}\n{url}").as_bytes());
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    root.join(namespace).join(format!("{name}-{short}.git"))
}

/// Which source URLs the controller fetches: `file://` only when allowed
/// (it reads the controller's own disk), and, when prefixes are given,
/// only URLs starting with one of them.
#[derive(Clone, Debug, Default)]
pub struct UrlPolicy {
    pub allow_file_urls: bool,
    pub allowed_prefixes: Vec<String>,
}

impl UrlPolicy {
    /// Why `url` is refused, if it is. `credentials`: a secretRef is set,
    /// and credentials never go over plain `http://`.
    pub fn check(&self, url: &str, credentials: bool) -> Result<(), String> {
        let shown = redact_url(url);
        if url.starts_with("file://") && !self.allow_file_urls {
            return Err(format!(
                "{shown}: file:// URLs are refused (they read the controller's own disk); the controller runs without --allow-file-urls"
            ));
        }
        if url.starts_with("http://") && credentials {
            return Err(format!(
                "{shown}: credentials (spec.secretRef) are never sent over http://; use https://"
            ));
        }
        if !self.allowed_prefixes.is_empty()
            && !self
                .allowed_prefixes
                .iter()
                .any(|p| url.starts_with(p.as_str()))
        {
            return Err(format!(
                "{shown} is not under an allowed source prefix (--allowed-source-prefix: {})",
                self.allowed_prefixes.join(", ")
            ));
        }
        Ok(())
    }
}

/// How long libgit2 waits to connect to a Git server, and for the next
/// bytes from it on any read or write (SSH too). Set once for the process:
/// they are what stops a fetch from a server that accepts and then says
/// nothing (a tarpit), where no progress callback ever runs. Git's
/// upload-pack sends a keep-alive every 5 s while it prepares a pack, so a
/// working server is never silent for 15 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

fn set_server_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: libgit2 reads these globals when it opens a socket; every
        // network use in this process goes through `latest`, which runs
        // this first, so no socket is opened while they are written.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(
                CONNECT_TIMEOUT.as_millis() as i32,
            );
            let _ = git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT.as_millis() as i32);
        }
    });
}

/// One fetch at a time per cache directory. A fetch abandoned at its
/// timeout (its blocking task still waits for the server) holds its cache
/// until it really ends; meanwhile no other fetch touches that directory.
#[derive(Debug)]
pub struct CacheLock {
    dir: PathBuf,
}

static BUSY: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);

impl CacheLock {
    /// The lock of `dir`, or how long the fetch that holds it has run.
    pub fn try_acquire(dir: &Path) -> Result<Self, Duration> {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let busy = busy.get_or_insert_with(HashMap::new);
        if let Some(since) = busy.get(dir) {
            return Err(since.elapsed());
        }
        busy.insert(dir.to_path_buf(), Instant::now());
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(busy) = busy.as_mut() {
            busy.remove(&self.dir);
        }
    }
}

/// Deletes the cache `dir` (it is only a cache: the next fetch clones).
pub fn wipe(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot delete git cache {}: {e}", dir.display())),
    }
}

/// The cache, created when missing. One that exists and does not open is
/// recreated; the second value says why it was.
fn open_cache(dir: &Path) -> Result<(Repository, Option<String>), String> {
    let damaged = match Repository::open_bare(dir) {
        Ok(repo) => return Ok((repo, None)),
        Err(_) if !dir.exists() => None,
        Err(e) => Some(format!("it did not open: {}", e.message())),
    };
    wipe(dir)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create git cache {}: {e}", dir.display()))?;
    let repo = Repository::init_bare(dir)
        .map_err(|e| format!("cannot create git cache {}: {}", dir.display(), e.message()))?;
    Ok((repo, damaged))
}

/// The cache for reading a revision out of it (never created here).
fn open_existing(dir: &Path) -> Result<Repository, String> {
    Repository::open_bare(dir)
        .map_err(|e| format!("cannot open git cache {}: {}", dir.display(), e.message()))
}

/// What [`latest`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub revision: Revision,
    /// The cache was damaged (why), deleted, and cloned again.
    pub recloned: Option<String>,
}

/// Why reading the source failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The remote, the network, credentials, the ref, or the revision
    /// itself (a path, a limit, a link): not the cache's fault.
    Other(String),
    /// The cache's own objects or refs cannot be read (corrupt, truncated):
    /// deleting it and cloning again fixes that.
    Damaged(String),
}

impl SourceError {
    fn message(self) -> String {
        match self {
            SourceError::Other(m) | SourceError::Damaged(m) => m,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Other(m) | SourceError::Damaged(m) => f.write_str(m),
        }
    }
}

impl From<String> for SourceError {
    fn from(m: String) -> Self {
        SourceError::Other(m)
    }
}

/// Whether a libgit2 error is about the local repository's own data.
fn is_damage(e: &git2::Error) -> bool {
    matches!(
        e.class(),
        ErrorClass::Odb
            | ErrorClass::Zlib
            | ErrorClass::Object
            | ErrorClass::Indexer
            | ErrorClass::Reference
            | ErrorClass::Tree
            | ErrorClass::Repository
    )
}

/// What the remote's ref points at now, and the commit itself (fetched into
/// the cache if it is not there yet). `deadline` cancels a slow transfer
/// (and the server timeouts a silent one). A cache whose objects cannot be
/// read is deleted and cloned again, once.
pub fn latest(
    dir: &Path,
    url: &str,
    reference: &GitRef,
    creds: Option<&Credentials>,
    deadline: Instant,
) -> Result<Fetched, String> {
    set_server_timeouts();
    let (repo, damaged) = open_cache(dir)?;
    let why = match damaged {
        Some(why) => why,
        None => match latest_once(&repo, url, reference, creds, deadline) {
            Ok(revision) => {
                return Ok(Fetched {
                    revision,
                    recloned: None,
                })
            }
            Err(SourceError::Other(m)) => return Err(m),
            Err(SourceError::Damaged(why)) => why,
        },
    };
    drop(repo);
    wipe(dir)?;
    let (repo, _) = open_cache(dir)?;
    let revision = latest_once(&repo, url, reference, creds, deadline).map_err(|f| {
        format!(
            "{} (after cloning again: the cache was damaged: {why})",
            f.message()
        )
    })?;
    Ok(Fetched {
        revision,
        recloned: Some(why),
    })
}

/// The commit `oid` if the cache has it (with its root tree readable);
/// `None` when it does not; `Damaged` when it says it has it but cannot
/// read it.
fn find_commit<'r>(
    repo: &'r Repository,
    oid: Oid,
) -> Result<Option<git2::Commit<'r>>, SourceError> {
    let damaged = |what: &str, e: git2::Error| {
        SourceError::Damaged(format!("reading {what} {oid}: {}", e.message()))
    };
    let odb = repo.odb().map_err(|e| damaged("the objects for", e))?;
    if !odb.exists(oid) {
        return Ok(None);
    }
    let object = repo
        .find_object(oid, None)
        .map_err(|e| damaged("object", e))?;
    let commit = match object.peel_to_commit() {
        Ok(c) => c,
        // A tag whose target cannot be read (a tag of a tree is the remote's).
        Err(e)
            if e.code() == ErrorCode::NotFound
                || matches!(e.class(), ErrorClass::Odb | ErrorClass::Zlib) =>
        {
            return Err(damaged("commit", e))
        }
        Err(e) => {
            return Err(SourceError::Other(format!(
                "{oid} is not a commit: {}",
                e.message()
            )))
        }
    };
    commit
        .tree()
        .map_err(|e| damaged("the tree of commit", e))?;
    Ok(Some(commit))
}

fn latest_once(
    repo: &Repository,
    url: &str,
    reference: &GitRef,
    creds: Option<&Credentials>,
    deadline: Instant,
) -> Result<Revision, SourceError> {
    let shown = redact_url(url);
    if let Some(sha) = &reference.commit {
        let oid = Oid::from_str(sha)
            .map_err(|e| SourceError::Other(format!("invalid commit {sha}: {}", e.message())))?;
        if find_commit(repo, oid)?.is_none() {
            fetch(
                repo,
                url,
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                creds,
                deadline,
            )?;
            if find_commit(repo, oid)?.is_none() {
                return Err(SourceError::Other(format!(
                    "commit {sha} is not in {shown}"
                )));
            }
        }
        return Ok(Revision {
            name: String::new(),
            sha: sha.clone(),
        });
    }
    let (name, wanted, refspec) = match (&reference.tag, &reference.branch) {
        (Some(tag), _) => (
            tag.clone(),
            format!("refs/tags/{tag}"),
            format!("+refs/tags/{tag}:refs/tags/{tag}"),
        ),
        (None, branch) => {
            let branch = branch.clone().unwrap_or_else(|| "main".into());
            (
                branch.clone(),
                format!("refs/heads/{branch}"),
                format!("+refs/heads/{branch}:refs/heads/{branch}"),
            )
        }
    };
    // The cheap check: list the remote's refs, fetch only an unknown commit.
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| SourceError::Other(format!("invalid URL {shown}: {}", e.message())))?;
    let listed = {
        let conn = remote
            .connect_auth(Direction::Fetch, Some(callbacks(creds, deadline)), None)
            .map_err(|e| SourceError::Other(remote_error(&shown, "cannot reach", &e, deadline)))?;
        let heads = conn.list().map_err(|e| {
            SourceError::Other(remote_error(&shown, "cannot list refs of", &e, deadline))
        })?;
        let peeled = format!("{wanted}^{{}}");
        // An annotated tag is listed twice; its peeled entry names the commit.
        heads
            .iter()
            .find(|h| h.name() == peeled)
            .or_else(|| heads.iter().find(|h| h.name() == wanted))
            .map(|h| h.oid())
    };
    let Some(oid) = listed else {
        return Err(SourceError::Other(format!("{shown} has no {wanted}")));
    };
    let commit = match find_commit(repo, oid)? {
        Some(c) => c,
        None => {
            fetch(repo, url, &[refspec.as_str()], creds, deadline)?;
            find_commit(repo, oid)?.ok_or_else(|| {
                SourceError::Damaged(format!(
                    "{wanted} of {shown} is {oid}, which is not in the cache after fetching it"
                ))
            })?
        }
    };
    Ok(Revision {
        name,
        sha: commit.id().to_string(),
    })
}

/// A network-side error as users read it: "timed out" once the deadline
/// or the server timeout ended it.
fn remote_error(shown: &str, doing: &str, e: &git2::Error, deadline: Instant) -> String {
    if Instant::now() >= deadline {
        format!("{doing} {shown}: timed out (spec.timeout)")
    } else {
        format!("{doing} {shown}: {}", e.message())
    }
}

/// Whether `old` is not an ancestor of `new` (a force-push rewrote the
/// history), reading the cache `dir`; an `old` the cache no longer has is
/// a rewrite too (a fetch keeps every commit it ever had).
pub fn rewritten(dir: &Path, old: &str, new: &str) -> Result<bool, String> {
    let repo = open_existing(dir)?;
    let parse = |s: &str| Oid::from_str(s).map_err(|e| format!("{s}: {}", e.message()));
    let (old, new) = (parse(old)?, parse(new)?);
    if repo.find_commit(old).is_err() {
        return Ok(true);
    }
    repo.graph_descendant_of(new, old)
        .map(|descends| !descends)
        .map_err(|e| e.message().to_string())
}

fn fetch(
    repo: &Repository,
    url: &str,
    refspecs: &[&str],
    creds: Option<&Credentials>,
    deadline: Instant,
) -> Result<(), SourceError> {
    let shown = redact_url(url);
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| SourceError::Other(format!("invalid URL {shown}: {}", e.message())))?;
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(creds, deadline));
    opts.download_tags(AutotagOption::None);
    remote.fetch(refspecs, Some(&mut opts), None).map_err(|e| {
        if Instant::now() < deadline && is_damage(&e) {
            SourceError::Damaged(format!("fetching into it: {}", e.message()))
        } else {
            SourceError::Other(remote_error(&shown, "cannot fetch", &e, deadline))
        }
    })
}

fn callbacks(creds: Option<&Credentials>, deadline: Instant) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0;
    cb.credentials(move |_url, user_from_url, allowed| {
        if Instant::now() >= deadline {
            return Err(git2::Error::from_str("timed out (spec.timeout)"));
        }
        // libgit2 asks again after a rejected credential: stop, do not loop.
        attempts += 1;
        if attempts > 2 {
            return Err(git2::Error::from_str(
                "authentication failed with the credentials of secretRef",
            ));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user_from_url.unwrap_or("git"));
        }
        match creds {
            Some(Credentials::Ssh {
                identity,
                passphrase,
                ..
            }) if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key_from_memory(
                user_from_url.unwrap_or("git"),
                None,
                identity,
                passphrase.as_deref(),
            ),
            Some(Credentials::Token { username, token })
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(
                    username.as_deref().or(user_from_url).unwrap_or("git"),
                    token,
                )
            }
            Some(Credentials::Basic { username, password })
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, password)
            }
            Some(_) => Err(git2::Error::from_str(
                "the server asks for a kind of credential that secretRef does not hold",
            )),
            None => Err(git2::Error::from_str(
                "the server asks for credentials: set spec.secretRef",
            )),
        }
    });
    let known_hosts = match creds {
        Some(Credentials::Ssh { known_hosts, .. }) => Some(known_hosts.as_str()),
        _ => None,
    };
    cb.certificate_check(move |cert, host| {
        if Instant::now() >= deadline {
            return Err(git2::Error::from_str("timed out (spec.timeout)"));
        }
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2's own verification against the system's CAs.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
            return Err(git2::Error::from_str("the SSH server sent no host key"));
        };
        let Some(known_hosts) = known_hosts else {
            return Err(git2::Error::from_str(
                "SSH needs known_hosts in the Secret of secretRef: host keys are always verified",
            ));
        };
        match check_host_key(known_hosts, host, kind.name(), key) {
            HostKey::Known => Ok(CertificateCheckStatus::CertificateOk),
            HostKey::Unknown => Err(git2::Error::from_str(&format!(
                "the {} host key of {host} is not in known_hosts",
                kind.name()
            ))),
            HostKey::Mismatch => Err(git2::Error::from_str(&format!(
                "the host key of {host} does not match known_hosts (possible man-in-the-middle)"
            ))),
            HostKey::Revoked => Err(git2::Error::from_str(&format!(
                "the host key of {host} is marked @revoked in known_hosts"
            ))),
        }
    });
    // Returning false cancels the transfer: each pack chunk and each
    // progress line of the server checks the deadline.
    cb.transfer_progress(move |_| Instant::now() < deadline);
    cb.sideband_progress(move |_| Instant::now() < deadline);
    cb
}

/// The files of one revision, written to a fresh directory that is removed
/// when this is dropped. Only what is under the GitSync's path is written,
/// at its place from the repository root.
#[derive(Debug)]
pub struct Checkout {
    root: PathBuf,
}

impl Checkout {
    /// The repository root of the checkout.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `path` relative to the repository root, without `./` or slashes at
/// either end ("" for the whole repository); `..` is refused.
pub fn clean_path(path: &str) -> Result<String, String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("path {path} leaves the repository (it has ..)"));
    }
    Ok(parts.join("/"))
}

/// The tree of `path` in commit `sha` of the open cache `repo`. The source
/// step found the commit there, so any object it cannot read is damage.
fn tree_at<'r>(repo: &'r Repository, sha: &str, base: &str) -> Result<git2::Tree<'r>, SourceError> {
    let oid = Oid::from_str(sha).map_err(|e| e.message().to_string())?;
    let damaged = |what: &str, e: git2::Error| {
        SourceError::Damaged(format!("reading {what} of {sha}: {}", e.message()))
    };
    // Gone (e.g. the applied commit after a force-push and a new clone) is
    // not damage; there but unreadable is.
    let present = repo.odb().map(|odb| odb.exists(oid)).unwrap_or(true);
    if !present {
        return Err(format!("commit {sha} is not in the cache").into());
    }
    let commit = repo.find_commit(oid).map_err(|e| damaged("commit", e))?;
    let root_tree = commit.tree().map_err(|e| damaged("the tree", e))?;
    if base.is_empty() {
        return Ok(root_tree);
    }
    let not_a_dir = || format!("path {base} is not a directory in revision {sha}");
    let entry = root_tree
        .get_path(Path::new(base))
        .map_err(|e| match e.code() {
            ErrorCode::NotFound => SourceError::Other(not_a_dir()),
            _ => damaged(&format!("path {base}"), e),
        })?;
    if entry.kind() != Some(git2::ObjectType::Tree) {
        return Err(not_a_dir().into());
    }
    entry
        .to_object(repo)
        .and_then(|o| o.peel_to_tree())
        .map_err(|e| damaged(&format!("path {base}"), e))
}

/// The cache, for reading a revision out of it: one that does not open is damaged.
fn open_to_read(dir: &Path) -> Result<Repository, SourceError> {
    open_existing(dir).map_err(SourceError::Damaged)
}

/// The names of the entries directly under `path` in commit `sha` (to pick
/// a renderer before checking anything out).
pub fn names_at(dir: &Path, sha: &str, path: &str) -> Result<Vec<String>, SourceError> {
    let repo = open_to_read(dir)?;
    let tree = tree_at(&repo, sha, &clean_path(path)?)?;
    Ok(tree
        .iter()
        .filter_map(|e| e.name().ok().map(str::to_string))
        .collect())
}

/// Checks out the files under `path` of commit `sha` (from the cache `dir`)
/// into a new directory next to the cache. Regular files only: submodules
/// are left out, and so are symbolic links, which are only ever read as
/// what they are; one pointing outside the repository refuses the revision.
/// A checkout is written from the commit's tree in full before anyone
/// reads it, and never reused, so a half-written one is never loaded.
/// `SourceError::Damaged`: an object of the revision cannot be read.
pub fn checkout(dir: &Path, sha: &str, path: &str) -> Result<Checkout, SourceError> {
    let repo = open_to_read(dir)?;
    let base = clean_path(path)?;
    let tree = tree_at(&repo, sha, &base)?;
    let files = files_to_write(&repo, &tree, &base)?;
    let checkout = new_checkout_dir(dir, sha);
    let target = checkout.root.join(&base);
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    for (rel, id) in files {
        let file = target.join(&rel);
        let blob = repo.find_blob(id).map_err(|e| {
            SourceError::Damaged(format!("reading {base}/{rel} ({id}): {}", e.message()))
        })?;
        std::fs::create_dir_all(file.parent().expect("a file has a parent"))
            .and_then(|_| std::fs::write(&file, blob.content()))
            .map_err(|e| format!("checking out {base}/{rel}: {e}"))?;
    }
    Ok(checkout)
}

/// A new, empty checkout directory next to the cache `dir`; leftovers of
/// earlier checkouts (a crash) go, as one reconcile per GitSync runs at a time.
fn new_checkout_dir(dir: &Path, sha: &str) -> Checkout {
    let stem = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{stem}.checkout-");
    let parent = dir.parent().unwrap_or(Path::new("."));
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Checkout {
        root: parent.join(format!(
            "{prefix}{}-{:08x}",
            &sha[..12.min(sha.len())],
            rand::random::<u32>()
        )),
    }
}

/// The files of `tree` (under `base`) to write, as (path under `base`, blob),
/// checked against the limits and for links leaving the repository from the
/// tree and the object headers alone: a refused revision reads no blob and
/// writes no file.
fn files_to_write(
    repo: &Repository,
    tree: &git2::Tree,
    base: &str,
) -> Result<Vec<(String, git2::Oid)>, SourceError> {
    let limits = crate::manifests::limits::get();
    let odb = repo
        .odb()
        .map_err(|e| SourceError::Damaged(e.message().to_string()))?;
    let shown = |parent: &str, name: &str| {
        Path::new(base)
            .join(parent)
            .join(name)
            .display()
            .to_string()
    };
    let mut files = Vec::new();
    let mut manifest_bytes: u64 = 0;
    let mut failed = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
        let Ok(name) = entry.name() else {
            return git2::TreeWalkResult::Skip;
        };
        // 0o120000: a symbolic link; 0o160000: a submodule (a commit).
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        if entry.filemode() == 0o120000 {
            failed = link_leaves(repo, entry, base, parent);
            return match failed {
                Some(_) => git2::TreeWalkResult::Abort,
                None => git2::TreeWalkResult::Ok,
            };
        }
        let size = odb.read_header(entry.id()).map_or(0, |(n, _)| n as u64);
        let manifest = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
        if size > limits.max_file_size && !manifest {
            return git2::TreeWalkResult::Ok; // not read by any renderer as a manifest
        }
        failed = if size > limits.max_file_size {
            Some(format!(
                "{}: a file of {} is over the {} limit (--max-file-size); refused",
                shown(parent, name),
                crate::manifests::limits::size(size),
                crate::manifests::limits::size(limits.max_file_size)
            ))
        } else if manifest && manifest_bytes + size > limits.max_revision_size {
            Some(format!(
                "the revision's manifests are over the {} limit (--max-revision-size) at {}; refused",
                crate::manifests::limits::size(limits.max_revision_size),
                shown(parent, name)
            ))
        } else if files.len() >= limits.max_files {
            Some(crate::manifests::limits::too_many_files(limits.max_files))
        } else {
            None
        };
        if failed.is_some() {
            return git2::TreeWalkResult::Abort;
        }
        if manifest {
            manifest_bytes += size;
        }
        files.push((format!("{parent}{name}"), entry.id()));
        git2::TreeWalkResult::Ok
    })
    .map_err(|e| match failed.clone() {
        Some(f) => SourceError::Other(f),
        // A subtree that cannot be read.
        None => SourceError::Damaged(format!("reading the tree of {base}: {}", e.message())),
    })?;
    match failed {
        Some(f) => Err(f.into()),
        None => Ok(files),
    }
}

/// Why the symbolic link `entry` (in directory `parent` of `base`) is
/// refused: it points outside the repository.
fn link_leaves(
    repo: &Repository,
    entry: &git2::TreeEntry,
    base: &str,
    parent: &str,
) -> Option<String> {
    let target = repo.find_blob(entry.id()).ok()?;
    let target = String::from_utf8_lossy(target.content()).into_owned();
    let at = Path::new(base).join(parent);
    let name = at.join(entry.name().unwrap_or_default());
    let mut depth: i64 = at.components().count() as i64;
    let escapes = target.starts_with('/')
        || Path::new(&target).components().any(|c| {
            match c {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            depth < 0
        });
    escapes.then(|| {
        format!(
            "{}: a symbolic link to {target}, outside the repository; refused",
            name.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_reads_back_what_it_wrote() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for name in ["main", "release/v1", ""] {
            let r = Revision {
                name: name.into(),
                sha: sha.into(),
            };
            assert_eq!(Revision::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Revision::parse("main@sha1:xyz"), None);
        assert_eq!(Revision::parse("garbage"), None);
    }

    #[test]
    fn paths_are_cleaned_and_kept_inside() {
        assert_eq!(clean_path("./clusters//prod/").unwrap(), "clusters/prod");
        assert_eq!(clean_path("/").unwrap(), "");
        assert_eq!(clean_path("").unwrap(), "");
        assert!(clean_path("clusters/../../etc").is_err());
    }

    #[test]
    fn source_urls_follow_the_policy() {
        let strict = UrlPolicy::default();
        let err = strict
            .check("file:///srv/other-team.git", false)
            .unwrap_err();
        assert!(err.contains("--allow-file-urls"), "{err}");
        assert!(strict.check("https://git.example.com/a.git", true).is_ok());
        let err = strict
            .check("http://git.example.com/a.git", true)
            .unwrap_err();
        assert!(err.contains("never sent over http://"), "{err}");
        assert!(strict.check("http://git.example.com/a.git", false).is_ok());
        let prefixed = UrlPolicy {
            allow_file_urls: true,
            allowed_prefixes: vec!["https://git.example.com/team-a/".into()],
        };
        assert!(prefixed
            .check("https://git.example.com/team-a/x.git", false)
            .is_ok());
        let err = prefixed
            .check("https://git.example.com/team-b/x.git", false)
            .unwrap_err();
        assert!(err.contains("allowed source prefix"), "{err}");
    }

    #[test]
    fn caches_are_per_object_not_per_spec() {
        let root = Path::new("/c");
        let a = cache_dir(root, "ns", "app", "uid-1", "https://h/r.git");
        let b = cache_dir(root, "ns", "app", "uid-2", "https://h/r.git");
        assert_ne!(a, b, "a new object with the same spec gets its own cache");
    }

    #[test]
    fn one_fetch_per_cache_at_a_time() {
        let dir = Path::new("/c/ns/app-0123.git");
        let held = CacheLock::try_acquire(dir).unwrap();
        assert!(
            CacheLock::try_acquire(dir).is_err(),
            "a second fetch of one cache"
        );
        let other = CacheLock::try_acquire(Path::new("/c/ns/other-4567.git"));
        assert!(other.is_ok(), "another cache is independent");
        drop(held);
        assert!(
            CacheLock::try_acquire(dir).is_ok(),
            "freed when the fetch ends"
        );
    }

    #[test]
    fn revision_format() {
        let r = Revision {
            name: "main".into(),
            sha: "abc".into(),
        };
        assert_eq!(r.to_string(), "main@sha1:abc");
        let c = Revision {
            name: String::new(),
            sha: "abc".into(),
        };
        assert_eq!(c.to_string(), "sha1:abc");
    }
}
