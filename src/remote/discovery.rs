//! Authorization server metadata: RFC 8414 `/.well-known/oauth-authorization-server`,
//! or OpenID Connect Discovery's `/.well-known/openid-configuration`.

use serde_json::Value;

use super::{AuthServerClient, RemoteError};

/// What this crate reads from an authorization server's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthServerMetadata {
    /// The issuer, equal to the one asked for.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: Option<String>,
    /// Its RFC 7662 introspection endpoint.
    pub introspection_endpoint: Option<String>,
    /// The introspection endpoint for clients that authenticate by certificate
    /// (`mtls_endpoint_aliases`, RFC 8705 §5), when the server names one; use it with
    /// [`tls_client_auth`](crate::remote::IntrospectionVerifierBuilder::tls_client_auth).
    pub mtls_introspection_endpoint: Option<String>,
    /// The URL the metadata was read from.
    pub metadata_url: String,
}

/// The metadata URLs of `issuer`, in the order they are tried: RFC 8414 §3 puts the
/// well-known segment between host and path, OpenID Connect appends it.
fn metadata_urls(issuer: &str) -> Result<[String; 2], RemoteError> {
    let url = reqwest::Url::parse(issuer)
        .map_err(|e| RemoteError::config(format!("issuer {issuer:?} is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(RemoteError::config(format!(
            "issuer {issuer:?} has a query or fragment, which RFC 8414 forbids"
        )));
    }
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

/// Reads `issuer`'s metadata (RFC 8414 first, then OpenID Connect Discovery) and checks
/// that the document names exactly this issuer (RFC 8414 §3.3), so that one server
/// cannot pass off another's keys.
///
/// # Errors
/// [`RemoteError`] when neither document can be read, the `issuer` differs, or an
/// endpoint is not a URL the client may fetch.
pub async fn discover(
    client: &AuthServerClient,
    issuer: &str,
) -> Result<AuthServerMetadata, RemoteError> {
    client.check_url(issuer)?;
    let mut problems = Vec::new();
    for url in metadata_urls(issuer)? {
        let fetched = match client.get(&url).await {
            Ok(fetched) => fetched,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        // A document that cannot be used here (an HTML page at one of the two paths,
        // say) is as good as none: the other path is tried.
        let document: Value = match serde_json::from_slice(&fetched.body) {
            Ok(document) => document,
            Err(e) => {
                problems.push(
                    RemoteError::fetch(&url, format!("the metadata is not JSON: {e}")).to_string(),
                );
                continue;
            }
        };
        match read(client, issuer, url, &document) {
            Ok(metadata) => return Ok(metadata),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Err(RemoteError::config(format!(
        "cannot read the metadata of issuer {issuer}: {}",
        problems.join("; ")
    )))
}

fn read(
    client: &AuthServerClient,
    issuer: &str,
    url: String,
    document: &Value,
) -> Result<AuthServerMetadata, RemoteError> {
    let named = document.get("issuer").and_then(Value::as_str);
    if named != Some(issuer) {
        return Err(RemoteError::fetch(
            &url,
            format!(
                "the metadata names issuer {} instead of {issuer:?}; it is not used",
                named.map_or_else(|| "none".to_owned(), |n| format!("{n:?}"))
            ),
        ));
    }
    let endpoint_in = |document: &Value, name: &str| -> Result<Option<String>, RemoteError> {
        match document.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => {
                client
                    .check_url(value)
                    .map_err(|e| RemoteError::fetch(&url, format!("{name}: {e}")))?;
                // Metadata read over https does not send us anywhere over plain http.
                if url.starts_with("https://") && !value.starts_with("https://") {
                    return Err(RemoteError::fetch(
                        &url,
                        format!("{name} {value:?} is not https, though the metadata is"),
                    ));
                }
                Ok(Some(value.clone()))
            }
            Some(_) => Err(RemoteError::fetch(&url, format!("{name} is not a string"))),
        }
    };
    let aliases = document
        .get("mtls_endpoint_aliases")
        .cloned()
        .unwrap_or(Value::Null);
    Ok(AuthServerMetadata {
        issuer: issuer.to_owned(),
        jwks_uri: endpoint_in(document, "jwks_uri")?,
        introspection_endpoint: endpoint_in(document, "introspection_endpoint")?,
        mtls_introspection_endpoint: endpoint_in(&aliases, "introspection_endpoint")?,
        metadata_url: url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8414_inserts_and_openid_connect_appends() {
        assert_eq!(
            metadata_urls("https://as.example").unwrap(),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example:8443/tenant/1/").unwrap(),
            [
                "https://as.example:8443/.well-known/oauth-authorization-server/tenant/1",
                "https://as.example:8443/tenant/1/.well-known/openid-configuration",
            ]
        );
        assert!(metadata_urls("https://as.example/?x").is_err());
    }

    #[test]
    fn the_document_must_name_the_issuer_asked_for() {
        let client = AuthServerClient::builder().build().unwrap();
        let doc = serde_json::json!({
            "issuer": "https://as.example",
            "jwks_uri": "https://as.example/jwks",
        });
        let metadata = read(&client, "https://as.example", "u".into(), &doc).unwrap();
        assert_eq!(
            metadata.jwks_uri.as_deref(),
            Some("https://as.example/jwks")
        );
        assert_eq!(metadata.introspection_endpoint, None);
        assert_eq!(metadata.mtls_introspection_endpoint, None);
        let aliased = serde_json::json!({
            "issuer": "https://as.example",
            "introspection_endpoint": "https://as.example/introspect",
            "mtls_endpoint_aliases": {"introspection_endpoint": "https://mtls.as.example/introspect"},
        });
        let metadata = read(&client, "https://as.example", "u".into(), &aliased).unwrap();
        assert_eq!(
            metadata.mtls_introspection_endpoint.as_deref(),
            Some("https://mtls.as.example/introspect")
        );
        for issuer in [
            "https://as.example/",
            "https://evil.example",
            "https://AS.example",
        ] {
            let err = read(&client, issuer, "u".into(), &doc).unwrap_err();
            assert!(err.to_string().contains("instead of"), "{err}");
        }
        let plain = serde_json::json!({
            "issuer": "https://as.example",
            "jwks_uri": "http://as.example/jwks",
        });
        assert!(read(&client, "https://as.example", "u".into(), &plain).is_err());
        let odd = serde_json::json!({"issuer": "https://as.example", "jwks_uri": 5});
        assert!(read(&client, "https://as.example", "u".into(), &odd).is_err());
        // Over https, an http endpoint is refused even where plain http is allowed.
        let loopback = AuthServerClient::builder()
            .allow_http_for_loopback_and_tests()
            .build()
            .unwrap();
        let downgrade = serde_json::json!({
            "issuer": "https://localhost",
            "introspection_endpoint": "http://localhost/introspect",
        });
        let err = read(
            &loopback,
            "https://localhost",
            "https://localhost/m".into(),
            &downgrade,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not https"), "{err}");
        assert!(
            read(
                &loopback,
                "https://localhost",
                "http://localhost/m".into(),
                &downgrade
            )
            .is_ok()
        );
    }
}
