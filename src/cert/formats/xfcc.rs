//! Envoy / Istio `x-forwarded-client-cert` (XFCC).
//!
//! # What Envoy writes
//!
//! Elements separated by `,`, one per proxy that added one; each element is `Key=Value`
//! pairs separated by `;`. Envoy writes, in this order: `By=` its own URI SAN (once per
//! SAN), `Hash=` the hex SHA-256 of the client certificate's DER, then as configured
//! `Cert="…"` (the leaf) and `Chain="…"` (the whole chain, leaf first) as percent-encoded
//! PEM, `Subject="…"` (the subject in RFC 2253, as BoringSSL's `XN_FLAG_RFC2253` prints
//! it: `"`, `\`, `;`, `,` and `+` escaped with `\`), and `URI=…` and
//! `DNS=…` (the SANs, unquoted). Keys are case-insensitive (Envoy's documentation).
//!
//! Envoy escapes nothing: it puts quotes around the RFC 2253 text and writes SANs as they
//! stand in the certificate. The `\"`, `\\` and `\,` inside a Subject are the DN's own
//! escapes and go to the DN parser untouched, so the identity read from `Subject` is the
//! certificate's subject (a CN that is literally `\61lice` stays that, never `alice`).
//! It is written back as RFC 4514, as a handshake certificate's subject is. A Subject
//! that is not RFC 4514, such as the openssl one-line form `/C=US/O=…/CN=…` of Envoy's
//! documentation, cannot be read without guessing (its `/` and `=` are not escaped): the
//! identity then has no subject, and no `subject_dn` registration matches it.
//!
//! # Which element is the client
//!
//! The last one. Each proxy appends its own element at the end, so the last element is
//! the one the proxy nearest to this service wrote about its own TLS client, and that
//! proxy is the one the service trusts (by address or certificate). Every element before
//! it was written by someone further away, possibly the client itself (with
//! `APPEND_FORWARD` or a forward-only mode), and is only checked for its shape, never
//! used.
//!
//! # Why so strict
//!
//! The last element can be found only if the header splits into elements in one way.
//! The text before it may be the client's own, and a client that ends it inside an open
//! quote turns the quoted values of the proxy's element inside out: with a certificate
//! whose subject holds a `"`, the quotes balance again and a lenient parser reads one
//! element, carrying the `Hash` the client wrote: another client's. So a header is
//! read only when it is exactly what Envoy writes, and refused (400) otherwise:
//!
//! - a quote stands only right after `=` (opening a value) and right before `;`, `,` or
//!   the end (closing it); inside a quoted value `\` escapes the next character, as in
//!   RFC 2253;
//! - only Envoy's keys, `Hash`, `Cert`, `Chain` and `Subject` at most once per element;
//! - `Hash` is 64 hex digits, `Cert` and `Chain` hold only what percent-encoded PEM can,
//!   `Subject` no unescaped `;` (RFC 2253 escapes it): what a quote opened earlier
//!   would swallow of the proxy's element (its `,` and `;`) never fits in them;
//! - `By`, `Hash`, `URI` and `DNS` are never quoted, as Envoy never quotes them: a quote
//!   there is a SAN's own (Envoy writes a SAN `"q",Hash=…` as it stands) or one opened
//!   earlier in the header, swallowing the proxy's element;
//! - `URI` and `DNS` appear in the last element only: Envoy writes SANs unquoted, so one
//!   holding `,Hash=…` would fake an element boundary. (A quoted SAN before the last
//!   element cannot be told from that SAN written by Envoy, so it is refused too.)
//! - the elements read back to exactly the header.
//!
//! With these, nothing a client writes before the proxy's element, nor any SAN content,
//! changes which `Hash`, `Cert` or `Chain` binds. What a SAN holding `;` can still do,
//! when Envoy sends `URI` or `DNS` without `Cert`, is add SAN (or, without `Subject`,
//! subject) values to the identity: `URI=spiffe://x;DNS=admin.example` reads as two SANs.

