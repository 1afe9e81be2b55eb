//! RFC 9440: `Client-Cert` is a structured-field byte sequence `:base64-DER:` (RFC 8941
//! §3.3.5); `Client-Cert-Chain` a list of them, issuers of the leaf. The chain may come
//! on several field lines (§2.3); the caller joins them in order into one list, as RFC
//! 9110 §5.3 combines field lines, before it reaches [`parse`].

use sfv::{BareItem, Item, List, ListEntry, Parser};

use super::{FormatError, Forwarded};

pub(super) fn parse(value: &str, chain: Option<&str>) -> Result<Forwarded, FormatError> {
    let item: Item = Parser::new(value)
        .parse()
        .map_err(|_| "Client-Cert is not a structured-field byte sequence (:base64:)")?;
    let BareItem::ByteSequence(leaf) = item.bare_item else {
        return Err("Client-Cert is not a structured-field byte sequence (:base64:)");
    };
    let mut certificates = vec![leaf];
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
