//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells clients
//! which authorization servers issue tokens for this resource, and that its tokens must
//! be certificate-bound.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Uri, header};
use serde_json::{Value, json};

use crate::ConfigError;

/// The metadata document of RFC 9728 §2 and the route that serves it.
///
/// ```
/// use mtls_bound_token::ProtectedResourceMetadata;
///
/// let metadata = ProtectedResourceMetadata::new("https://api.example")?
///     .authorization_server("https://as.example")
///     .scopes_supported(["read", "admin"]);
/// assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource");
/// assert_eq!(
///     metadata.url(),
///     "https://api.example/.well-known/oauth-protected-resource"
/// );
/// let app: axum::Router = axum::Router::new().merge(metadata.router());
/// # Ok::<(), mtls_bound_token::ConfigError>(())
/// ```
///
/// Give [`url`](Self::url) to
/// [`MtlsBoundTokenLayerBuilder::resource_metadata`](crate::MtlsBoundTokenLayerBuilder::resource_metadata)
/// so that every challenge points clients at it (RFC 9728 §5.1).
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadata {
    resource: String,
    /// `scheme://authority` of the resource.
    origin: String,
    /// The resource's path, `""` for none (RFC 9728 §3.1 inserts the well-known
    /// segment between the host and the path).
    path: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
}

impl ProtectedResourceMetadata {
    /// Metadata for the resource identified by `resource`: an `https` URL (`http` for
    /// loopback and tests) without query or fragment (RFC 9728 §1.2).
    ///
    /// # Errors
    /// [`ConfigError::InvalidResource`] saying what is wrong with `resource`.
    pub fn new(resource: impl Into<String>) -> Result<Self, ConfigError> {
        let resource = resource.into();
        let invalid = |problem: &str| ConfigError::InvalidResource {
            resource: resource.clone(),
            problem: problem.to_owned(),
        };
        if resource.contains('#') || resource.contains('?') {
            return Err(invalid("it has a query or fragment"));
        }
        if !resource
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(invalid("it has spaces, quotes or non-ASCII characters"));
        }
        let uri: Uri = resource.parse().map_err(|_| invalid("it is not a URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(invalid("it is not an absolute URL"));
        };
        if scheme != "https" && scheme != "http" {
            return Err(invalid("its scheme is not https"));
        }
        // The path becomes a route: no segment axum would read as a parameter.
        if uri.path().contains(['{', '}'])
            || uri
                .path()
                .split('/')
                .any(|segment| segment.starts_with([':', '*']))
        {
            return Err(invalid(
                "its path has a segment starting with ':' or '*', or braces",
            ));
        }
        let origin = format!("{scheme}://{authority}");
        let path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            resource,
            origin,
            path,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
        })
    }

    /// An authorization server (its issuer identifier) whose tokens this resource accepts.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes clients may ask for (`scopes_supported`).
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The path the document is served at: `/.well-known/oauth-protected-resource`
    /// followed by the resource's own path, if any.
    pub fn well_known_path(&self) -> String {
        format!("/.well-known/oauth-protected-resource{}", self.path)
    }

    /// The document's absolute URL, for the `resource_metadata` challenge parameter.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin, self.well_known_path())
    }

    /// The document (JSON).
    pub fn document(&self) -> Value {
        let mut document = json!({
            "resource": self.resource,
            "bearer_methods_supported": ["header"],
            "tls_client_certificate_bound_access_tokens": true,
        });
        if !self.authorization_servers.is_empty() {
            document["authorization_servers"] = json!(self.authorization_servers);
        }
        if !self.scopes_supported.is_empty() {
            document["scopes_supported"] = json!(self.scopes_supported);
        }
        document
    }

    /// A router serving the document with `GET` at
    /// [`well_known_path`](Self::well_known_path). It needs no token: merge it beside
    /// the protected routes, not behind the layer.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let body = self.document().to_string();
        Router::new().route(
            &self.well_known_path(),
            get(move || {
                let body = body.clone();
                async move { metadata_response(body) }
            }),
        )
    }
}

fn metadata_response(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Whether `url` can stand in a quoted string of a challenge: an absolute http(s) URL
/// of visible ASCII without quotes or backslashes.
pub(crate) fn check_metadata_url(url: &str) -> Result<(), ConfigError> {
    let problem = if !(url.starts_with("https://") || url.starts_with("http://")) {
        Some("it is not an absolute https URL")
    } else if !url
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        Some("it has spaces, quotes or non-ASCII characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::InvalidResource {
            resource: url.to_owned(),
            problem: problem.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_segment_goes_before_the_resources_path() {
        let m = ProtectedResourceMetadata::new("https://api.example/v1/").unwrap();
        assert_eq!(
            m.well_known_path(),
            "/.well-known/oauth-protected-resource/v1"
        );
        assert_eq!(
            m.url(),
            "https://api.example/.well-known/oauth-protected-resource/v1"
        );
        let m = ProtectedResourceMetadata::new("https://api.example:8443").unwrap();
        assert_eq!(
            m.url(),
            "https://api.example:8443/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn the_document_says_tokens_are_certificate_bound() {
        let m = ProtectedResourceMetadata::new("https://api.example")
            .unwrap()
            .authorization_server("https://as.example")
            .scopes_supported(["read", "admin"]);
        assert_eq!(
            m.document(),
            json!({
                "resource": "https://api.example",
                "authorization_servers": ["https://as.example"],
                "bearer_methods_supported": ["header"],
                "tls_client_certificate_bound_access_tokens": true,
                "scopes_supported": ["read", "admin"],
            })
        );
        let bare = ProtectedResourceMetadata::new("https://api.example").unwrap();
        assert!(bare.document().get("scopes_supported").is_none());
        assert!(bare.document().get("authorization_servers").is_none());
    }

    #[test]
    fn resources_that_are_not_urls_are_refused() {
        for bad in [
            "api",
            "/v1",
            "ftp://api.example",
            "https://api.example/?x=1",
            "https://api.example/#f",
            "https://api.example/a b",
            "https://api.example/\"",
            "https://api.example/{id}",
            "https://api.example/:id",
            "https://api.example/a/*rest",
        ] {
            assert!(ProtectedResourceMetadata::new(bad).is_err(), "{bad}");
        }
        assert!(check_metadata_url("https://api.example/m").is_ok());
        assert!(check_metadata_url("api.example/m").is_err());
        assert!(check_metadata_url("https://api.example/\"m").is_err());
    }
}