use subtle::ConstantTimeEq;

use super::{FormatError, Forwarded, pem_chain, percent_decode};
use crate::cert::{DistinguishedName, PeerCertificate};

/// The keys Envoy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    By,
    Hash,
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

const KEYS: [(&str, Key); 7] = [
    ("By", Key::By),
    ("Hash", Key::Hash),
    ("Cert", Key::Cert),
    ("Chain", Key::Chain),
    ("Subject", Key::Subject),
    ("URI", Key::Uri),
    ("DNS", Key::Dns),
];

impl Key {
    fn named(name: &str) -> Option<Self> {
        KEYS.iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, key)| *key)
    }
}

/// One `name=value` as written: `value` without its quotes, escapes left as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair<'a> {
    name: &'a str,
    key: Key,
    value: &'a str,
    quoted: bool,
}

/// What one element says, checked; the values still as written.
#[derive(Default)]
struct Element<'a> {
    hash: Option<[u8; 32]>,
    cert: Option<&'a str>,
    chain: Option<&'a str>,
    subject: Option<&'a str>,
    uri: Vec<&'a str>,
    dns: Vec<&'a str>,
}

const EMPTY_PAIR: FormatError = "the x-forwarded-client-cert header has an empty pair or element \
     (';;', ',,', or one at either end)";
const NO_EQUALS: FormatError = "an x-forwarded-client-cert pair has no '='";
const QUOTE_IN_KEY: FormatError = "the x-forwarded-client-cert header has a quote in a key, so \
     its quoted values cannot be told apart";
const UNKNOWN_KEY: FormatError = "the x-forwarded-client-cert header has a key Envoy never \
     writes (it writes By, Hash, Cert, Chain, Subject, URI and DNS)";
const UNTERMINATED: FormatError = "the x-forwarded-client-cert header has an unterminated quote";
const AFTER_CLOSING_QUOTE: FormatError = "an x-forwarded-client-cert value's closing quote is \
     followed by something other than ';', ',' or the end: a bare '\"' inside a quoted value \
     makes the header ambiguous";
const QUOTE_IN_UNQUOTED: FormatError = "the x-forwarded-client-cert header has a quote inside an \
     unquoted value (a SAN holding '\"'?), which makes it ambiguous";
const NOT_ITSELF: FormatError =
    "the x-forwarded-client-cert header does not read back to itself from its elements";
const QUOTED: FormatError = "an x-forwarded-client-cert By, Hash, URI or DNS value is quoted, \
     which Envoy never does: the quote is a SAN's own or one opened earlier in the header";
const SAN_BEFORE_LAST: FormatError = "an x-forwarded-client-cert element before the last has a \
     URI or DNS value: Envoy writes SANs unquoted, so one holding ',' could fake the element \
     boundary (use SANITIZE_SET, or leave uri and dns out)";
const BAD_HASH: FormatError = "the x-forwarded-client-cert Hash is not a hex SHA-256";
const UNESCAPED_SEMICOLON: FormatError = "the x-forwarded-client-cert Subject holds an unescaped \
     ';', which RFC 2253 text never has: a quote opened earlier in the header?";
const NO_CERTIFICATE: FormatError =
    "the x-forwarded-client-cert element has no Cert, Chain or Hash";
const CERT_AND_CHAIN: FormatError =
    "the x-forwarded-client-cert Cert and Chain disagree on the leaf";
const SEVERAL_IN_CERT: FormatError = "the x-forwarded-client-cert Cert holds more than one \
     certificate (the chain belongs in Chain)";

/// The errors that name the key they are about.
struct KeyErrors {
    twice: FormatError,
    not_pem_text: FormatError,
    bad_percent: FormatError,
    not_pem: FormatError,
    invalid: FormatError,
    hash_disagrees: FormatError,
}

