//! Every way a request can be refused, and the RFC 6750 response for each.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why a request was refused, as a value to match on: for logs, metrics and custom
/// responses, without reading descriptions. [`AuthError::reason`] gives it; new reasons
/// may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthReason {
    /// No bearer credentials at all.
    MissingCredentials,
    /// A malformed request: the `Authorization` header or a certificate header.
    MalformedRequest,
    /// The token is not a well-formed token of the kind the verifier reads.
    MalformedToken,
    /// `exp` has passed.
    Expired,
    /// `nbf` is still ahead.
    NotYetValid,
    /// The signature does not verify.
    BadSignature,
    /// The token names a key the verifier does not have, or names none where one is
    /// needed.
    UnknownKey,
    /// The algorithm is not one its key allows.
    WrongAlgorithm,
    /// `iss` is not the expected issuer.
    WrongIssuer,
    /// The issuer is none of those this server trusts.
    UnknownIssuer,
    /// `aud` does not name this resource.
    WrongAudience,
    /// The JOSE `typ` is not an access token's.
    WrongType,
    /// Critical header parameters this server does not understand.
    CriticalHeader,
    /// A claim is missing or has the wrong type.
    InvalidClaim,
    /// The authorization server says the token is not active (revoked, expired, unknown).
    Inactive,
    /// The token carries no certificate binding where one is required.
    NotBound,
    /// The token's `cnf` is of a shape this server cannot check.
    UnusableBinding,
    /// The token is bound to another certificate than the request's.
    OtherCertificate,
    /// The token is bound to a certificate, but the request presented none.
    NoCertificate,
    /// The client certificate is outside its validity period.
    CertificateExpired,
    /// The client certificate a proxy forwarded is revoked by a loaded CRL, or its
    /// revocation status is unknown and the policy refuses that.
    CertificateRevoked,
    /// The token lacks a scope the resource needs.
    InsufficientScope,
    /// The server cannot verify tokens now (no keys, authorization server unreachable).
    Unavailable,
    /// Anything else (custom verifiers and certificate sources).
    Other,
}

impl AuthReason {
    /// A stable snake_case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::MalformedRequest => "malformed_request",
            Self::MalformedToken => "malformed_token",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::WrongIssuer => "wrong_issuer",
            Self::UnknownIssuer => "unknown_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongType => "wrong_type",
            Self::CriticalHeader => "critical_header",
            Self::InvalidClaim => "invalid_claim",
            Self::Inactive => "inactive",
            Self::NotBound => "not_bound",
            Self::UnusableBinding => "unusable_binding",
            Self::OtherCertificate => "other_certificate",
            Self::NoCertificate => "no_certificate",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateRevoked => "certificate_revoked",
            Self::InsufficientScope => "insufficient_scope",
            Self::Unavailable => "unavailable",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for AuthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused. Each variant maps to one RFC 6750 §3.1 error code, except
/// [`Unavailable`](Self::Unavailable) (503: the server cannot decide).
///
/// Descriptions are written by this crate and never contain the token, a claim value
/// or certificate data, so they are safe to log and to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no bearer credentials at all (no `Authorization` header, or
    /// one with another scheme). Answered 401 with a bare `WWW-Authenticate: Bearer`,
    /// as RFC 6750 §3.1 asks for requests that lack any authentication information.
    MissingCredentials,
    /// The request is malformed: duplicate or oversized `Authorization`, bad syntax,
    /// or a certificate header that cannot be used. 400 `invalid_request`.
    #[non_exhaustive]
    InvalidRequest {
        /// Why, to match on.
        reason: AuthReason,
        /// What is wrong, for the client.
        description: Cow<'static, str>,
    },
    /// The token is expired, revoked, malformed, not for us, or not bound to the
    /// certificate of the request. 401 `invalid_token`.
    #[non_exhaustive]
    InvalidToken {
        /// Why, to match on.
        reason: AuthReason,
        /// What is wrong, for the client.
        description: Cow<'static, str>,
    },
    /// The token is valid but lacks a scope the resource needs. 403 `insufficient_scope`.
    InsufficientScope {
        /// The scope the resource requires.
        scope: Cow<'static, str>,
    },
    /// The server cannot verify the token now: no keys were ever fetched, the
    /// authorization server is unreachable. 503 with `Retry-After`; the token may be
    /// good, so it is not called invalid.
    #[non_exhaustive]
    Unavailable {
        /// What is unavailable, for the client (never the upstream's own error text).
        description: Cow<'static, str>,
        /// When to try again.
        retry_after: Duration,
    },
}

