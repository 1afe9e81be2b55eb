//! Hot reload: [`Reloader`] reads the server certificate and key, the client CA bundle,
//! the CRLs and JWKS files again when one of them changes on disk or the process gets
//! SIGHUP, and puts the new material in place only once all of it has been read and
//! checked. New handshakes and requests use it; established connections keep going. A
//! reload whose files do not parse keeps the old material and says why.
//!
//! ```no_run
//! use mtls_bound_token::reload::Reloader;
//! use mtls_bound_token::tls::TlsServerConfig;
//! use mtls_bound_token::token::JwksFile;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsServerConfig::builder()
//!     .certificate_chain_file("server.crt")
//!     .private_key_file("server.key")
//!     .client_ca_file("clients-ca.crt")
//!     .build()?;
//! let keys = JwksFile::open("jwks.json")?;
//! // Watches server.crt, server.key, clients-ca.crt and jwks.json, and listens for SIGHUP.
//! let _reloading = Reloader::new().tls(&tls).jwks_file(&keys).spawn()?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::tls::TlsServerConfig;
use crate::token::JwksFile;
use crate::trust::ClientTrust;

/// How long changes are gathered before one reload: editors and `cp` write in steps.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(250);

/// The step that puts prepared material in place.
type Commit = Box<dyn FnOnce() + Send + 'static>;

/// Held from reading to putting in place, by every reload in the process: two reloads
/// at once could otherwise put the older material in place last.
static RELOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `reload` (read, check, put in place) while no other reload runs.
pub(crate) fn one_at_a_time<T>(reload: impl FnOnce() -> T) -> T {
    let _only = RELOADING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    reload()
}

/// One thing a reload reads again.
#[derive(Clone)]
enum Item {
    Tls(TlsServerConfig),
    Trust(ClientTrust),
    Jwks(JwksFile),
}

