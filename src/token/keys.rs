//! Verification keys: a JWKS parsed into keys whose algorithms are pinned, and the
//! [`KeySource`] the layer asks for them.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::{AuthError, AuthReason};

/// A JWKS larger than this is refused: real ones are a few KiB.
const MAX_JWKS_LEN: usize = 1024 * 1024;
/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_MODULUS_BYTES: usize = 2048 / 8;

/// Why a JWKS could not be used. Messages name the key (by index and `kid`) and the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    fn at(index: usize, kid: Option<&str>, problem: impl fmt::Display) -> Self {
        match kid {
            Some(kid) => Self(format!("JWKS key #{index} (kid \"{kid}\"): {problem}")),
            None => Self(format!("JWKS key #{index}: {problem}")),
        }
    }
}

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
    /// SHA-256 over the key's `kid` and public members: the same key in two versions
    /// of a key set has the same identity.
    identity: [u8; 32],
    /// Shared with the claims the key verified, so that a token cache drops them when
    /// the key leaves its set.
    pub(crate) life: KeyLife,
}

/// Whether a key is still in its source's key set. Claims verified by a key carry its
/// life; a cache never serves claims whose key was retired.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyLife(Arc<AtomicBool>);

impl KeyLife {
    pub(crate) fn is_retired(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn retire(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A set of public keys for verifying access tokens, each pinned to the algorithms its
/// type allows (the JWK's `alg` when present, else everything its `kty`/`crv` can do).
///
/// Only asymmetric signature keys are accepted: RSA (RS256/384/512, PS256/384/512, at
/// least 2048 bits), EC P-256 (ES256) and P-384 (ES384), and OKP Ed25519 (EdDSA).
/// Keys marked `"use": "enc"` are skipped; a symmetric (`oct`) key is an error, because
/// an HMAC key in a resource server's key set lets anyone who knows it mint tokens.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.algorithms)))
            .finish()
    }
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    ///
    /// # Errors
    /// [`KeyError`] naming the key and what is wrong with it, or saying that no usable
    /// signature key is left.
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, KeyError> {
        Self::parse(json, None)
    }

    /// Parses a JWKS published by an authorization server, skipping (and returning
    /// in `skipped`) each key this crate cannot use, so that a key of a new kind at the
    /// server does not stop every token: only a document without one usable key fails.
    pub(crate) fn from_published_jwks_json(
        json: &[u8],
        skipped: &mut Vec<KeyError>,
    ) -> Result<Self, KeyError> {
        Self::parse(json, Some(skipped))
    }

    fn parse(json: &[u8], mut skipped: Option<&mut Vec<KeyError>>) -> Result<Self, KeyError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(KeyError(format!(
                "the JWKS is larger than {MAX_JWKS_LEN} bytes"
            )));
        }
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| KeyError(format!("the JWKS is not valid JSON: {e}")))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(KeyError(
                "the JWKS has no \"keys\" array (expected {\"keys\": [...]})".into(),
            ));
        };
        let mut keys: Vec<VerificationKey> = Vec::new();
        for (index, jwk) in entries.iter().enumerate() {
            let key = parse_jwk(index, jwk).and_then(|key| match key {
                Some(key) if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) => {
                    Err(KeyError::at(index, key.kid.as_deref(), "duplicate kid"))
                }
                key => Ok(key),
            });
            match (key, skipped.as_deref_mut()) {
                (Ok(Some(key)), _) => keys.push(key),
                (Ok(None), _) => {}
                (Err(e), Some(skipped)) => skipped.push(e),
                (Err(e), None) => return Err(e),
            }
        }
        // A published set may hold nothing usable (the server withdrew every key):
        // then nothing verifies. A configured one must hold a key.
        if keys.is_empty() && skipped.is_none() {
            return Err(KeyError(
                "the JWKS holds no usable signature key (RSA, EC P-256/P-384 or Ed25519)".into(),
            ));
        }
        Ok(Self { keys })
    }

    /// Reads and parses a JWKS file.
    ///
    /// # Errors
    /// [`KeyError`] when the file cannot be read or its content is not a usable JWKS.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| KeyError(format!("cannot read JWKS file {}: {e}", path.display())))?;
        Self::from_jwks_json(&bytes)
            .map_err(|e| KeyError(format!("JWKS file {}: {e}", path.display())))
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key (only a set an authorization server published can:
    /// one it emptied of usable keys).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// This set's successor: keys of `next` that this set also holds keep their
    /// identity, and keys this set holds that `next` does not are retired, so that
    /// claims they verified leave the verified-token cache at once. A [`KeySource`]
    /// that replaces its key set calls it with the new set.
    pub fn succeeded_by(&self, mut next: KeySet) -> KeySet {
        for old in &self.keys {
            match next.keys.iter_mut().find(|k| k.identity == old.identity) {
                Some(kept) => kept.life = old.life.clone(),
                None => old.life.retire(),
            }
        }
        next
    }

    /// Retires every key: what they verified leaves the verified-token cache.
    pub(crate) fn retire_all(&self) {
        for key in &self.keys {
            key.life.retire();
        }
    }

    /// Whether a key has this `kid`.
    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key for a token: by `kid`, or the only key when the token names none.
    pub(crate) fn select(&self, kid: Option<&str>) -> Result<&VerificationKey, AuthError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| {
                    AuthError::invalid_token_because(
                        AuthReason::UnknownKey,
                        "the token's kid names no known key",
                    )
                }),
            None if self.keys.len() == 1 => Ok(&self.keys[0]),
            None => Err(AuthError::invalid_token_because(
                AuthReason::UnknownKey,
                "the token has no kid, and the key set holds more than one key",
            )),
        }
    }
}