impl AuthError {
    /// An `invalid_request` error ([`AuthReason::MalformedRequest`]).
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest {
            reason: AuthReason::MalformedRequest,
            description: description.into(),
        }
    }

    /// An `invalid_token` error ([`AuthReason::Other`]; see
    /// [`invalid_token_because`](Self::invalid_token_because)).
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::invalid_token_because(AuthReason::Other, description)
    }

    /// An `invalid_token` error for `reason`.
    pub fn invalid_token_because(
        reason: AuthReason,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::InvalidToken {
            reason,
            description: description.into(),
        }
    }

    /// An `insufficient_scope` error naming the scope that is required.
    pub fn insufficient_scope(scope: impl Into<Cow<'static, str>>) -> Self {
        Self::InsufficientScope {
            scope: scope.into(),
        }
    }

    /// A 503: the token cannot be verified now; try again after `retry_after` (rounded
    /// up to whole seconds, at least one).
    pub fn unavailable(description: impl Into<Cow<'static, str>>, retry_after: Duration) -> Self {
        Self::Unavailable {
            description: description.into(),
            retry_after,
        }
    }

    /// Why, to match on.
    pub fn reason(&self) -> AuthReason {
        match self {
            Self::MissingCredentials => AuthReason::MissingCredentials,
            Self::InvalidRequest { reason, .. } | Self::InvalidToken { reason, .. } => *reason,
            Self::InsufficientScope { .. } => AuthReason::InsufficientScope,
            Self::Unavailable { .. } => AuthReason::Unavailable,
        }
    }

    /// The RFC 6750 error code (RFC 6749's `temporarily_unavailable` for a 503), or
    /// `None` for a request without credentials.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials => None,
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::InvalidToken { .. } => Some("invalid_token"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::Unavailable { .. } => Some("temporarily_unavailable"),
        }
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A human-readable description, safe to show the client.
    pub fn description(&self) -> Cow<'_, str> {
        match self {
            Self::MissingCredentials => Cow::Borrowed("an access token is required"),
            Self::InvalidRequest { description, .. }
            | Self::InvalidToken { description, .. }
            | Self::Unavailable { description, .. } => Cow::Borrowed(description),
            Self::InsufficientScope { scope } => {
                Cow::Owned(format!("the access token lacks the scope {scope}"))
            }
        }
    }

    /// The `Retry-After` of a 503, in whole seconds (at least 1).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after, .. } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(seconds.max(1))
            }
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge of RFC 6750 §3.
    pub fn www_authenticate(&self) -> HeaderValue {
        self.challenge(None)
    }

    /// The challenge, with RFC 9728's `resource_metadata` when there is one.
    fn challenge(&self, resource_metadata: Option<&str>) -> HeaderValue {
        let metadata = resource_metadata
            .map(|url| format!("resource_metadata=\"{}\"", quoted_string_safe(url)));
        let Some(code) = self.error_code() else {
            return match metadata {
                Some(metadata) => HeaderValue::from_str(&format!("Bearer {metadata}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
                None => HeaderValue::from_static("Bearer"),
            };
        };
        let mut value = format!(
            "Bearer error=\"{code}\", error_description=\"{}\"",
            quoted_string_safe(&self.description())
        );
        if let Self::InsufficientScope { scope } = self {
            value.push_str(&format!(", scope=\"{}\"", quoted_string_safe(scope)));
        }
        if let Some(metadata) = metadata {
            value.push_str(", ");
            value.push_str(&metadata);
        }
        // quoted_string_safe leaves only visible ASCII and spaces, which always form a
        // valid header value; the fallback is there so that this can never panic.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The response with the default JSON body
    /// `{"error": "...", "error_description": "..."}`.
    pub fn to_response(&self) -> Response {
        self.to_response_with(&Refusals::default())
    }

    /// The response, its body made by `responder` when one is given. Status,
    /// `WWW-Authenticate` (a 503 has `Retry-After` instead: it is no challenge) and
    /// `Cache-Control: no-store` are always set by this crate.
    pub(crate) fn to_response_with(&self, refusals: &Refusals) -> Response {
        let mut response = match &refusals.responder {
            Some(responder) => (responder.0)(self),
            None => self.default_body(),
        };
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        match self.retry_after() {
            Some(seconds) => {
                headers.remove(header::WWW_AUTHENTICATE);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            None => {
                let challenge = self.challenge(refusals.resource_metadata.as_deref());
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn default_body(&self) -> Response {
        let body = serde_json::json!({
            "error": self.error_code().unwrap_or("unauthorized"),
            "error_description": self.description(),
        });
        axum::Json(body).into_response()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error_code() {
            Some(code) => write!(f, "{code}: {}", self.description()),
            None => f.write_str(&self.description()),
        }
    }
}

impl std::error::Error for AuthError {}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

/// RFC 6750 §3 allows only `%x20-21 / %x23-5B / %x5D-7E` inside its quoted strings:
/// no quote, no backslash, nothing outside visible ASCII.
fn quoted_string_safe(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| matches!(c, ' '..='~') && c != '"' && c != '\\';
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if allowed(c) { c } else { '?' })
                .collect(),
        )
    }
}

/// Makes the body of every refusal, for applications that want their own format
/// (RFC 9457 problem details, say). Set with
/// [`MtlsBoundTokenLayerBuilder::error_response`](crate::MtlsBoundTokenLayerBuilder::error_response);
/// scope checks and extractors behind the layer use the same one.
#[derive(Clone)]
pub struct ErrorResponder(pub(crate) Arc<dyn Fn(&AuthError) -> Response + Send + Sync>);

impl fmt::Debug for ErrorResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorResponder(..)")
    }
}

/// How the layer answers refusals: its [`ErrorResponder`] and the RFC 9728 metadata
/// URL of its challenges. Put into the extensions of the requests it lets through, so
/// that scope checks and extractors behind it answer the same way.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals {
    pub(crate) responder: Option<ErrorResponder>,
    pub(crate) resource_metadata: Option<Arc<str>>,
}

