//! Distinguished names: read from certificates, parsed from RFC 4514 strings, written
//! as RFC 4514 strings, and compared as names (RFC 8705 §2.1.2 `tls_client_auth_subject_dn`).

use std::fmt::{self, Write};
use std::str::FromStr;

use x509_parser::der_parser::asn1_rs::{Any, FromDer, Tag, ToDer};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The longest RFC 4514 string parsed; registered DNs are short.
const MAX_DN_LEN: usize = 4096;

/// A distinguished name, RDNs in RFC 4514 order (the reverse of the encoded sequence:
/// `CN=client,O=Example` has the CN first).
///
/// Equality is name equality, not string equality: attribute types by OID (`CN`, `cn`
/// and `2.5.4.3` are one type), values without leading, trailing or repeated spaces and
/// case-insensitively (the `caseIgnoreMatch` of RFC 4517 that these attributes use),
/// the attributes of a multi-valued RDN in any order, the RDNs in their order.
#[derive(Debug, Clone)]
pub struct DistinguishedName {
    rdns: Vec<Vec<Attribute>>,
}

#[derive(Debug, Clone)]
struct Attribute {
    /// Dotted OID.
    oid: String,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    Text(String),
    /// The DER encoding of a value that is not a string.
    Der(Vec<u8>),
}

/// Why a string is not an RFC 4514 distinguished name: the problem, and the attribute
/// where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 4514 distinguished name: {problem}{}", at.as_ref().map(|a| format!(" (at {a:?})")).unwrap_or_default())]
pub struct DnParseError {
    problem: String,
    at: Option<String>,
}

/// The attribute text shown in an error, at most.
const MAX_SHOWN: usize = 64;

#[allow(non_snake_case)]
fn DnParseError(problem: &'static str) -> DnParseError {
    DnParseError {
        problem: problem.to_owned(),
        at: None,
    }
}

impl DnParseError {
    /// Names the attribute the problem is in: `text` from its start up to the next `,`.
    fn at(mut self, text: &str) -> Self {
        if self.at.is_none() {
            let attribute = text.split(',').next().unwrap_or(text).trim();
            let shown: String = attribute.chars().take(MAX_SHOWN).collect();
            self.at = Some(if shown.len() < attribute.len() {
                format!("{shown}...")
            } else {
                shown
            });
        }
        self
    }
}

/// Short names and the OIDs they stand for: RFC 4514 §3, and a few more in common use.
const SHORT_NAMES: [(&str, &str); 13] = [
    ("CN", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("GIVENNAME", "2.5.4.42"),
    ("SURNAME", "2.5.4.4"),
];

/// Only RFC 4514's own short names are written; the rest as OIDs, which any reader
/// understands.
const WRITTEN_SHORT_NAMES: usize = 9;

impl DistinguishedName {
    pub(crate) fn from_x509(name: &X509Name<'_>) -> Self {
        let mut rdns: Vec<Vec<Attribute>> = name
            .iter_rdn()
            .map(|rdn| rdn.iter().map(Attribute::from_x509).collect())
            .collect();
        rdns.reverse();
        Self { rdns }
    }

    pub(crate) fn empty() -> Self {
        Self { rdns: Vec::new() }
    }

    /// Whether this is the empty name.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }
}

impl Attribute {
    fn from_x509(attr: &AttributeTypeAndValue<'_>) -> Self {
        let oid = attr.attr_type().to_id_string();
        let value = match attr.as_str() {
            Ok(text) => Value::Text(text.to_owned()),
            Err(_) => value_of_any(attr.attr_value()),
        };
        Self { oid, value }
    }
}

/// A string value of any ASN.1 string type, else the DER.
fn value_of_any(any: &Any<'_>) -> Value {
    let data = any.as_bytes();
    let text = match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match text {
        Some(text) => Value::Text(text),
        None => Value::Der(any.to_der_vec().unwrap_or_default()),
    }
}

impl PartialEq for DistinguishedName {
    fn eq(&self, other: &Self) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|(a, b)| same_rdn(a, b))
    }
}

impl Eq for DistinguishedName {}

impl DistinguishedName {
    /// Whether `other` has the same RDNs as this name but in another order: a DN written
    /// in openssl's display order (`C=US, O=Example, CN=client`) where RFC 4514 order
    /// (`CN=client,O=Example,C=US`) is meant. Two equal names are not "in another order".
    pub fn equals_in_other_order(&self, other: &Self) -> bool {
        if self.rdns.len() != other.rdns.len() || self == other {
            return false;
        }
        let mut unused: Vec<&Vec<Attribute>> = other.rdns.iter().collect();
        self.rdns.iter().all(|rdn| {
            match unused.iter().position(|candidate| same_rdn(rdn, candidate)) {
                Some(i) => {
                    unused.swap_remove(i);
                    true
                }
                None => false,
            }
        })
    }
}