fn parse_jwk(index: usize, jwk: &Value) -> Result<Option<VerificationKey>, KeyError> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = field("kid").map(str::to_owned);
    let err = |problem: String| KeyError::at(index, kid.as_deref(), problem);
    if !jwk.is_object() {
        return Err(err("not a JSON object".into()));
    }
    if field("use") == Some("enc") {
        return Ok(None);
    }
    let kty = field("kty").ok_or_else(|| err("has no \"kty\"".into()))?;
    let b64 = |name: &str| -> Result<Vec<u8>, KeyError> {
        let text = field(name).ok_or_else(|| err(format!("has no \"{name}\"")))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| err(format!("\"{name}\" is not base64url without padding")))
    };

    let (key, family): (DecodingKey, &[Algorithm]) = match (kty, field("crv")) {
        ("RSA", _) => {
            let n = b64("n")?;
            let e = b64("e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(err("RSA key is shorter than 2048 bits".into()));
            }
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (len, alg) = if crv == "P-256" {
                (32, Algorithm::ES256)
            } else {
                (48, Algorithm::ES384)
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != len || y.len() != len {
                return Err(err(format!("coordinates have the wrong length for {crv}")));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let family: &[Algorithm] = if alg == Algorithm::ES256 {
                &[Algorithm::ES256]
            } else {
                &[Algorithm::ES384]
            };
            (DecodingKey::from_ec_der(&point), family)
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64("x")?;
            if x.len() != 32 {
                return Err(err("Ed25519 \"x\" must be 32 bytes".into()));
            }
            (DecodingKey::from_ed_der(&x), &[Algorithm::EdDSA])
        }
        ("oct", _) => {
            return Err(err(
                "is a symmetric (oct) key; only asymmetric signature keys are accepted".into(),
            ));
        }
        (kty, crv) => {
            return Err(err(format!(
                "unsupported key type {kty}{} (use RSA, EC P-256/P-384 or OKP Ed25519)",
                crv.map(|c| format!("/{c}")).unwrap_or_default()
            )));
        }
    };

    let algorithms = match field("alg") {
        None => family.to_vec(),
        Some(alg) => {
            let pinned = family
                .iter()
                .copied()
                .find(|a| format!("{a:?}") == alg)
                .ok_or_else(|| err(format!("\"alg\": \"{alg}\" does not fit a {kty} key")))?;
            vec![pinned]
        }
    };
    Ok(Some(VerificationKey {
        identity: key_identity(jwk),
        kid,
        algorithms,
        key,
        life: KeyLife::default(),
    }))
}

/// SHA-256 over `kid`, `kty` and the public members of every key type (RFC 7638's
/// members, and `x5c`), each length-prefixed.
fn key_identity(jwk: &Value) -> [u8; 32] {
    let mut input = Vec::new();
    for member in ["kid", "kty", "crv", "e", "n", "x", "y"] {
        let value = jwk.get(member).and_then(Value::as_str).unwrap_or("");
        input.extend_from_slice(&(value.len() as u64).to_be_bytes());
        input.extend_from_slice(value.as_bytes());
    }
    let chain = jwk.get("x5c").map(Value::to_string).unwrap_or_default();
    input.extend_from_slice(&(chain.len() as u64).to_be_bytes());
    input.extend_from_slice(chain.as_bytes());
    crate::crypto::sha256(&input)
}

/// Why a key source could not give keys. The layer answers 503 with `Retry-After`
/// (never 401: the token may be good) and logs the message, which may name the
/// upstream; the client sees neither.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct KeySourceError {
    message: String,
    retry_after: Duration,
}

