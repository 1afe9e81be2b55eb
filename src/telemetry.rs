//! Metrics, through the [`metrics`] facade: install any recorder (for Prometheus,
//! `metrics-exporter-prometheus`) and these appear; without one they cost a check.
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`REQUESTS`] | counter | `outcome` (`accepted`, `refused`), `reason` (`accepted`, or the [`AuthReason`](crate::AuthReason) name: `missing_credentials`, `expired`, `other_certificate`, `certificate_revoked`, …; `insufficient_scope` from the scope gates) |
//! | [`HANDSHAKE_FAILURES`] | counter | `cause` (`unknown_ca`, `expired`, `revoked`, `no_certificate`, `timeout`, …) |
//! | [`TOKEN_CACHE_HITS`], [`TOKEN_CACHE_MISSES`] | counter | |
//! | [`UNTRUSTED_PROXY_HEADERS`] | counter | |
//! | [`OCSP_ANSWERS`] | counter | `answer` (`good`, `revoked`, `unknown`, `no_answer`) |
//! | [`RELOADS`] | counter | `result` (`ok`, `failed`) |
//! | [`SOONEST_EXPIRY`] | gauge | `kind` (`server_certificate`, `client_ca`, `crl_next_update`, `any`) |
//!
//! A request the layer lets through counts as `accepted`; when a scope gate
//! ([`RequireScopeLayer`](crate::RequireScopeLayer), [`WithScope`](crate::WithScope)) then
//! refuses it, it counts once more, as `refused`/`insufficient_scope`.

/// Requests the layer decided, by outcome and reason.
pub const REQUESTS: &str = "mtls_bound_token_requests_total";
/// TLS handshakes that failed, by cause.
pub const HANDSHAKE_FAILURES: &str = "mtls_bound_token_handshake_failures_total";
/// Tokens whose verification came from the verified-token cache.
pub const TOKEN_CACHE_HITS: &str = "mtls_bound_token_token_cache_hits_total";
/// Tokens verified anew (not in the cache, or no longer valid there).
pub const TOKEN_CACHE_MISSES: &str = "mtls_bound_token_token_cache_misses_total";
/// Certificate headers that came from a peer that is not a trusted proxy (ignored).
pub const UNTRUSTED_PROXY_HEADERS: &str = "mtls_bound_token_untrusted_proxy_headers_total";
/// OCSP answers about client certificates, by answer.
pub const OCSP_ANSWERS: &str = "mtls_bound_token_ocsp_answers_total";
/// Reloads of certificates, keys, CRLs and JWKS files, by result.
pub const RELOADS: &str = "mtls_bound_token_reloads_total";
/// The soonest expiry (Unix seconds) among the loaded certificates of a kind: the
/// server's, the client CAs', and the CRLs' `nextUpdate`; `kind="any"` over all.
pub const SOONEST_EXPIRY: &str = "mtls_bound_token_soonest_expiry_timestamp_seconds";

/// Registers the descriptions of these metrics with the installed recorder (optional:
/// the metrics work without it; exporters then show no help text).
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests the layer decided, by outcome and reason"
    );
    metrics::describe_counter!(HANDSHAKE_FAILURES, "TLS handshakes that failed, by cause");
    metrics::describe_counter!(TOKEN_CACHE_HITS, "Verifications served by the token cache");
    metrics::describe_counter!(TOKEN_CACHE_MISSES, "Tokens verified anew");
    metrics::describe_counter!(
        UNTRUSTED_PROXY_HEADERS,
        "Certificate headers from peers that are not trusted proxies (ignored)"
    );
    metrics::describe_counter!(OCSP_ANSWERS, "OCSP answers about client certificates");
    metrics::describe_counter!(
        RELOADS,
        "Reloads of certificates, keys, CRLs and JWKS files"
    );
    metrics::describe_gauge!(
        SOONEST_EXPIRY,
        metrics::Unit::Seconds,
        "Soonest expiry (Unix time) among loaded certificates, by kind"
    );
}

pub(crate) fn request(outcome: &'static str, reason: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome, "reason" => reason).increment(1);
}

pub(crate) fn handshake_failure(cause: &'static str) {
    metrics::counter!(HANDSHAKE_FAILURES, "cause" => cause).increment(1);
}

pub(crate) fn token_cache(hit: bool) {
    match hit {
        true => metrics::counter!(TOKEN_CACHE_HITS).increment(1),
        false => metrics::counter!(TOKEN_CACHE_MISSES).increment(1),
    }
}

pub(crate) fn untrusted_proxy_header() {
    metrics::counter!(UNTRUSTED_PROXY_HEADERS).increment(1);
}

pub(crate) fn ocsp(answer: &'static str) {
    metrics::counter!(OCSP_ANSWERS, "answer" => answer).increment(1);
}

pub(crate) fn reload(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(RELOADS, "result" => result).increment(1);
}

pub(crate) fn soonest_expiry(kind: &'static str, unix_seconds: i64) {
    metrics::gauge!(SOONEST_EXPIRY, "kind" => kind).set(unix_seconds as f64);
}
