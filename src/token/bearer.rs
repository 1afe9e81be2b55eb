//! The bearer token of a request: `Authorization: Bearer <token68>` (RFC 6750 §2.1).
//!
//! Only the header is read. RFC 6750 §2.2 and §2.3 (form body, `access_token` query
//! parameter) are deliberately not supported: a token in a URL ends up in logs.

use http::{HeaderMap, header};

use crate::AuthError;

/// The token of the single `Authorization: Bearer` header.
pub(crate) fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingCredentials);
    };
    if values.next().is_some() {
        return Err(AuthError::invalid_request(
            "the request has more than one Authorization header",
        ));
    }
    if value.len() > max_len {
        return Err(AuthError::invalid_request(
            "the Authorization header is too large",
        ));
    }
    let value = value.to_str().map_err(|_| {
        AuthError::invalid_request("the Authorization header is not printable ASCII")
    })?;

    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, DPoP, ...) carries no bearer credentials: answer with
        // the bare challenge so that the client learns which scheme is expected.
        return Err(AuthError::MissingCredentials);
    }
    let token = credentials.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::invalid_request(
            "the Bearer credentials are empty",
        ));
    }
    if !is_token68(token) {
        return Err(AuthError::invalid_request(
            "the bearer token is not in token68 syntax",
        ));
    }
    Ok(token)
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    #[test]
    fn reads_the_token_case_insensitively() {
        assert_eq!(bearer_token(&with(&[b"Bearer a.b.c"]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&[b"bEaReR  a.b.c"]), 100), Ok("a.b.c"));
    }

    #[test]
    fn refuses_what_is_not_one_bearer_token68() {
        let code = |values: &[&[u8]]| bearer_token(&with(values), 100).unwrap_err().error_code();
        assert_eq!(code(&[]), None);
        assert_eq!(code(&[b"Basic dXNlcjpwdw=="]), None);
        assert_eq!(code(&[b"Bearer"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer "]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer a b"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer a\"b"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer ==="]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer \xff\xfe"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer a", b"Bearer a"]), Some("invalid_request"));
        let long = format!("Bearer {}", "a".repeat(200));
        assert_eq!(code(&[long.as_bytes()]), Some("invalid_request"));
    }
}
