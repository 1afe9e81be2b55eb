//! Envoy / Istio `x-forwarded-client-cert`.
//!
//! Elements are separated by `,`, one per proxy hop; the last is the hop nearest to us.
//! An element is `Key=Value` pairs separated by `;`; keys are case-insensitive; a value
//! may be double-quoted, with `\"` and `\\` escapes, and then may contain `,` `;` `=`.
//! `Cert` is the leaf and `Chain` the whole chain, percent-encoded PEM; `Hash` is the hex
//! SHA-256 of the leaf's DER; `Subject`, `URI`, `DNS` describe the leaf.

use std::borrow::Cow;

use subtle::ConstantTimeEq;

use super::{FormatError, Forwarded, pem_chain, percent_decode};
use crate::cert::PeerCertificate;

#[derive(Default)]
struct Element<'a> {
    cert: Option<Cow<'a, str>>,
    chain: Option<Cow<'a, str>>,
    hash: Option<Cow<'a, str>>,
    subject: Option<Cow<'a, str>>,
    uri: Vec<String>,
    dns: Vec<String>,
}

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    let (last, earlier) = last_element(value)?;
    let last = last.trim();
    if last.is_empty() {
        return Err("the x-forwarded-client-cert element is empty");
    }
    // Envoy writes URI and DNS values unquoted, so a SAN containing ",Hash=..." would
    // forge a last element. With several elements, one carrying URI or DNS makes the
    // boundaries ambiguous: refuse rather than guess.
    if !earlier.is_empty() && has_unquoted_san(earlier)? {
        return Err(
            "the x-forwarded-client-cert has several elements with unquoted URI/DNS values; \
                    its element boundaries are ambiguous (use SANITIZE_SET, or leave uri/dns out)",
        );
    }
    let element = read_element(last)?;

    let hash = match &element.hash {
        Some(hex) => Some(
            hex::decode(hex.as_ref())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or("the x-forwarded-client-cert Hash is not a hex SHA-256")?,
        ),
        None => None,
    };
    let mut chain = match &element.chain {
        Some(chain) => pem_chain(&percent_decode(chain)?)?,
        None => Vec::new(),
    };
    if let Some(cert) = &element.cert {
        let mut leaf = pem_chain(&percent_decode(cert)?)?;
        leaf.truncate(1);
        // `Chain` starts with the leaf too; keep it once.
        if chain.first() == leaf.first() {
            chain.remove(0);
        }
        leaf.append(&mut chain);
        chain = leaf;
    }

    if chain.is_empty() {
        let hash = hash.ok_or("the x-forwarded-client-cert element has no Cert, Chain or Hash")?;
        return Ok(Forwarded::Certificate(Box::new(
            PeerCertificate::from_attested_hash(
                hash,
                element.subject.map(Cow::into_owned),
                element.dns,
                element.uri,
            ),
        )));
    }
    let certificate = PeerCertificate::from_chain(chain)
        .map_err(|_| "the x-forwarded-client-cert Cert is not a valid certificate")?;
    if let Some(hash) = hash
        && !bool::from(certificate.thumbprint_bytes().ct_eq(&hash))
    {
        return Err("the x-forwarded-client-cert Hash and Cert disagree");
    }
    Ok(Forwarded::Certificate(Box::new(certificate)))
}

fn read_element(element: &str) -> Result<Element<'_>, FormatError> {
    let mut out = Element::default();
    for pair in split_outside_quotes(element, b';')? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or("an x-forwarded-client-cert pair has no '='")?;
        let value = unquote(value.trim())?;
        match key.trim().to_ascii_lowercase().as_str() {
            "cert" => once(&mut out.cert, value)?,
            "chain" => once(&mut out.chain, value)?,
            "hash" => once(&mut out.hash, value)?,
            "subject" => once(&mut out.subject, value)?,
            "uri" => out.uri.push(value.into_owned()),
            "dns" => out.dns.push(value.into_owned()),
            _ => {}
        }
    }
    Ok(out)
}

fn once<'a>(slot: &mut Option<Cow<'a, str>>, value: Cow<'a, str>) -> Result<(), FormatError> {
    if slot.replace(value).is_some() {
        Err("the x-forwarded-client-cert element repeats Cert, Chain, Hash or Subject")
    } else {
        Ok(())
    }
}

/// The last element (the text after the last `,` outside quotes) and what precedes it.
fn last_element(text: &str) -> Result<(&str, &str), FormatError> {
    let mut start = 0;
    scan(text, b',', |at| start = at + 1)?;
    Ok((&text[start..], &text[..start]))
}

