//! Every way a request can be refused, and the RFC 6750 response for each.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why a request was refused. Each variant maps to one RFC 6750 §3.1 error code.
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
    InvalidRequest {
        /// What is wrong, for the client.
        description: Cow<'static, str>,
    },
    /// The token is expired, revoked, malformed, not for us, or not bound to the
    /// certificate of the request. 401 `invalid_token`.
    InvalidToken {
        /// What is wrong, for the client.
        description: Cow<'static, str>,
    },
    /// The token is valid but lacks a scope the resource needs. 403 `insufficient_scope`.
    InsufficientScope {
        /// The scope the resource requires.
        scope: Cow<'static, str>,
    },
}

impl AuthError {
    /// An `invalid_request` error.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest {
            description: description.into(),
        }
    }

    /// An `invalid_token` error.
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidToken {
            description: description.into(),
        }
    }

    /// An `insufficient_scope` error naming the scope that is required.
    pub fn insufficient_scope(scope: impl Into<Cow<'static, str>>) -> Self {
        Self::InsufficientScope {
            scope: scope.into(),
        }
    }

    /// The RFC 6750 error code, or `None` for a request without credentials.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials => None,
            Self::InvalidRequest { .. } => Some("invalid_request"),
            Self::InvalidToken { .. } => Some("invalid_token"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// A human-readable description, safe to show the client.
    pub fn description(&self) -> Cow<'_, str> {
        match self {
            Self::MissingCredentials => Cow::Borrowed("an access token is required"),
            Self::InvalidRequest { description } | Self::InvalidToken { description } => {
                Cow::Borrowed(description)
            }
            Self::InsufficientScope { scope } => {
                Cow::Owned(format!("the access token lacks the scope {scope}"))
            }
        }
    }

    /// The `WWW-Authenticate` challenge of RFC 6750 §3.
    pub fn www_authenticate(&self) -> HeaderValue {
        let Some(code) = self.error_code() else {
            return HeaderValue::from_static("Bearer");
        };
        let mut value = format!(
            "Bearer error=\"{code}\", error_description=\"{}\"",
            quoted_string_safe(&self.description())
        );
        if let Self::InsufficientScope { scope } = self {
            value.push_str(&format!(", scope=\"{}\"", quoted_string_safe(scope)));
        }
        // quoted_string_safe leaves only visible ASCII and spaces, which always form a
        // valid header value; the fallback is there so that this can never panic.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The response with the default JSON body
    /// `{"error": "...", "error_description": "..."}`.
    pub fn to_response(&self) -> Response {
        self.to_response_with(None)
    }

    /// The response, its body made by `responder` when one is given. Status,
    /// `WWW-Authenticate` and `Cache-Control: no-store` are always set by this crate.
    pub(crate) fn to_response_with(&self, responder: Option<&ErrorResponder>) -> Response {
        let mut response = match responder {
            Some(responder) => (responder.0)(self),
            None => self.default_body(),
        };
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::WWW_AUTHENTICATE, self.www_authenticate());
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

/// A refusal from an extractor or scope check behind the layer: the error, rendered with
/// the layer's [`ErrorResponder`] when the request passed through one.
#[derive(Debug)]
pub struct AuthRejection {
    pub(crate) error: AuthError,
    pub(crate) responder: Option<ErrorResponder>,
}

impl AuthRejection {
    pub(crate) fn new(error: AuthError, extensions: &http::Extensions) -> Self {
        Self {
            error,
            responder: extensions.get::<ErrorResponder>().cloned(),
        }
    }

    /// The error behind this rejection.
    pub fn error(&self) -> &AuthError {
        &self.error
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        self.error.to_response_with(self.responder.as_ref())
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
    fn every_response_is_no_store() {
        let response = AuthError::invalid_request("x").to_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}