impl Refusals {
    /// Whether these are the defaults (nothing to pass on).
    pub(crate) fn is_default(&self) -> bool {
        self.responder.is_none() && self.resource_metadata.is_none()
    }
}

/// A refusal from an extractor or scope check behind the layer: the error, rendered with
/// the layer's [`ErrorResponder`] (and challenge parameters) when the request passed
/// through one.
#[derive(Debug)]
pub struct AuthRejection {
    pub(crate) error: AuthError,
    pub(crate) refusals: Refusals,
}

impl AuthRejection {
    pub(crate) fn new(error: AuthError, extensions: &http::Extensions) -> Self {
        Self {
            error,
            refusals: extensions.get::<Refusals>().cloned().unwrap_or_default(),
        }
    }

    /// The error behind this rejection.
    pub fn error(&self) -> &AuthError {
        &self.error
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.error.to_response_with(&self.refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_without_credentials_has_no_error_code() {
        assert_eq!(AuthError::MissingCredentials.www_authenticate(), "Bearer");
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let err = AuthError::insufficient_scope("admin");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let value = err.www_authenticate();
        let value = value.to_str().unwrap();
        assert!(value.starts_with("Bearer error=\"insufficient_scope\""));
        assert!(value.ends_with(", scope=\"admin\""));
    }

    #[test]
    fn descriptions_are_escaped_for_quoted_strings() {
        let err = AuthError::invalid_token("bad \"quote\" and \\ and \u{e9}\r\n");
        let value = err.www_authenticate();
        assert_eq!(
            value.to_str().unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"bad ?quote? and ? and ???\""
        );
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_no_challenge() {
        let err = AuthError::unavailable("no keys yet", Duration::from_millis(2500));
        assert_eq!(err.reason(), AuthReason::Unavailable);
        assert_eq!(err.retry_after(), Some(3));
        let response = err.to_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            AuthError::unavailable("x", Duration::ZERO).retry_after(),
            Some(1)
        );
        assert_eq!(
            AuthError::unavailable("x", Duration::from_secs(7)).retry_after(),
            Some(7)
        );
        assert_eq!(AuthError::invalid_token("x").retry_after(), None);
    }

    #[test]
    fn reasons_are_matchable_and_named() {
        assert_eq!(
            AuthError::invalid_token_because(AuthReason::Expired, "the token has expired").reason(),
            AuthReason::Expired
        );
        assert_eq!(AuthError::invalid_token("x").reason(), AuthReason::Other);
        assert_eq!(
            AuthError::invalid_request("x").reason(),
            AuthReason::MalformedRequest
        );
        assert_eq!(
            AuthError::MissingCredentials.reason(),
            AuthReason::MissingCredentials
        );
        assert_eq!(
            AuthError::insufficient_scope("a").reason(),
            AuthReason::InsufficientScope
        );
        assert_eq!(
            AuthReason::OtherCertificate.to_string(),
            "other_certificate"
        );
    }

    #[test]
    fn challenges_point_at_the_resource_metadata() {
        let url = Some("https://api.example/.well-known/oauth-protected-resource");
        assert_eq!(
            AuthError::MissingCredentials.challenge(url),
            "Bearer resource_metadata=\"https://api.example/.well-known/oauth-protected-resource\""
        );
        assert_eq!(
            AuthError::invalid_token("expired").challenge(url),
            "Bearer error=\"invalid_token\", error_description=\"expired\", \
             resource_metadata=\"https://api.example/.well-known/oauth-protected-resource\""
        );
        assert_eq!(
            AuthError::insufficient_scope("admin").challenge(url),
            "Bearer error=\"insufficient_scope\", error_description=\"the access token lacks \
             the scope admin\", scope=\"admin\", \
             resource_metadata=\"https://api.example/.well-known/oauth-protected-resource\""
        );
    }

    #[test]
    fn every_response_is_no_store() {
        let response = AuthError::invalid_request("x").to_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
