//! Distinguished names as RFC 4514 strings.

use std::fmt::Write;

use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// RFC 4514 §2: RDNs in reverse order of the encoded sequence, separated by `,`;
/// the attributes of a multi-valued RDN joined by `+`.
pub(crate) fn rfc4514_string(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, attr);
        }
    }
    out
}

fn push_attribute(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    let oid = attr.attr_type().to_id_string();
    out.push_str(short_name(&oid).unwrap_or(&oid));
    out.push('=');
    match attr.as_str() {
        Ok(value) => push_escaped(out, value),
        // RFC 4514 §2.4: a value that is not a string is written as `#` and the hex of
        // its BER encoding.
        Err(_) => {
            out.push('#');
            let der = attr.attr_value().to_der_vec().unwrap_or_default();
            for byte in der {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// The short names RFC 4514 §3 lists; every other type is written as its dotted OID.
pub(crate) fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn push_escaped(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        push_escaped(&mut out, value);
        out
    }

    #[test]
    fn escapes_special_characters() {
        assert_eq!(escaped("a,b+c"), "a\\,b\\+c");
        assert_eq!(escaped("#x"), "\\#x");
        assert_eq!(escaped(" padded "), "\\ padded\\ ");
        assert_eq!(escaped("say \"hi\"; <ok>"), "say \\\"hi\\\"\\; \\<ok\\>");
        assert_eq!(escaped("x#y"), "x#y");
    }
}