/// Whether any pair in `text` (elements joined by `,`) has a `URI` or `DNS` key.
fn has_unquoted_san(text: &str) -> Result<bool, FormatError> {
    for element in split_outside_quotes(text, b',')? {
        for pair in split_outside_quotes(element, b';')? {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key).trim();
            if key.eq_ignore_ascii_case("uri") || key.eq_ignore_ascii_case("dns") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Splits on `separator` (ASCII) where it stands outside double quotes.
fn split_outside_quotes(text: &str, separator: u8) -> Result<Vec<&str>, FormatError> {
    let mut parts = Vec::new();
    let mut start = 0;
    scan(text, separator, |at| {
        parts.push(&text[start..at]);
        start = at + 1;
    })?;
    parts.push(&text[start..]);
    Ok(parts)
}

/// Calls `found` with the index of every `separator` outside double quotes (where `\"`
/// and `\\` are escapes).
fn scan(text: &str, separator: u8, mut found: impl FnMut(usize)) -> Result<(), FormatError> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b if b == separator && !quoted => found(i),
            _ => {}
        }
    }
    if quoted {
        return Err("the x-forwarded-client-cert header has an unterminated quote");
    }
    Ok(())
}

/// A value as written, or the content of its quotes with `\"` and `\\` unescaped.
fn unquote(value: &str) -> Result<Cow<'_, str>, FormatError> {
    let Some(inner) = value.strip_prefix('"') else {
        if value.contains('"') {
            return Err("an x-forwarded-client-cert value has a stray quote");
        }
        return Ok(Cow::Borrowed(value));
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or("an x-forwarded-client-cert value has an unterminated quote")?;
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    // Only the quoted string's own escapes are undone: a Subject's RFC 4514 escapes
    // (`CN=a\\,O=b`) must reach the DN parser as they are.
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('"' | '\\')) => out.extend(chars.next()),
            ('\\', None) => return Err("an x-forwarded-client-cert value ends in '\\'"),
            (c, _) => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respecting_quotes() {
        let text = r#"By=a;Subject="CN=x,O=\"y;z\"";URI=u,Hash=00"#;
        let parts = split_outside_quotes(text, b',').unwrap();
        assert_eq!(parts, [r#"By=a;Subject="CN=x,O=\"y;z\"";URI=u"#, "Hash=00"]);
        assert_eq!(last_element(text).unwrap().0, "Hash=00");
        assert!(split_outside_quotes(r#"Subject="open"#, b',').is_err());
        assert!(last_element(r#"Subject="open"#).is_err());
    }

    #[test]
    fn reads_the_last_element_with_hash_only() {
        let hash = "ab".repeat(32);
        let value = format!(
            r#"Hash={};By=x,Hash={hash};Subject="CN=c,O=\"Q, Inc\"";URI=spiffe://a/b;DNS=c.example;DNS=d.example"#,
            "00".repeat(32)
        );
        let Ok(Forwarded::Certificate(cert)) = parse(&value) else {
            panic!("hash-only element");
        };
        assert_eq!(cert.thumbprint_bytes(), &[0xab; 32]);
        assert_eq!(cert.subject(), "CN=c,O=\"Q, Inc\"");
        assert_eq!(cert.san_uri(), ["spiffe://a/b"]);
        assert_eq!(cert.san_dns(), ["c.example", "d.example"]);
        assert!(cert.der().is_none());
    }

    #[test]
    fn a_comma_in_an_unquoted_san_cannot_forge_the_last_element() {
        let victim = "ab".repeat(32);
        let attacker = "cd".repeat(32);
        let forged =
            format!("By=x;Hash={attacker};Subject=\"CN=a\";URI=spiffe://e/x,Hash={victim}");
        assert!(parse(&forged).is_err());
        let forged = format!("Hash={attacker};DNS=a.example,Hash={victim}");
        assert!(parse(&forged).is_err());
        // Several hops without URI/DNS: still the last one.
        let hops = format!("By=outer;Hash={attacker},By=inner;Hash={victim}");
        let Ok(Forwarded::Certificate(cert)) = parse(&hops) else {
            panic!("two hops");
        };
        assert_eq!(cert.thumbprint_bytes(), &[0xab; 32]);
    }

    #[test]
    fn subject_escapes_reach_the_dn_parser() {
        let hash = "ab".repeat(32);
        let value = format!(r#"Hash={hash};Subject="CN=evil\,O=Admins""#);
        let Ok(Forwarded::Certificate(cert)) = parse(&value) else {
            panic!("hash-only element");
        };
        assert_eq!(cert.subject(), r"CN=evil\,O=Admins");
        assert_ne!(cert.subject_name(), &"CN=evil,O=Admins".parse().unwrap());
    }

    #[test]
    fn refuses_malformed_elements() {
        let hash = "ab".repeat(32);
        for bad in [
            String::new(),
            " ".into(),
            "By=x,".into(),
            "By=x".into(),
            "Hash=zz".into(),
            format!("Hash={hash};Hash={hash}"),
            format!("hash={hash};HASH={hash}"),
            "Cert=abc;Cert=abc".into(),
            "Cert=%zz".into(),
            "Cert=not-pem".into(),
            "Hash".into(),
            format!("Hash=\"{hash}"),
            format!("Hash={hash}\""),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