const CERT_ERRORS: KeyErrors = KeyErrors {
    twice: "the x-forwarded-client-cert element has Cert twice",
    not_pem_text: "the x-forwarded-client-cert Cert holds a character percent-encoded PEM never \
         has: a quote opened earlier in the header?",
    bad_percent: "the x-forwarded-client-cert Cert has a bad percent-encoding",
    not_pem: "the x-forwarded-client-cert Cert holds no PEM certificate",
    invalid: "the x-forwarded-client-cert Cert is not a valid certificate",
    hash_disagrees: "the x-forwarded-client-cert Hash and Cert disagree",
};

const CHAIN_ERRORS: KeyErrors = KeyErrors {
    twice: "the x-forwarded-client-cert element has Chain twice",
    not_pem_text: "the x-forwarded-client-cert Chain holds a character percent-encoded PEM never \
         has: a quote opened earlier in the header?",
    bad_percent: "the x-forwarded-client-cert Chain has a bad percent-encoding",
    not_pem: "the x-forwarded-client-cert Chain holds no PEM certificate",
    invalid: "the x-forwarded-client-cert Chain is not a valid certificate",
    hash_disagrees: "the x-forwarded-client-cert Hash and Chain disagree",
};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    let elements = split(value)?;
    // The tokenizer keeps every byte; this guards that it stays so.
    if !written_as(&elements, value) {
        return Err(NOT_ITSELF);
    }
    let Some((last, earlier)) = elements.split_last() else {
        return Err(EMPTY_PAIR);
    };
    for element in earlier {
        read_element(element, false)?;
    }
    certificate(read_element(last, true)?)
}

/// Splits the header into elements of pairs, refusing anything that could split
/// another way (see the module docs).
fn split(text: &str) -> Result<Vec<Vec<Pair<'_>>>, FormatError> {
    let bytes = text.as_bytes();
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut at = 0;
    loop {
        let start = at;
        let equals = loop {
            match bytes.get(at) {
                Some(b'=') => break at,
                Some(b'"') => return Err(QUOTE_IN_KEY),
                Some(b';' | b',') | None if at == start => return Err(EMPTY_PAIR),
                Some(b';' | b',') | None => return Err(NO_EQUALS),
                Some(_) => at += 1,
            }
        };
        let name = &text[start..equals];
        let key = Key::named(name).ok_or(UNKNOWN_KEY)?;
        at = equals + 1;
        let quoted = bytes.get(at) == Some(&b'"');
        let value = if quoted {
            let open = at + 1;
            at = open;
            loop {
                // Straight to the next byte that matters (a Cert value is kilobytes).
                at += bytes
                    .get(at..)
                    .and_then(|rest| memchr::memchr2(b'\\', b'"', rest))
                    .unwrap_or(bytes.len().saturating_sub(at));
                match bytes.get(at) {
                    None => return Err(UNTERMINATED),
                    // RFC 2253's escapes: the escaped byte never ends the value.
                    Some(b'\\') => at += 2,
                    Some(_) => break,
                }
            }
            let value = &text[open..at];
            at += 1;
            value
        } else {
            let open = at;
            at += memchr::memchr3(b';', b',', b'"', &bytes[at..]).unwrap_or(bytes.len() - at);
            if bytes.get(at) == Some(&b'"') {
                return Err(QUOTE_IN_UNQUOTED);
            }
            &text[open..at]
        };
        pairs.push(Pair {
            name,
            key,
            value,
            quoted,
        });
        match bytes.get(at) {
            None => {
                elements.push(pairs);
                return Ok(elements);
            }
            Some(b';') => {}
            Some(b',') => elements.push(std::mem::take(&mut pairs)),
            // Only after a closing quote: an unquoted value runs to `;`, `,` or the end.
            Some(_) => return Err(AFTER_CLOSING_QUOTE),
        }
        at += 1;
    }
}