/// Multi-valued RDNs compare as sets.
fn same_rdn(a: &[Attribute], b: &[Attribute]) -> bool {
    let key = |rdn: &[Attribute]| {
        let mut keys: Vec<(String, Comparable)> = rdn
            .iter()
            .map(|attr| (attr.oid.clone(), attr.value.comparable()))
            .collect();
        keys.sort();
        keys
    };
    a.len() == b.len() && key(a) == key(b)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Comparable {
    Text(String),
    Der(Vec<u8>),
}

impl Value {
    fn comparable(&self) -> Comparable {
        match self {
            Self::Text(text) => Comparable::Text(
                text.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase(),
            ),
            Self::Der(der) => Comparable::Der(der.clone()),
        }
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            for (j, attr) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_char('+')?;
                }
                let name = SHORT_NAMES[..WRITTEN_SHORT_NAMES]
                    .iter()
                    .find(|(_, oid)| *oid == attr.oid)
                    .map_or(attr.oid.as_str(), |(name, _)| name);
                write!(f, "{name}=")?;
                match &attr.value {
                    Value::Text(text) => write_escaped(f, text)?,
                    Value::Der(der) => {
                        f.write_char('#')?;
                        for byte in der {
                            write!(f, "{byte:02x}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn write_escaped(f: &mut impl Write, value: &str) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            '#' if i == 0 => f.write_str("\\#")?,
            ' ' if i == 0 || i == last => f.write_str("\\ ")?,
            '\0' => f.write_str("\\00")?,
            // Other whitespace at either end is written as hex, so that no reader
            // (this one trims only spaces) can take it for insignificant space.
            c if c.is_whitespace() && (i == 0 || i == last) => {
                let mut utf8 = [0u8; 4];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    write!(f, "\\{byte:02x}")?;
                }
            }
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

impl FromStr for DistinguishedName {
    type Err = DnParseError;

    /// Parses an RFC 4514 string: `CN=client\, Inc.+UID=7,O=Example,1.2.3.4=#0403414243`.
    /// Spaces around `,`, `+` and `=` are tolerated.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_DN_LEN {
            return Err(DnParseError("longer than 4096 bytes"));
        }
        let mut rdns = Vec::new();
        // RFC 4514 allows spaces around separators: only U+0020 is trimmed, never other
        // whitespace, which belongs to a value.
        let mut rest = text.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(Self { rdns });
        }
        if rest.starts_with('/') {
            return Err(openssl_one_line(rest));
        }
        loop {
            let mut rdn = Vec::new();
            loop {
                let (attr, after) = parse_attribute(rest).map_err(|e| e.at(rest))?;
                rdn.push(attr);
                rest = after.trim_start_matches(' ');
                match rest.chars().next() {
                    Some('+') => rest = rest[1..].trim_start_matches(' '),
                    _ => break,
                }
            }
            rdns.push(rdn);
            match rest.chars().next() {
                None => break,
                Some(',') => rest = rest[1..].trim_start_matches(' '),
                Some(_) => {
                    return Err(DnParseError("expected ',' or '+' between attributes").at(rest));
                }
            }
            if rest.is_empty() {
                return Err(DnParseError("ends with ','"));
            }
        }
        Ok(Self { rdns })
    }
}

/// The error for openssl's one-line form (`/C=US/O=Example/CN=client`, as `-subj` takes
/// it and older openssl prints it), showing the same name in RFC 4514 order.
fn openssl_one_line(text: &str) -> DnParseError {
    let rdns: Vec<&str> = text.split('/').filter(|rdn| !rdn.is_empty()).collect();
    let rfc4514: String = rdns
        .iter()
        .rev()
        .map(|rdn| rdn.replace(',', "\\,"))
        .collect::<Vec<_>>()
        .join(",");
    let problem = match rfc4514.parse::<DistinguishedName>() {
        Ok(dn) => format!(
            "this is openssl's one-line form, with the RDNs in the reverse order; in RFC \
             4514 it is {dn}"
        ),
        Err(_) => "this looks like openssl's one-line form (/C=../O=../CN=..); write it in \
                   RFC 4514 order instead: CN=..,O=..,C=.."
            .to_owned(),
    };
    DnParseError { problem, at: None }
}

fn parse_attribute(text: &str) -> Result<(Attribute, &str), DnParseError> {
    let (name, rest) = text
        .split_once('=')
        .ok_or(DnParseError("an attribute has no '='"))?;
    let name = name.trim_matches(' ');
    let oid = attribute_oid(name)?;
    let rest = rest.trim_start_matches(' ');
    let (value, rest) = if let Some(hex) = rest.strip_prefix('#') {
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        let der =
            hex::decode(&hex[..end]).map_err(|_| DnParseError("a #hex value is not hex pairs"))?;
        let (left, any) =
            Any::from_der(&der).map_err(|_| DnParseError("a #hex value is not BER"))?;
        if !left.is_empty() {
            return Err(DnParseError("a #hex value has bytes after its BER value"));
        }
        (value_of_any(&any), &hex[end..])
    } else {
        parse_string(rest)?
    };
    Ok((Attribute { oid, value }, rest))
}

/// Whether `name` is an RFC 4514 `numericoid`: two or more dot-separated decimal arcs
/// without leading zeros.
pub(crate) fn is_numeric_oid(name: &str) -> bool {
    name.contains('.')
        && name.split('.').all(|arc| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc == "0" || !arc.starts_with('0'))
        })
}

