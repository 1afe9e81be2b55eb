//! A [`KeySource`] that fetches a JWKS from its `jwks_uri` and keeps it fresh, without
//! letting clients decide how often the authorization server is asked.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{AuthServerClient, RemoteError};
use crate::token::{KeySet, KeySetFuture, KeySource, KeySourceError};

/// Fewest seconds a fetched key set is used before it is refreshed, whatever its
/// `Cache-Control` says (default of [`RemoteJwksBuilder::max_age_bounds`]).
pub const DEFAULT_MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// Most seconds a fetched key set is used before it is refreshed.
pub const DEFAULT_MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a key set is used when its answer has no `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Least time between two fetches that unknown `kid`s trigger.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long after it expired a key set keeps serving while the server cannot be reached.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);
/// Unknown `kid`s remembered between two fetches; beyond this they are not remembered,
/// and the refetch interval alone bounds what they cost.
const MAX_UNKNOWN_KIDS: usize = 1024;
/// How long a `kid` still unknown after a fetch is remembered as unknown (unless the
/// next fetch comes sooner): a key published a little after its first token is picked
/// up after this, at the latest at the next refetch after it.
const UNKNOWN_KID_TTL: Duration = Duration::from_secs(60);
/// A `kid` longer than this is never remembered (it is still refused).
const MAX_REMEMBERED_KID_LEN: usize = 256;
/// Bound on every duration of the configuration, so that no deadline overflows.
const MAX_CONFIGURABLE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest wait between two attempts while the server fails.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Builds a [`RemoteJwks`].
#[derive(Debug, Clone)]
pub struct RemoteJwksBuilder {
    url: String,
    client: Option<AuthServerClient>,
    min_max_age: Duration,
    max_max_age: Duration,
    default_max_age: Duration,
    refetch_interval: Duration,
    max_staleness: Duration,
    start_without_keys: bool,
}

impl RemoteJwksBuilder {
    /// The client to fetch with (CA bundle, client certificate, timeouts); default: an
    /// [`AuthServerClient`] with the system's roots, https only.
    pub fn client(mut self, client: AuthServerClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Bounds on how long a fetched set is used: the answer's `Cache-Control: max-age`
    /// clamped to `[min, max]`; default 60 s and 24 h.
    pub fn max_age_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_max_age = min;
        self.max_max_age = max;
        self
    }

    /// How long a set is used when the answer gives no `max-age`; default 5 minutes
    /// (then clamped to the bounds).
    pub fn default_max_age(mut self, age: Duration) -> Self {
        self.default_max_age = age;
        self
    }

    /// Least time between two fetches triggered by a token whose `kid` is unknown;
    /// default 10 s. A key rotated in at the server is picked up within this.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long after its expiry the last good set keeps serving while refreshes fail;
    /// default 6 hours. After that, tokens get 503 until a fetch succeeds.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }

    /// Starts even when the first fetch fails, answering 503 until one succeeds (the
    /// default is to fail [`build`](Self::build)).
    pub fn start_without_keys(mut self) -> Self {
        self.start_without_keys = true;
        self
    }

    /// Checks the configuration, fetches the key set once and starts refreshing it in
    /// the background (on the current tokio runtime; the task ends with the source).
    ///
    /// # Errors
    /// [`RemoteError`] for a URL or setting that cannot be used, or when the first
    /// fetch fails (unless [`start_without_keys`](Self::start_without_keys)).
    pub async fn build(self) -> Result<RemoteJwks, RemoteError> {
        let client = match self.client {
            Some(client) => client,
            None => AuthServerClient::builder().build()?,
        };
        client.check_url(&self.url)?;
        if self.refetch_interval < Duration::from_secs(1) {
            return Err(RemoteError::config(
                "the JWKS refetch interval must be at least 1 s",
            ));
        }
        if self.min_max_age > self.max_max_age {
            return Err(RemoteError::config(
                "the JWKS max-age bounds are reversed: min is above max",
            ));
        }
        if self.max_max_age > MAX_CONFIGURABLE
            || self.max_staleness > MAX_CONFIGURABLE
            || self.default_max_age > MAX_CONFIGURABLE
            || self.refetch_interval > MAX_CONFIGURABLE
        {
            return Err(RemoteError::config(
                "JWKS ages, staleness and intervals must be at most 30 days",
            ));
        }
        if self.min_max_age < self.refetch_interval {
            return Err(RemoteError::config(
                "the JWKS minimum max-age must be at least the refetch interval",
            ));
        }
        let now = Instant::now();
        let (done, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            url: self.url,
            client,
            settings: Settings {
                min_max_age: self.min_max_age,
                max_max_age: self.max_max_age,
                default_max_age: self.default_max_age,
                refetch_interval: self.refetch_interval,
                max_staleness: self.max_staleness,
            },
            state: Mutex::new(State {
                keys: None,
                fresh_until: now,
                stale_until: now,
                refresh_at: now,
                last_attempt: None,
                fetching: true,
                failures: 0,
                unknown: HashMap::new(),
                fetches: 0,
                failed_fetches: 0,
            }),
            done,
        });
        let first = shared.fetch().await;
        match first {
            Err(e) if !self.start_without_keys => return Err(e),
            Err(e) => tracing::warn!(
                jwks = %shared.url,
                error = %e,
                "starting without verification keys; tokens get 503 until a fetch succeeds"
            ),
            Ok(()) => {}
        }
        tokio::spawn(refresher(Arc::downgrade(&shared)));
        Ok(RemoteJwks { shared })
    }
}

/// Verification keys fetched from an authorization server's `jwks_uri`.
///
/// - The set is used for its `Cache-Control: max-age`, clamped to configurable bounds,
///   and refreshed in the background before it expires.
/// - When a refresh fails, the last good set keeps serving (up to a configurable
///   staleness) and the log says why; with no usable set, tokens get 503 with
///   `Retry-After`, never 401.
/// - A token naming an unknown `kid` triggers at most one fetch however many arrive at
///   once (the others wait for it; no lock is held across the network), at most one
///   per refetch interval, and a `kid` still unknown after a fetch is remembered as
///   unknown until the next one: a flood of random `kid`s costs the server nothing.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mtls_bound_token::MtlsBoundTokenLayer;
/// use mtls_bound_token::remote::RemoteJwks;
///
/// let keys = RemoteJwks::builder("https://as.example/jwks").build().await?;
/// let layer = MtlsBoundTokenLayer::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .key_source(keys)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    shared: Arc<Shared>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.shared.url)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a [`RemoteJwks`] has done, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteJwksStats {
    /// Fetches started, successful or not.
    pub fetches: u64,
    /// Fetches that failed.
    pub failed_fetches: u64,
    /// Keys in the current set (0 before the first success).
    pub keys: usize,
    /// Unknown `kid`s remembered until the next fetch.
    pub unknown_kids: usize,
}

impl RemoteJwks {
    /// Starts a configuration for the JWKS at `url`.
    pub fn builder(url: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            url: url.into(),
            client: None,
            min_max_age: DEFAULT_MIN_MAX_AGE,
            max_max_age: DEFAULT_MAX_MAX_AGE,
            default_max_age: DEFAULT_MAX_AGE,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            max_staleness: DEFAULT_MAX_STALENESS,
            start_without_keys: false,
        }
    }

    /// The URL keys are fetched from.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Counts of what the source has done.
    pub fn stats(&self) -> RemoteJwksStats {
        let state = self.shared.lock();
        RemoteJwksStats {
            fetches: state.fetches,
            failed_fetches: state.failed_fetches,
            keys: state.keys.as_ref().map_or(0, |k| k.len()),
            unknown_kids: state.unknown.len(),
        }
    }

    async fn keys_for(&self, kid: Option<String>) -> Result<Arc<KeySet>, KeySourceError> {
        let shared = &self.shared;
        let mut waiter = {
            let mut state = shared.lock();
            let now = Instant::now();
            let usable = state.usable(now);
            let kid_is_settled = |keys: &KeySet, state: &State| {
                kid.as_deref()
                    .is_none_or(|kid| keys.has_kid(kid) || state.is_remembered_unknown(kid, now))
            };
            match usable {
                Some(keys) if kid_is_settled(&keys, &state) => return Ok(keys),
                _ if state.fetching => shared.done.subscribe(),
                usable if state.may_fetch(now, shared.settings.refetch_interval) => {
                    state.fetching = true;
                    let waiter = shared.done.subscribe();
                    let fetcher = Arc::clone(shared);
                    // Its own task: a request that gives up waiting does not cancel the
                    // fetch that the others wait for.
                    tokio::spawn(async move {
                        let _ = fetcher.fetch().await;
                    });
                    drop(usable);
                    waiter
                }
                Some(keys) => return Ok(keys),
                None => return Err(shared.unavailable(&state, now)),
            }
        };
        // Bounded: the client's timeout ends every fetch.
        let wait = shared.client_timeout() + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, waiter.changed()).await;
        let mut state = shared.lock();
        let now = Instant::now();
        match state.usable(now) {
            Some(keys) => {
                if let Some(kid) = kid.filter(|kid| !keys.has_kid(kid)) {
                    state.remember_unknown(kid, now);
                }
                Ok(keys)
            }
            None => Err(shared.unavailable(&state, now)),
        }
    }
}

impl KeySource for RemoteJwks {
    fn key_set<'a>(&'a self, kid: Option<&'a str>) -> KeySetFuture<'a> {
        let kid = kid.map(str::to_owned);
        Box::pin(self.keys_for(kid))
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    min_max_age: Duration,
    max_max_age: Duration,
    default_max_age: Duration,
    refetch_interval: Duration,
    max_staleness: Duration,
}

struct Shared {
    url: String,
    client: AuthServerClient,
    settings: Settings,
    state: Mutex<State>,
    /// Bumped after every fetch, successful or not.
    done: watch::Sender<u64>,
}

struct State {
    keys: Option<Arc<KeySet>>,
    /// Until then the set is fresh.
    fresh_until: Instant,
    /// Until then the set may serve (fresh, or stale within the staleness bound).
    stale_until: Instant,
    /// When the background task fetches next.
    refresh_at: Instant,
    last_attempt: Option<Instant>,
    fetching: bool,
    /// Consecutive failures.
    failures: u32,
    /// Unknown kids and when a fetch last found them unknown.
    unknown: HashMap<String, Instant>,
    fetches: u64,
    failed_fetches: u64,
}

impl State {
    fn usable(&self, now: Instant) -> Option<Arc<KeySet>> {
        let keys = self.keys.as_ref()?;
        if now < self.stale_until {
            return Some(Arc::clone(keys));
        }
        // Past the staleness bound, nothing these keys verified may serve any more,
        // cached or not.
        keys.retire_all();
        None
    }

    fn is_remembered_unknown(&self, kid: &str, now: Instant) -> bool {
        self.unknown
            .get(kid)
            .is_some_and(|at| now.duration_since(*at) < UNKNOWN_KID_TTL)
    }

    fn may_fetch(&self, now: Instant, interval: Duration) -> bool {
        self.last_attempt
            .is_none_or(|last| now.duration_since(last) >= interval)
    }

    fn remember_unknown(&mut self, kid: String, now: Instant) {
        if kid.len() > MAX_REMEMBERED_KID_LEN {
            return;
        }
        if self.unknown.len() >= MAX_UNKNOWN_KIDS {
            self.unknown
                .retain(|_, at| now.duration_since(*at) < UNKNOWN_KID_TTL);
        }
        if self.unknown.len() < MAX_UNKNOWN_KIDS || self.unknown.contains_key(&kid) {
            self.unknown.insert(kid, now);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one
        // assignment), so a poisoned lock is still used.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client_timeout(&self) -> Duration {
        self.client.timeout()
    }

    fn unavailable(&self, state: &State, now: Instant) -> KeySourceError {
        let next = state
            .last_attempt
            .map_or(Duration::ZERO, |last| {
                (last + self.settings.refetch_interval).saturating_duration_since(now)
            })
            .max(Duration::from_secs(1));
        let message = if state.keys.is_some() {
            format!(
                "the JWKS from {} is older than its staleness bound",
                self.url
            )
        } else {
            format!("no JWKS could be fetched yet from {}", self.url)
        };
        KeySourceError::new(message).with_retry_after(next)
    }

    /// Fetches the set once; the caller has set `fetching`.
    async fn fetch(&self) -> Result<(), RemoteError> {
        {
            let mut state = self.lock();
            state.last_attempt = Some(Instant::now());
            state.fetches += 1;
        }
        let result = self.fetch_keys().await;
        let now = Instant::now();
        let outcome = {
            let mut state = self.lock();
            state.fetching = false;
            match result {
                Ok((keys, max_age)) => {
                    tracing::debug!(jwks = %self.url, keys = keys.len(), max_age_secs = max_age.as_secs(), "JWKS fetched");
                    // Keys that left the set retire what they verified.
                    let keys = match &state.keys {
                        Some(old) => old.succeeded_by(keys),
                        None => keys,
                    };
                    state.keys = Some(Arc::new(keys));
                    state.fresh_until = now + max_age;
                    state.stale_until = now + max_age + self.settings.max_staleness;
                    state.refresh_at = now + max_age.mul_f64(0.9);
                    state.failures = 0;
                    state.unknown.clear();
                    Ok(())
                }
                Err(e) => {
                    state.failed_fetches += 1;
                    state.failures = state.failures.saturating_add(1);
                    let backoff = self
                        .settings
                        .refetch_interval
                        .saturating_mul(1 << state.failures.min(16).saturating_sub(1))
                        .min(MAX_RETRY_DELAY);
                    // Wake at the staleness bound at the latest, so that keys past it
                    // are retired (with what they verified) even without requests.
                    state.refresh_at = match &state.keys {
                        Some(keys) if now >= state.stale_until => {
                            keys.retire_all();
                            now + backoff
                        }
                        Some(_) => (now + backoff).min(state.stale_until),
                        None => now + backoff,
                    };
                    match &state.keys {
                        Some(_) if now < state.stale_until => tracing::warn!(
                            jwks = %self.url,
                            error = %e,
                            stale_for_secs = now.saturating_duration_since(state.fresh_until).as_secs(),
                            serves_for_secs = state.stale_until.saturating_duration_since(now).as_secs(),
                            "cannot refresh the JWKS; the last good key set keeps serving"
                        ),
                        _ => tracing::warn!(
                            jwks = %self.url,
                            error = %e,
                            "cannot fetch the JWKS; tokens get 503 until a fetch succeeds"
                        ),
                    }
                    Err(e)
                }
            }
        };
        self.done.send_modify(|generation| *generation += 1);
        outcome
    }

    async fn fetch_keys(&self) -> Result<(KeySet, Duration), RemoteError> {
        let fetched = self.client.get(&self.url).await?;
        let mut skipped = Vec::new();
        let keys = KeySet::from_published_jwks_json(&fetched.body, &mut skipped)
            .map_err(|e| RemoteError::fetch(&self.url, e))?;
        for problem in &skipped {
            tracing::warn!(jwks = %self.url, "skipping a key this server cannot use: {problem}");
        }
        if keys.is_empty() {
            tracing::warn!(
                jwks = %self.url,
                "the JWKS holds no key this server can use: every token is refused until it does"
            );
        }
        let max_age = max_age(&fetched.headers)
            .map(|age| age.saturating_sub(age_of(&fetched.headers)))
            .unwrap_or(self.settings.default_max_age)
            .clamp(self.settings.min_max_age, self.settings.max_max_age);
        Ok((keys, max_age))
    }
}

/// Refreshes the set before it expires, and retries with backoff while fetches fail.
/// Ends when the source is dropped.
async fn refresher(shared: Weak<Shared>) {
    loop {
        let at = match shared.upgrade() {
            Some(shared) => shared.lock().refresh_at,
            None => return,
        };
        tokio::time::sleep_until(at).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let waiter = {
            let mut state = shared.lock();
            if state.refresh_at > Instant::now() {
                // A fetch on an unknown kid refreshed it meanwhile.
                continue;
            }
            if state.fetching {
                Some(shared.done.subscribe())
            } else {
                state.fetching = true;
                None
            }
        };
        match waiter {
            Some(mut waiter) => {
                let wait = shared.client_timeout() + Duration::from_secs(1);
                let _ = tokio::time::timeout(wait, waiter.changed()).await;
            }
            None => {
                let _ = shared.fetch().await;
            }
        }
    }
}

/// The `Age` a cache in between gave the answer (RFC 9111 §5.1), 0 without one.
fn age_of(headers: &HeaderMap) -> Duration {
    headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// `max-age` of `Cache-Control` (`no-cache` and `no-store` count as 0), if any.
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let seconds = argument
                    .filter(|a| {
                        !a.is_empty() && a.len() <= 19 && a.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|a| a.parse::<u64>().ok());
                if let Some(seconds) = seconds {
                    age = Some(Duration::from_secs(seconds));
                }
            }
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                http::header::CACHE_CONTROL,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(
            max_age(&headers(&["public, max-age=600"])),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age(&headers(&["MAX-AGE = 7"])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            max_age(&headers(&["max-age=\"30\""])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            max_age(&headers(&["public", "max-age=5"])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            max_age(&headers(&["max-age=60, no-cache"])),
            Some(Duration::ZERO)
        );
        assert_eq!(max_age(&headers(&["no-store"])), Some(Duration::ZERO));
        for junk in [
            "max-age=",
            "max-age=-1",
            "max-age=1e3",
            "max-age=99999999999999999999",
        ] {
            assert_eq!(max_age(&headers(&[junk])), None, "{junk}");
        }
    }

    #[test]
    fn the_age_a_cache_gave_the_answer_is_read() {
        let mut map = HeaderMap::new();
        assert_eq!(age_of(&map), Duration::ZERO);
        map.insert(http::header::AGE, HeaderValue::from_static("40"));
        assert_eq!(age_of(&map), Duration::from_secs(40));
        map.insert(http::header::AGE, HeaderValue::from_static("-3"));
        assert_eq!(age_of(&map), Duration::ZERO);
    }
}