/// Whether `elements`, written out the way they were read, are exactly `text`.
fn written_as(elements: &[Vec<Pair<'_>>], text: &str) -> bool {
    let mut rest = text.as_bytes();
    let mut take = |piece: &str| match rest.strip_prefix(piece.as_bytes()) {
        Some(after) => {
            rest = after;
            true
        }
        None => false,
    };
    for (i, element) in elements.iter().enumerate() {
        if i > 0 && !take(",") {
            return false;
        }
        for (j, pair) in element.iter().enumerate() {
            let quote = if pair.quoted { "\"" } else { "" };
            let written = (j == 0 || take(";"))
                && take(pair.name)
                && take("=")
                && take(quote)
                && take(pair.value)
                && take(quote);
            if !written {
                return false;
            }
        }
    }
    rest.is_empty()
}

/// Checks one element; `last` is the trusted proxy's own.
fn read_element<'a>(pairs: &[Pair<'a>], last: bool) -> Result<Element<'a>, FormatError> {
    let mut element = Element::default();
    for pair in pairs {
        match pair.key {
            Key::By | Key::Hash | Key::Uri | Key::Dns if pair.quoted => return Err(QUOTED),
            Key::Uri | Key::Dns if !last => return Err(SAN_BEFORE_LAST),
            Key::By => {}
            Key::Hash => {
                if element.hash.replace(sha256_hex(pair.value)?).is_some() {
                    return Err("the x-forwarded-client-cert element has Hash twice");
                }
            }
            Key::Cert => element.cert = Some(pem_value(element.cert, pair.value, &CERT_ERRORS)?),
            Key::Chain => {
                element.chain = Some(pem_value(element.chain, pair.value, &CHAIN_ERRORS)?);
            }
            Key::Subject => {
                if has_unescaped(pair.value, b';') {
                    return Err(UNESCAPED_SEMICOLON);
                }
                if element.subject.replace(pair.value).is_some() {
                    return Err("the x-forwarded-client-cert element has Subject twice");
                }
            }
            Key::Uri => element.uri.push(pair.value),
            Key::Dns => element.dns.push(pair.value),
        }
    }
    Ok(element)
}

fn sha256_hex(value: &str) -> Result<[u8; 32], FormatError> {
    hex::decode(value)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(BAD_HASH)
}

/// A `Cert` or `Chain` value, once, and only with what percent-encoded PEM holds: a
/// quote opened earlier would bring the proxy's `,` and `;` into it.
fn pem_value<'a>(
    slot: Option<&'a str>,
    value: &'a str,
    errors: &KeyErrors,
) -> Result<&'a str, FormatError> {
    if slot.is_some() {
        return Err(errors.twice);
    }
    let pem_byte = |b: u8| b.is_ascii_alphanumeric() || b"%-._~+/=".contains(&b);
    if !value.bytes().all(pem_byte) {
        return Err(errors.not_pem_text);
    }
    Ok(value)
}

/// Whether `value` holds `byte` other than right after a `\`.
fn has_unescaped(value: &str, byte: u8) -> bool {
    let mut escaped = false;
    for b in value.bytes() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == byte {
            return true;
        }
    }
    false
}