impl KeySourceError {
    /// How long clients are told to wait by default.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

    /// An error saying `message`, for the log.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: Self::DEFAULT_RETRY_AFTER,
        }
    }

    /// When keys may be there again (the `Retry-After` of the 503); default 5 s.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// When keys may be there again.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// The future a [`KeySource`] returns.
pub type KeySetFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<KeySet>, KeySourceError>> + Send + 'a>>;

/// Where the layer gets its verification keys. [`StaticKeys`] serves a fixed set; a
/// source that fetches a remote `jwks_uri` implements this too.
pub trait KeySource: Send + Sync + 'static {
    /// The keys to verify a token whose header names `kid`. A caching source may use
    /// an unknown `kid` as the signal to refresh.
    fn key_set<'a>(&'a self, kid: Option<&'a str>) -> KeySetFuture<'a>;
}

/// A fixed key set, loaded at start-up.
#[derive(Debug, Clone)]
pub struct StaticKeys(Arc<KeySet>);

impl StaticKeys {
    /// Serves `keys` for every token.
    pub fn new(keys: KeySet) -> Self {
        Self(Arc::new(keys))
    }
}

impl KeySource for StaticKeys {
    fn key_set<'a>(&'a self, _kid: Option<&'a str>) -> KeySetFuture<'a> {
        let keys = Arc::clone(&self.0);
        Box::pin(std::future::ready(Ok(keys)))
    }
}

/// A JWKS file, read at start-up and again on [`reload`](Self::reload): keys that leave
/// the file retire what they verified, so the verified-token cache drops it. Cheap to
/// clone; clones share the keys, so keep one to reload and give another to the
/// verifier.
///
/// ```no_run
/// use mtls_bound_token::token::{JwksFile, JwtVerifier};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = JwksFile::open("jwks.json")?;
/// let verifier = JwtVerifier::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .key_source(keys.clone())
///     .build()?;
/// // On rotation: the new keys serve the next request.
/// keys.reload()?;
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksFile {
    path: Arc<Path>,
    keys: Arc<std::sync::RwLock<Arc<KeySet>>>,
}

impl std::fmt::Debug for JwksFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFile")
            .field("path", &self.path)
            .field("keys", &self.current().len())
            .finish()
    }
}