fn attribute_oid(name: &str) -> Result<String, DnParseError> {
    if name.is_empty() {
        return Err(DnParseError("an attribute type is empty"));
    }
    if let Some((_, oid)) = SHORT_NAMES
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
    {
        return Ok((*oid).to_owned());
    }
    let name = name
        .strip_prefix("OID.")
        .or_else(|| name.strip_prefix("oid."))
        .unwrap_or(name);
    if is_numeric_oid(name) {
        Ok(name.to_owned())
    } else {
        Err(DnParseError(
            "an attribute type is neither a known short name nor an OID",
        ))
    }
}

/// A string value up to the next unescaped `,` or `+`; escapes `\c` and `\xx` honoured.
fn parse_string(text: &str) -> Result<(Value, &str), DnParseError> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    // Trailing spaces are insignificant unless escaped.
    let mut significant = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b',' | b'+' => break,
            b'\\' => {
                let next = *bytes
                    .get(i + 1)
                    .ok_or(DnParseError("a value ends in '\\'"))?;
                if next.is_ascii_hexdigit() {
                    let pair = text
                        .get(i + 1..i + 3)
                        .ok_or(DnParseError("a \\ escape is cut short"))?;
                    out.push(
                        u8::from_str_radix(pair, 16)
                            .map_err(|_| DnParseError("a \\xx escape is not hex"))?,
                    );
                    i += 3;
                } else if b" \"#+,;<=>\\".contains(&next) {
                    out.push(next);
                    i += 2;
                } else {
                    return Err(DnParseError(
                        "a \\ escapes a character that needs no escaping",
                    ));
                }
                significant = out.len();
            }
            b'"' | b';' | b'<' | b'>' | 0 => {
                return Err(DnParseError("a value has an unescaped special character"));
            }
            b => {
                out.push(b);
                i += 1;
                if b != b' ' {
                    significant = out.len();
                }
            }
        }
    }
    out.truncate(significant);
    let value = String::from_utf8(out).map_err(|_| DnParseError("a value is not UTF-8"))?;
    Ok((Value::Text(value), &text[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(text: &str) -> DistinguishedName {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn names_compare_as_names() {
        assert_eq!(dn("CN=client-a,O=Example"), dn("cn=client-a, o=Example"));
        assert_eq!(
            dn("CN=client-a,O=Example"),
            dn("2.5.4.3=client-a,OID.2.5.4.10=Example")
        );
        assert_eq!(dn("CN=Client  A,O=Example"), dn("CN= client a ,O=EXAMPLE"));
        assert_eq!(dn("CN=a+UID=7,O=x"), dn("UID=7+CN=a,O=x"));
        assert_ne!(dn("CN=a,O=x"), dn("O=x,CN=a"));
        assert_ne!(dn("CN=a,O=x"), dn("CN=a,O=x,C=US"));
        assert_ne!(dn("CN=a+O=x"), dn("CN=a,O=x"));
        assert_eq!(dn("CN=#0c0161,O=x"), dn("CN=a,O=x"));
        assert_eq!(dn("CN=\\61\\2c b"), dn("CN=a\\, b"));
    }

    #[test]
    fn teletex_and_bmp_strings_are_read_as_text() {
        let text = |tag: Tag, data: &[u8]| match value_of_any(&Any::from_tag_and_data(tag, data)) {
            Value::Text(text) => Some(text),
            Value::Der(_) => None,
        };
        // T.61 as Latin-1, BMP as UTF-16 big-endian.
        assert_eq!(
            text(Tag::TeletexString, b"Caf\xe9").as_deref(),
            Some("Caf\u{e9}")
        );
        assert_eq!(
            text(Tag::BmpString, &[0, b'a', 0x20, 0xac]).as_deref(),
            Some("a\u{20ac}")
        );
        // An odd number of bytes is no BMP string: kept as DER, never a panic.
        assert_eq!(text(Tag::BmpString, &[0, b'a', 0]), None);
        assert_eq!(text(Tag::OctetString, b"a"), None);
    }

    #[test]
    fn an_escaped_comma_is_part_of_the_value() {
        let spoof = dn("CN=evil\\,O=Example");
        assert_eq!(spoof.rdns.len(), 1);
        assert_ne!(spoof, dn("CN=evil,O=Example"));
        assert_eq!(spoof.to_string(), "CN=evil\\,O=Example");
    }

    #[test]
    fn refuses_what_is_not_a_dn() {
        for bad in [
            "CN", "=x", "XX=y", "CN=a,", "CN=a;O=b", "CN=\"q\"", "CN=a\\", "CN=\\zz", "1.2.=x",
            "CN=#zz",
        ] {
            assert!(bad.parse::<DistinguishedName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_attribute() {
        let err = "CN=a,XX=y,O=b".parse::<DistinguishedName>().unwrap_err();
        assert!(err.to_string().contains("(at \"XX=y\")"), "{err}");
        let err = "CN=a,O=\"q\"".parse::<DistinguishedName>().unwrap_err();
        assert!(err.to_string().contains("O=\\\"q"), "{err}");
        let long = format!("CN={};", "x".repeat(100));
        let err = long.parse::<DistinguishedName>().unwrap_err().to_string();
        assert!(err.contains("unescaped special character"), "{err}");
        assert!(err.contains("xxx...") && err.len() < 200, "{err}");
    }

    #[test]
    fn openssl_one_line_form_is_refused_with_its_rfc4514_form() {
        let err = "/C=US/O=Example/CN=client-a"
            .parse::<DistinguishedName>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("one-line form"), "{err}");
        assert!(err.contains("CN=client-a,O=Example,C=US"), "{err}");
        let err = "/C=US/XX=1"
            .parse::<DistinguishedName>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("CN=..,O=..,C=.."), "{err}");
    }

    #[test]
    fn the_same_rdns_in_another_order_are_told_apart() {
        let cert = dn("CN=client-a,O=Example,C=US");
        assert!(dn("C=US, O=Example, CN=client-a").equals_in_other_order(&cert));
        assert!(dn("O=Example,CN=client-a,C=US").equals_in_other_order(&cert));
        assert!(!cert.equals_in_other_order(&cert));
        assert!(!dn("C=US,O=Other,CN=client-a").equals_in_other_order(&cert));
        assert!(!dn("C=US,CN=client-a").equals_in_other_order(&cert));
        assert!(!dn("CN=a,CN=a,O=x").equals_in_other_order(&dn("CN=a,O=x,O=x")));
    }

    #[test]
    fn writes_rfc4514() {
        assert_eq!(dn("cn=a\\+b,o=\\#x ").to_string(), "CN=a\\+b,O=\\#x");
        assert_eq!(
            dn("CN=\\ lead,EMAILADDRESS=a@b").to_string(),
            "CN=\\ lead,1.2.840.113549.1.9.1=a@b"
        );
        // '#' is special only first; other whitespace only at either end.
        assert_eq!(dn("CN=a#b").to_string(), "CN=a#b");
        assert_eq!(dn("CN=\\09a\\09b\\09").to_string(), "CN=\\09a\tb\\09");
        assert_eq!(dn("CN=a\\09").to_string(), "CN=a\\09");
        assert_eq!(dn("CN=\\09a").to_string(), "CN=\\09a");
    }

    #[test]
    fn names_up_to_4096_bytes_are_read() {
        let name = |len: usize| format!("CN={}", "x".repeat(len - 3));
        assert_eq!(name(MAX_DN_LEN).len(), MAX_DN_LEN);
        assert!(name(MAX_DN_LEN).parse::<DistinguishedName>().is_ok());
        let err = name(MAX_DN_LEN + 1)
            .parse::<DistinguishedName>()
            .unwrap_err();
        assert!(err.to_string().contains("4096"), "{err}");
    }
}