/// The client certificate the last element describes.
fn certificate(element: Element<'_>) -> Result<Forwarded, FormatError> {
    let cert = element
        .cert
        .map(|value| decode_pem(value, &CERT_ERRORS))
        .transpose()?;
    let chain = element
        .chain
        .map(|value| decode_pem(value, &CHAIN_ERRORS))
        .transpose()?;
    let (chain, errors) = match (cert, chain) {
        (Some(mut cert), chain) => {
            if cert.len() > 1 {
                return Err(SEVERAL_IN_CERT);
            }
            if let Some(mut chain) = chain {
                // `Chain` starts with the leaf: it must be `Cert`'s.
                if chain.first() != cert.first() {
                    return Err(CERT_AND_CHAIN);
                }
                cert.extend(chain.drain(1..));
            }
            (cert, &CERT_ERRORS)
        }
        (None, Some(chain)) => (chain, &CHAIN_ERRORS),
        (None, None) => {
            let hash = element.hash.ok_or(NO_CERTIFICATE)?;
            return Ok(Forwarded::Certificate(Box::new(
                PeerCertificate::from_attested_hash(
                    hash,
                    element.subject.and_then(rfc4514_subject),
                    element.dns.into_iter().map(str::to_owned).collect(),
                    element.uri.into_iter().map(str::to_owned).collect(),
                ),
            )));
        }
    };
    let certificate = PeerCertificate::read_lazily_chain(chain).map_err(|_| errors.invalid)?;
    if let Some(hash) = element.hash
        && !bool::from(certificate.thumbprint_bytes().ct_eq(&hash))
    {
        return Err(errors.hash_disagrees);
    }
    Ok(Forwarded::Certificate(Box::new(certificate)))
}

fn decode_pem(value: &str, errors: &KeyErrors) -> Result<Vec<Vec<u8>>, FormatError> {
    let pem = percent_decode(value).map_err(|_| errors.bad_percent)?;
    pem_chain(&pem).map_err(|_| errors.not_pem)
}

