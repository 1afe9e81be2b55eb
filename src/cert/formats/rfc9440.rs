//! RFC 9440: `Client-Cert` is a structured-field byte sequence `:base64-DER:` (RFC 8941
//! §3.3.5); `Client-Cert-Chain` a list of them, issuers of the leaf. The chain may come
//! on several field lines (§2.3); the caller joins them in order into one list, as RFC
//! 9110 §5.3 combines field lines, before it reaches [`parse`].

use sfv::{BareItem, Item, List, ListEntry, Parser};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{FormatError, Forwarded};

/// The leaf of `Client-Cert`. The usual form, exactly `:` padded base64 `:`, is decoded
/// directly; anything else (parameters, spaces, unpadded base64) goes through the
/// structured-field parser, which gives the same bytes where both accept.
fn leaf(value: &str) -> Result<Vec<u8>, FormatError> {
    if let Some(der) = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .and_then(|b64| STANDARD.decode(b64).ok())
    {
        return Ok(der);
    }
    let item: Item = Parser::new(value)
        .parse()
        .map_err(|_| "Client-Cert is not a structured-field byte sequence (:base64:)")?;
    match item.bare_item {
        BareItem::ByteSequence(leaf) => Ok(leaf),
        _ => Err("Client-Cert is not a structured-field byte sequence (:base64:)"),
    }
}

pub(super) fn parse(value: &str, chain: Option<&str>) -> Result<Forwarded, FormatError> {
    let mut certificates = vec![leaf(value)?];
    if let Some(chain) = chain {
        let list: List = Parser::new(chain)
            .parse()
            .map_err(|_| "Client-Cert-Chain is not a structured-field list of byte sequences")?;
        for entry in list {
            match entry {
                ListEntry::Item(Item {
                    bare_item: BareItem::ByteSequence(der),
                    ..
                }) => certificates.push(der),
                _ => return Err("Client-Cert-Chain holds something other than byte sequences"),
            }
        }
    }
    Ok(Forwarded::Chain(certificates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_reads_the_same_by_either_path() {
        // The direct path.
        assert_eq!(leaf(":AQID:").unwrap(), [1, 2, 3]);
        assert_eq!(leaf("::").unwrap(), Vec::<u8>::new());
        // The structured-field parser: spaces around it, parameters.
        assert_eq!(leaf("  :AQID:").unwrap(), [1, 2, 3]);
        assert_eq!(leaf(":AQID:;a=1").unwrap(), [1, 2, 3]);
        for bad in [
            "AQID",
            ":AQID",
            "AQID:",
            ":AQ!D:",
            "\"AQID\"",
            ":AQID:, :AQID:",
        ] {
            assert_eq!(
                leaf(bad).unwrap_err(),
                "Client-Cert is not a structured-field byte sequence (:base64:)",
                "{bad}"
            );
        }
        assert!(leaf("1").is_err());
    }
}
