//! The certificates a `self_signed_tls_client_auth` client publishes at its `jwks_uri`
//! (RFC 8705 §2.2, RFC 7591 `jwks_uri`), fetched with the rules of
//! [`RemoteJwks`](crate::remote::RemoteJwks): fresh for the answer's `max-age` (bounded),
//! fetched again when a client presents a certificate the set does not hold, at most
//! once per interval, and never longer than a bound past its freshness when the
//! endpoint cannot be reached.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::cert::PeerCertificate;
use crate::remote::{AuthServerClient, RemoteError};

/// Fetches for an unknown certificate at most this often.
pub const DEFAULT_CLIENT_JWKS_REFETCH: Duration = Duration::from_secs(10);
/// A set is used at most this long past its freshness while fetches fail; then the
/// client cannot authenticate until its `jwks_uri` answers again.
pub const DEFAULT_CLIENT_JWKS_MAX_STALENESS: Duration = Duration::from_secs(6 * 3600);

/// The certificates at one client's `jwks_uri`. Cheap to clone; clones share the set.
#[derive(Clone)]
pub struct ClientJwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: AuthServerClient,
    state: Mutex<State>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

struct State {
    thumbprints: Arc<Vec<[u8; 32]>>,
    fresh_until: Instant,
    last_attempt: Instant,
}

impl std::fmt::Debug for ClientJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientJwks")
            .field("url", &self.inner.url)
            .field("certificates", &self.thumbprints().len())
            .finish_non_exhaustive()
    }
}

impl ClientJwks {
    /// Fetches the client's JWKS from `url` with `client` (its timeouts, size bound and
    /// https rule apply) and keeps it.
    ///
    /// # Errors
    /// [`RemoteError`] naming the URL: unreachable, not 200, too large, or a JWKS with
    /// no key carrying a certificate (`x5c`) that fits it.
    pub async fn fetch(
        url: impl Into<String>,
        client: AuthServerClient,
    ) -> Result<Self, RemoteError> {
        let url = url.into();
        let (thumbprints, max_age) = fetch(&client, &url).await?;
        let now = Instant::now();
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                client,
                state: Mutex::new(State {
                    thumbprints: Arc::new(thumbprints),
                    fresh_until: now + max_age,
                    last_attempt: now,
                }),
                fetching: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The `jwks_uri`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The certificates (SHA-256 of their DER) the client may present now: none once
    /// the set is past its freshness by more than the staleness bound.
    pub(crate) fn thumbprints(&self) -> Arc<Vec<[u8; 32]>> {
        let state = self.lock();
        if Instant::now() > state.fresh_until + DEFAULT_CLIENT_JWKS_MAX_STALENESS {
            return Arc::new(Vec::new());
        }
        Arc::clone(&state.thumbprints)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches again when the set is no longer fresh, or does not hold `certificate`,
    /// unless a fetch was tried within the refetch interval. A failed fetch keeps the
    /// set it had (within the staleness bound) and is logged.
    pub(crate) async fn refresh_for(&self, certificate: &PeerCertificate) {
        let due = |state: &State, now: Instant| {
            let unknown = !super::registration::holds(&state.thumbprints, certificate)
                || now > state.fresh_until;
            unknown && now >= state.last_attempt + DEFAULT_CLIENT_JWKS_REFETCH
        };
        if !due(&self.lock(), Instant::now()) {
            return;
        }
        // One fetch at a time; a request that finds one under way answers from the set
        // as it is rather than waiting for it.
        let Ok(_one) = self.inner.fetching.try_lock() else {
            return;
        };
        // Another request may have fetched meanwhile.
        if !due(&self.lock(), Instant::now()) {
            return;
        }
        self.lock().last_attempt = Instant::now();
        match fetch(&self.inner.client, &self.inner.url).await {
            Ok((thumbprints, max_age)) => {
                let mut state = self.lock();
                state.thumbprints = Arc::new(thumbprints);
                state.fresh_until = Instant::now() + max_age;
                tracing::debug!(jwks_uri = %self.inner.url, certificates = state.thumbprints.len(), "client JWKS fetched");
            }
            Err(error) => {
                tracing::warn!(jwks_uri = %self.inner.url, "client JWKS fetch failed, the certificates fetched before stay: {error}");
            }
        }
    }
}

/// The thumbprints at `url`, and how long they are fresh.
async fn fetch(
    client: &AuthServerClient,
    url: &str,
) -> Result<(Vec<[u8; 32]>, Duration), RemoteError> {
    let fetched = client.get(url).await?;
    let thumbprints = super::registration::x5c_thumbprints(&fetched.body)
        .map_err(|e| RemoteError::fetch(url, e))?;
    let max_age = crate::remote::max_age(&fetched.headers)
        .unwrap_or(crate::remote::DEFAULT_MAX_AGE)
        .clamp(
            crate::remote::DEFAULT_MIN_MAX_AGE,
            crate::remote::DEFAULT_MAX_MAX_AGE,
        );
    Ok((thumbprints, max_age))
}