/// The Subject as RFC 4514, the way a handshake certificate's subject is written; `None`
/// for an empty one or one that is not RFC 4514 (see the module docs).
fn rfc4514_subject(subject: &str) -> Option<String> {
    match subject.parse::<DistinguishedName>() {
        Ok(name) => (!name.is_empty()).then(|| name.to_string()),
        Err(error) => {
            tracing::debug!(%error, "x-forwarded-client-cert Subject is not RFC 4514; no subject");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(byte: &str) -> String {
        byte.repeat(32)
    }

    fn refused(value: &str) -> FormatError {
        match parse(value) {
            Ok(_) => panic!("accepted: {value:?}"),
            Err(error) => error,
        }
    }

    fn attested(value: &str) -> Box<PeerCertificate> {
        match parse(value) {
            Ok(Forwarded::Certificate(cert)) => cert,
            Ok(Forwarded::Chain(_)) => unreachable!("XFCC gives a certificate"),
            Err(error) => panic!("{value:?}: {error}"),
        }
    }

    #[test]
    fn splits_where_envoy_joins() {
        let text = r#"By=a;Subject="CN=x\,O=\"y\;z\"";URI="u,v",Hash=00;DNS="#;
        let elements = split(text).unwrap();
        let read: Vec<Vec<(&str, &str, bool)>> = elements
            .iter()
            .map(|e| e.iter().map(|p| (p.name, p.value, p.quoted)).collect())
            .collect();
        assert_eq!(
            read,
            [
                vec![
                    ("By", "a", false),
                    ("Subject", r#"CN=x\,O=\"y\;z\""#, true),
                    ("URI", "u,v", true),
                ],
                vec![("Hash", "00", false), ("DNS", "", false)],
            ]
        );
        assert!(written_as(&elements, text));
    }

    #[test]
    fn reading_back_catches_what_the_split_must_never_produce() {
        let pair = |value, quoted| Pair {
            name: "URI",
            key: Key::Uri,
            value,
            quoted,
        };
        let elements = vec![vec![pair("a", false)], vec![pair("b", true)]];
        assert!(written_as(&elements, r#"URI=a,URI="b""#));
        for other in [
            r#"URI=a,URI=b"#,
            r#"URI="a",URI="b""#,
            r#"URI=a;URI="b""#,
            r#"URI=a,URI="b";"#,
            r#"URI=a,URI="b"#,
            r#"URI=a,URI="bb""#,
            r#"uri=a,URI="b""#,
        ] {
            assert!(!written_as(&elements, other), "{other}");
        }
    }

    #[test]
    fn reads_the_last_element_with_hash_only() {
        let value = format!(
            r#"Hash={};By=x,Hash={};Subject="CN=c,O=\"Q\, Inc\"";URI=spiffe://a/b;DNS=c.example;DNS=d.example"#,
            hash_of("00"),
            hash_of("ab")
        );
        let cert = attested(&value);
        assert_eq!(cert.thumbprint_bytes(), &[0xab; 32]);
        assert_eq!(cert.subject(), r#"CN=c,O=\"Q\, Inc\""#);
        assert_eq!(cert.san_uri(), ["spiffe://a/b"]);
        assert_eq!(cert.san_dns(), ["c.example", "d.example"]);
        assert!(cert.der().is_none());
    }

    #[test]
    fn a_comma_in_an_unquoted_san_cannot_forge_the_last_element() {
        let (victim, attacker) = (hash_of("ab"), hash_of("cd"));
        let forged =
            format!("By=x;Hash={attacker};Subject=\"CN=a\";URI=spiffe://e/x,Hash={victim}");
        assert_eq!(refused(&forged), SAN_BEFORE_LAST);
        let forged = format!("Hash={attacker};DNS=a.example,Hash={victim}");
        assert_eq!(refused(&forged), SAN_BEFORE_LAST);
        // Several hops without URI/DNS: still the last one.
        let hops = format!("By=outer;Hash={attacker},By=inner;Hash={victim}");
        assert_eq!(attested(&hops).thumbprint_bytes(), &[0xab; 32]);
        // Envoy writes a SAN `"q",Hash=<victim>` as it stands: what reads as a quoted SAN
        // before the last element may be that.
        let forged = format!("By=envoy;Hash={attacker};URI=\"q\",Hash={victim}");
        assert_eq!(refused(&forged), QUOTED);
        // A client's open quote closed by a SAN's quote, under APPEND_FORWARD.
        for opened in ["By", "URI", "DNS", "Hash"] {
            let forged = format!("{opened}=\",By=envoy;Hash={attacker};URI=q\",Hash={victim}");
            assert_eq!(refused(&forged), QUOTED, "{opened}");
        }
    }

    #[test]
    fn subject_escapes_reach_the_dn_parser() {
        let hash = hash_of("ab");
        let cert = attested(&format!(r#"Hash={hash};Subject="CN=evil\,O=Admins""#));
        assert_eq!(cert.subject(), r"CN=evil\,O=Admins");
        assert_ne!(cert.subject_name(), &"CN=evil,O=Admins".parse().unwrap());

        // RFC 2253 writes a CN of `\61lice` as `CN=\\61lice`; undoing `\\` would make
        // the DN parser read the hex escape `\61`, 'a'.
        // RFC 2253 escapes ';' too: an escaped one is the DN's, not a stray delimiter.
        let cert = attested(&format!(r#"Hash={hash};Subject="O=a\;b,CN=q\"""#));
        assert_eq!(cert.subject(), r#"O=a\;b,CN=q\""#);

        let cert = attested(&format!(r#"Hash={hash};Subject="CN=\\61lice""#));
        assert_eq!(cert.subject(), r"CN=\\61lice");
        assert_eq!(cert.subject_name(), &r"CN=\\61lice".parse().unwrap());
        assert_ne!(cert.subject_name(), &"CN=alice".parse().unwrap());
    }

    #[test]
    fn a_subject_that_is_not_rfc_4514_gives_no_subject() {
        let hash = hash_of("ab");
        for subject in ["/C=US/O=Lyft/CN=Test Client", "", "CN"] {
            let cert = attested(&format!(r#"Hash={hash};Subject="{subject}""#));
            assert_eq!(cert.subject(), "", "{subject:?}");
            assert!(cert.subject_name().is_empty(), "{subject:?}");
        }
    }

    #[test]
    fn refuses_malformed_elements_saying_why() {
        let hash = hash_of("ab");
        for (bad, why) in [
            (String::new(), EMPTY_PAIR),
            ("By=x,".into(), EMPTY_PAIR),
            (",By=x".into(), EMPTY_PAIR),
            (format!("Hash={hash};"), EMPTY_PAIR),
            (" ".into(), NO_EQUALS),
            ("By".into(), NO_EQUALS),
            ("Hash;By=x".into(), NO_EQUALS),
            (format!(" Hash={hash}"), UNKNOWN_KEY),
            (format!("Hash ={hash}"), UNKNOWN_KEY),
            (format!("Hash={hash};SAN=x"), UNKNOWN_KEY),
            (format!("Hash={hash};\"URI=x"), QUOTE_IN_KEY),
            (format!("Hash=\"{hash}"), UNTERMINATED),
            (format!("Hash={hash};Subject=\"CN=x\\\""), UNTERMINATED),
            (format!("Hash={hash};Subject=\"CN=x\\"), UNTERMINATED),
            (format!("Hash={hash}\""), QUOTE_IN_UNQUOTED),
            (format!("Hash=\"{hash}\"x"), AFTER_CLOSING_QUOTE),
            (
                format!("Hash={hash};Subject=\"a\"\"\""),
                AFTER_CLOSING_QUOTE,
            ),
            (format!("Hash={hash};Subject=\"a;b\""), UNESCAPED_SEMICOLON),
            (format!("Hash={hash};URI=\"u\""), QUOTED),
            (format!("Hash={hash};DNS=\"d\""), QUOTED),
            (format!("Hash={hash};By=\"b\""), QUOTED),
            (format!("Hash=\"{hash}\""), QUOTED),
            (format!("By=\"b\",Hash={hash}"), QUOTED),
            (format!("Hash={hash};URI=\"u\",Hash={hash}"), QUOTED),
            (format!("Hash={hash};URI=u,Hash={hash}"), SAN_BEFORE_LAST),
            (format!("Hash={hash};DNS=d,Hash={hash}"), SAN_BEFORE_LAST),
            ("Hash=zz".into(), BAD_HASH),
            (format!("Hash={}", hash_of("a")), BAD_HASH),
            (format!("Hash=zz,Hash={hash}"), BAD_HASH),
            (
                format!("Hash={hash};Hash={hash}"),
                "the x-forwarded-client-cert element has Hash twice",
            ),
            (
                format!("hash={hash};HASH={hash}"),
                "the x-forwarded-client-cert element has Hash twice",
            ),
            (
                format!("Hash={hash};Subject=\"\";Subject=\"\""),
                "the x-forwarded-client-cert element has Subject twice",
            ),
            ("Cert=abc;Cert=abc".into(), CERT_ERRORS.twice),
            ("Chain=abc;Chain=abc".into(), CHAIN_ERRORS.twice),
            ("Cert=\"a b\"".into(), CERT_ERRORS.not_pem_text),
            ("Chain=\"a\\\\b\"".into(), CHAIN_ERRORS.not_pem_text),
            ("Cert=%zz".into(), CERT_ERRORS.bad_percent),
            ("Chain=%zz".into(), CHAIN_ERRORS.bad_percent),
            ("Cert=not-pem".into(), CERT_ERRORS.not_pem),
            ("Chain=not-pem".into(), CHAIN_ERRORS.not_pem),
            ("By=x;URI=y".into(), NO_CERTIFICATE),
        ] {
            assert_eq!(parse(&bad).err(), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_envoys_in_any_case() {
        let hash = hash_of("ab");
        let cert = attested(&format!("by=x;HASH={hash};uRi=u;dns=d;subject=\"CN=c\""));
        assert_eq!(cert.thumbprint_bytes(), &[0xab; 32]);
        assert_eq!(cert.san_uri(), ["u"]);
        assert_eq!(cert.san_dns(), ["d"]);
        assert_eq!(cert.subject(), "CN=c");
        for (name, key) in KEYS {
            assert_eq!(Key::named(name), Some(key));
            assert_eq!(Key::named(&name.to_ascii_lowercase()), Some(key));
        }
        assert_eq!(Key::named("Bye"), None);
    }

    /// A small deterministic generator (xorshift), so that the search below is the same
    /// on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn pick<'a>(rng: &mut Rng, from: &'a [String]) -> &'a str {
        &from[rng.below(from.len())]
    }

    fn text(rng: &mut Rng, from: &[String], most: usize) -> String {
        (0..rng.below(most + 1)).map(|_| pick(rng, from)).collect()
    }

    /// Whatever a client writes before the proxy's element (APPEND_FORWARD) and whatever
    /// its SANs and subject hold, an accepted header binds the proxy's own `Hash`; and
    /// when the SANs hold nothing Envoy leaves unescaped, it says what the proxy's
    /// element alone says.
    #[test]
    fn nothing_the_client_controls_changes_what_binds() {
        let (victim, ours) = (hash_of("ab"), hash_of("cd"));
        let strings = |pieces: &[&str]| pieces.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        let prefix_pieces = {
            let mut pieces = strings(&[
                "Hash=", "Subject=", "Cert=", "Chain=", "URI=", "DNS=", "By=", "x=", "\"", "\\",
                ",", ";", "=", "CN=v", "a", "%41",
            ]);
            pieces.push(format!("Hash={victim}"));
            for key in ["By", "URI", "DNS", "Subject", "Cert", "Chain"] {
                pieces.push(format!("{key}=\""));
            }
            pieces
        };
        let san_pieces = {
            let mut pieces = strings(&["a", "\"", ",", ";", "=", "\"q\"", ":", "\\"]);
            pieces.push(format!("Hash={victim}"));
            pieces.push(format!(",Hash={victim}"));
            pieces.push(format!("\",Hash={victim}"));
            pieces.push(";Subject=\"CN=v\"".to_owned());
            pieces
        };
        // RFC 2253 as OpenSSL escapes it: whatever the subject holds, written escaped.
        let subject_chars = strings(&["a", "\"", "\\", ";", ",", "+", "=", " ", "CN"]);
        let escape = |value: &str| {
            value
                .chars()
                .map(|c| match c {
                    '"' | '\\' | ';' | ',' | '+' => format!("\\{c}"),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut plain) = (0, 0);
        for _ in 0..60_000 {
            let mut element = String::new();
            if rng.below(2) == 0 {
                element.push_str("By=spiffe://envoy;");
            }
            element.push_str(&format!("Hash={ours}"));
            if rng.below(2) == 0 {
                let cn = text(&mut rng, &subject_chars, 4);
                element.push_str(&format!(";Subject=\"CN={}\"", escape(&cn)));
            }
            let mut sans_are_plain = true;
            for key in ["URI", "DNS"] {
                for _ in 0..rng.below(3) {
                    let san = if rng.below(3) == 0 {
                        text(&mut rng, &san_pieces, 4)
                    } else {
                        "spiffe://c".to_owned()
                    };
                    sans_are_plain &= !san.contains(['"', ',', ';']);
                    element.push_str(&format!(";{key}={san}"));
                }
            }
            let header = match rng.below(3) {
                0 => element.clone(),
                _ => format!("{},{element}", text(&mut rng, &prefix_pieces, 10)),
            };
            let Ok(Forwarded::Certificate(cert)) = parse(&header) else {
                continue;
            };
            accepted += 1;
            assert_eq!(cert.thumbprint_bytes(), &[0xcd; 32], "{header}");
            if sans_are_plain {
                plain += 1;
                let alone = attested(&element);
                assert_eq!(cert.subject(), alone.subject(), "{header}");
                assert_eq!(cert.san_uri(), alone.san_uri(), "{header}");
                assert_eq!(cert.san_dns(), alone.san_dns(), "{header}");
            }
        }
        // The search reaches accepted headers, not only refusals.
        assert!(accepted > 1000 && plain > 1000, "{accepted} {plain}");
    }
}