impl Item {
    fn prepare(&self) -> Result<Commit, String> {
        match self {
            Self::Tls(tls) => tls.prepare_reload().map_err(|e| e.to_string()),
            Self::Trust(trust) => trust.prepare_reload().map_err(|e| e.to_string()),
            Self::Jwks(jwks) => match jwks.prepare() {
                Ok(commit) => Ok(Box::new(commit)),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Tls(tls) => tls.files(),
            Self::Trust(trust) => trust.files(),
            Self::Jwks(jwks) => vec![jwks.path().to_owned()],
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(String);

/// What to reload, and (with [`spawn`](Self::spawn)) when: on SIGHUP and when a file it
/// reads changes.
#[derive(Clone, Default)]
pub struct Reloader {
    items: Vec<Item>,
    settle: Option<Duration>,
    watch_files: Option<bool>,
    expiry_warning: Option<Duration>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("files", &self.files())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Reloads nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The TLS listener's certificate chain and key, and its client trust (CA bundle,
    /// CRLs), as [`TlsServerConfig::reload`] does.
    pub fn tls(mut self, config: &TlsServerConfig) -> Self {
        self.items.push(Item::Tls(config.clone()));
        self
    }

    /// A client trust of its own (one not already behind [`tls`](Self::tls)), as
    /// [`ClientTrust::reload`] does.
    pub fn client_trust(mut self, trust: &ClientTrust) -> Self {
        self.items.push(Item::Trust(trust.clone()));
        self
    }

    /// A JWKS file, as [`JwksFile::reload`] does.
    pub fn jwks_file(mut self, keys: &JwksFile) -> Self {
        self.items.push(Item::Jwks(keys.clone()));
        self
    }

    /// How long file changes are gathered before one reload; default 250 ms.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = Some(settle);
        self
    }

    /// Whether [`spawn`](Self::spawn) watches the files (default) or waits for SIGHUP
    /// alone.
    pub fn watch_files(mut self, watch: bool) -> Self {
        self.watch_files = Some(watch);
        self
    }

    /// [`spawn`](Self::spawn) warns (and sets the
    /// [`SOONEST_EXPIRY`](crate::telemetry::SOONEST_EXPIRY) gauges) about the server
    /// certificate, client CAs and CRLs that end within this window: when it starts,
    /// daily, and after each reload. Default 14 days.
    pub fn expiry_warning(mut self, window: Duration) -> Self {
        self.expiry_warning = Some(window);
        self
    }

    /// Warns about the material that ends within the window; how many items it warned
    /// about.
    pub fn check_expiry(&self) -> usize {
        let items: Vec<_> = self
            .items
            .iter()
            .flat_map(|item| match item {
                Item::Tls(tls) => tls.expiring(),
                Item::Trust(trust) => trust.expiring(),
                Item::Jwks(_) => Vec::new(),
            })
            .collect();
        crate::expiry::report(
            &items,
            self.expiry_warning
                .unwrap_or(crate::expiry::DEFAULT_EXPIRY_WARNING),
            crate::expiry::unix(SystemTime::now()),
        )
    }

    /// The files a reload reads.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.items.iter().flat_map(Item::files).collect();
        files.sort();
        files.dedup();
        files
    }

    /// Reads and checks everything, then puts all of it in place; on an error nothing
    /// changes.
    ///
    /// # Errors
    /// [`ReloadError`] with the first problem, naming the file.
    pub fn reload_now(&self) -> Result<(), ReloadError> {
        one_at_a_time(|| {
            let commits = self
                .items
                .iter()
                .map(Item::prepare)
                .collect::<Result<Vec<_>, _>>()
                .map_err(ReloadError)?;
            for commit in commits {
                commit();
            }
            Ok(())
        })
    }

    /// [`reload_now`](Self::reload_now), logged: `reloaded` at INFO, or
    /// `reload failed` with the reason at WARN.
    fn reload_logged(&self, cause: &str) -> bool {
        match self.reload_now() {
            Ok(()) => {
                crate::telemetry::reload(true);
                tracing::info!(cause, files = ?self.files(), "reloaded");
                self.check_expiry();
                true
            }
            Err(error) => {
                crate::telemetry::reload(false);
                tracing::warn!(cause, "reload failed, the old material stays: {error}");
                false
            }
        }
    }

    /// Reloads on SIGHUP and, unless [`watch_files`](Self::watch_files) says not to,
    /// when a file it reads changes (its directory is watched, so files replaced by a
    /// rename, as editors, `cp --remove-destination` and Kubernetes secret updates do,
    /// are seen too). Runs until the handle is dropped or aborted. Must be called within
    /// a tokio runtime.
    ///
    /// # Errors
    /// [`ReloadError`] when the SIGHUP handler or the file watch cannot be set up.
    pub fn spawn(self) -> Result<ReloadHandle, ReloadError> {
        // One pending event is enough: a burst of them is one change.
        let (events, mut changes) = mpsc::channel::<()>(1);
        let watcher = match self.watch_files.unwrap_or(true) {
            true => Some(watch(&self.files(), events)?),
            false => None,
        };
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| ReloadError(format!("cannot listen for SIGHUP: {e}")))?;
        let settle = self.settle.unwrap_or(DEFAULT_SETTLE);
        let this = Arc::new(self);
        let task = tokio::spawn(async move {
            let mut seen = fingerprints(&this.files());
            let mut daily = tokio::time::interval(Duration::from_secs(86_400));
            daily.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let sighup = hangup.recv();
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                tokio::select! {
                    // The first tick is at once: the start-up check.
                    _ = daily.tick() => {
                        this.check_expiry();
                    }
                    signal = sighup => {
                        if signal.is_none() {
                            break;
                        }
                        let reloader = Arc::clone(&this);
                        let _ = tokio::task::spawn_blocking(move || reloader.reload_logged("SIGHUP")).await;
                        seen = fingerprints(&this.files());
                    }
                    change = changes.recv() => {
                        if change.is_none() {
                            break;
                        }
                        // Gather the rest of this change, then reload only if a file
                        // really is different (a directory holds other files too).
                        tokio::time::sleep(settle).await;
                        while changes.try_recv().is_ok() {}
                        let now = fingerprints(&this.files());
                        if now != seen {
                            let reloader = Arc::clone(&this);
                            let _ = tokio::task::spawn_blocking(move || reloader.reload_logged("file changed")).await;
                            seen = now;
                        }
                    }
                }
            }
        });
        Ok(ReloadHandle {
            task,
            _watcher: watcher,
        })
    }
}

/// Keeps the reloading of [`Reloader::spawn`] running; dropping it stops it.
pub struct ReloadHandle {
    task: JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle").finish_non_exhaustive()
    }
}

impl Drop for ReloadHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What identifies a file's content without reading it: length, modification time and
/// inode, following symbolic links. `None`: the file is missing now.
type Fingerprint = Option<(u64, Option<SystemTime>, u64)>;

fn fingerprints(files: &[PathBuf]) -> HashMap<PathBuf, Fingerprint> {
    files
        .iter()
        .map(|file| (file.clone(), fingerprint(file)))
        .collect()
}

fn fingerprint(file: &Path) -> Fingerprint {
    let metadata = std::fs::metadata(file).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some((metadata.len(), metadata.modified().ok(), inode))
}

/// Watches the directories of `files`; every event there is sent on `events`.
fn watch(
    files: &[PathBuf],
    events: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, ReloadError> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = events.try_send(());
        }
    })
    .map_err(|e| ReloadError(format!("cannot watch files: {e}")))?;
    let mut directories: Vec<PathBuf> = files
        .iter()
        .map(|file| match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    directories.sort();
    directories.dedup();
    for directory in directories {
        watcher
            .watch(&directory, notify::RecursiveMode::NonRecursive)
            .map_err(|e| ReloadError(format!("cannot watch {}: {e}", directory.display())))?;
    }
    Ok(watcher)
}
