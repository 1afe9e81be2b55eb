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
    // Bytes, not a str: printable ASCII is one fast scan (a header value holds no
    // control character but HTAB), and token68 one pass.
    let value = value.as_bytes();
    if !value.is_ascii() {
        return Err(AuthError::invalid_request(
            "the Authorization header is not printable ASCII",
        ));
    }
    // The credentials keep the space that ends the scheme; spaces are trimmed below.
    let space = value.iter().position(|b| *b == b' ').unwrap_or(value.len());
    let (scheme, credentials) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, DPoP, ...) carries no bearer credentials: answer with
        // the bare challenge so that the client learns which scheme is expected.
        return Err(AuthError::MissingCredentials);
    }
    // RFC 6750 §2.1: spaces (and only spaces) around the token.
    let Some(first) = credentials.iter().position(|b| *b != b' ') else {
        return Err(AuthError::invalid_request(
            "the Bearer credentials are empty",
        ));
    };
    let last = credentials
        .iter()
        .rposition(|b| *b != b' ')
        .unwrap_or(first);
    let token = &credentials[first..=last];
    if !is_token68(token) {
        return Err(AuthError::invalid_request(
            "the bearer token is not in token68 syntax",
        ));
    }
    // token68 is ASCII, so this cannot fail.
    std::str::from_utf8(token)
        .map_err(|_| AuthError::invalid_request("the bearer token is not in token68 syntax"))
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_token68(token: &[u8]) -> bool {
    let body = match token.iter().rposition(|b| *b != b'=') {
        Some(last) => &token[..=last],
        None => return false,
    };
    // Without early exit or branches, so that the compiler can check many bytes at a
    // time: this runs over every token of every request.
    body.iter().fold(true, |ok, &b| ok & token68_byte(b))
}

fn token68_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
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
    fn token68_is_exactly_its_alphabet_then_padding() {
        for b in 0..=255u8 {
            let allowed =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_token68(&[b'a', b]), allowed || b == b'=', "{b:#04x}");
            assert_eq!(is_token68(&[b, b'a']), allowed, "{b:#04x}");
            assert_eq!(token68_byte(b), allowed, "{b:#04x}");
        }
        assert!(is_token68(b"a=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b""));
    }

    #[test]
    fn reads_the_token_case_insensitively() {
        assert_eq!(bearer_token(&with(&[b"Bearer a.b.c"]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&[b"bEaReR  a.b.c"]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&[b"Bearer a.b.c  "]), 100), Ok("a.b.c"));
        assert_eq!(bearer_token(&with(&[b"Bearer a"]), 100), Ok("a"));
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
        assert_eq!(code(&[b"B\xffarer a"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer \ta"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer a\t"]), Some("invalid_request"));
        assert_eq!(code(&[b"Bearer a", b"Bearer a"]), Some("invalid_request"));
        let long = format!("Bearer {}", "a".repeat(200));
        assert_eq!(code(&[long.as_bytes()]), Some("invalid_request"));
    }
}