impl JwksFile {
    /// Reads the file.
    ///
    /// # Errors
    /// [`KeyError`] naming the file: unreadable, not a JWKS, or without a usable key.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let keys = KeySet::from_jwks_file(&path)?;
        Ok(Self {
            path,
            keys: Arc::new(std::sync::RwLock::new(Arc::new(keys))),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again and serves its keys from the next request on. A file that
    /// cannot be read or holds no usable key changes nothing.
    ///
    /// # Errors
    /// [`KeyError`] naming the file and the problem; the old keys stay.
    pub fn reload(&self) -> Result<(), KeyError> {
        crate::reload::one_at_a_time(|| {
            let commit = self.prepare()?;
            commit();
            Ok(())
        })
    }

    /// Reads the file; the returned step puts its keys in place.
    pub(crate) fn prepare(&self) -> Result<impl FnOnce() + Send + 'static, KeyError> {
        let next = KeySet::from_jwks_file(&self.path)?;
        let this = self.clone();
        Ok(move || {
            let mut guard = this
                .keys
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let next = guard.succeeded_by(next);
            *guard = Arc::new(next);
        })
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl KeySource for JwksFile {
    fn key_set<'a>(&'a self, _kid: Option<&'a str>) -> KeySetFuture<'a> {
        Box::pin(std::future::ready(Ok(self.current())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_set_may_hold_no_usable_key() {
        let mut skipped = Vec::new();
        let empty = KeySet::from_published_jwks_json(br#"{"keys":[]}"#, &mut skipped).unwrap();
        assert!(empty.is_empty() && skipped.is_empty());
        let oct = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        let withdrawn = KeySet::from_published_jwks_json(oct, &mut skipped).unwrap();
        assert!(withdrawn.is_empty());
        assert_eq!(skipped.len(), 1);
        assert!(withdrawn.select(Some("k1")).is_err() && withdrawn.select(None).is_err());
        // A configured set must hold a key.
        assert!(KeySet::from_jwks_json(br#"{"keys":[]}"#).is_err());
        assert!(KeySet::from_published_jwks_json(b"[]", &mut skipped).is_err());
    }

    fn error(json: &str) -> String {
        KeySet::from_jwks_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refuses_unusable_key_sets_with_a_reason() {
        assert!(error("not json").contains("not valid JSON"));
        assert!(error("{}").contains("no \"keys\" array"));
        assert!(error(r#"{"keys": []}"#).contains("no usable signature key"));
        assert!(
            error(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#)
                .contains("kid \"h\"): is a symmetric (oct) key")
        );
        assert!(
            error(r#"{"keys": [{"kty": "EC", "crv": "P-521", "x": "", "y": ""}]}"#)
                .contains("unsupported key type EC/P-521")
        );
        assert!(
            error(r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#)
                .contains("shorter than 2048 bits")
        );
        assert!(
            error(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}"#)
                .contains("32 bytes")
        );
    }

    #[test]
    fn the_size_bound_is_a_mebibyte_inclusive() {
        // A valid JWKS padded with whitespace to exactly 1 MiB is read; a byte more is not.
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwks = format!(r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "{x}"}}]}}"#);
        let padded = |len: usize| format!("{jwks}{}", " ".repeat(len - jwks.len()));
        assert!(KeySet::from_jwks_json(padded(1024 * 1024).as_bytes()).is_ok());
        assert!(error(&padded(1024 * 1024 + 1)).contains("larger than 1048576 bytes"));
        assert!(KeySet::from_jwks_json(padded(64 * 1024).as_bytes()).is_ok());
    }

    #[test]
    fn pins_the_algorithm_to_the_key() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwk = |alg: &str| {
            format!(r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "{x}"{alg}}}]}}"#)
        };
        let keys = KeySet::from_jwks_json(jwk("").as_bytes()).unwrap();
        assert_eq!(keys.keys[0].algorithms, vec![Algorithm::EdDSA]);
        assert!(error(&jwk(r#", "alg": "HS256""#)).contains("does not fit"));
        assert!(error(&jwk(r#", "alg": "RS256""#)).contains("does not fit"));
    }

    /// An Ed25519 JWK with this `kid`.
    fn ed25519_jwk(kid: &str) -> String {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        format!(r#"{{"kty": "OKP", "crv": "Ed25519", "x": "{x}", "kid": "{kid}"}}"#)
    }

    /// A key set of two Ed25519 keys, `a` and `b`.
    fn keys_a_and_b() -> KeySet {
        let two = format!(
            r#"{{"keys": [{}, {}]}}"#,
            ed25519_jwk("a"),
            ed25519_jwk("b")
        );
        KeySet::from_jwks_json(two.as_bytes()).unwrap()
    }

    #[test]
    fn selects_by_kid_and_requires_one_when_ambiguous() {
        let key = ed25519_jwk;
        let keys = keys_a_and_b();
        assert_eq!(keys.select(Some("b")).unwrap().kid.as_deref(), Some("b"));
        assert!(keys.select(Some("c")).is_err());
        assert!(keys.select(None).is_err());
        assert_eq!(keys.len(), 2);
        assert!(!keys.is_empty());
        // The only key serves a token without kid, whatever its own kid.
        let one =
            KeySet::from_jwks_json(format!(r#"{{"keys": [{}]}}"#, key("a")).as_bytes()).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one.select(None).unwrap().kid.as_deref(), Some("a"));
        assert!(one.select(Some("b")).is_err());
        let dup = format!(r#"{{"keys": [{}, {}]}}"#, key("a"), key("a"));
        assert!(error(&dup).contains("duplicate kid"));
    }

    #[test]
    fn knows_its_kids_and_retires_every_key() {
        let keys = keys_a_and_b();
        assert!(keys.has_kid("a") && keys.has_kid("b"));
        assert!(!keys.has_kid("c") && !keys.has_kid(""));
        assert!(keys.keys.iter().all(|k| !k.life.is_retired()));
        keys.retire_all();
        assert!(keys.keys.iter().all(|k| k.life.is_retired()));
    }

    #[test]
    fn each_ec_coordinate_must_have_the_curve_length() {
        let good = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let short = URL_SAFE_NO_PAD.encode([1u8; 31]);
        let jwk = |x: &str, y: &str| {
            format!(r#"{{"keys": [{{"kty": "EC", "crv": "P-256", "x": "{x}", "y": "{y}"}}]}}"#)
        };
        for (x, y) in [(&short, &good), (&good, &short), (&short, &short)] {
            assert!(error(&jwk(x, y)).contains("coordinates have the wrong length for P-256"));
        }
    }
}
