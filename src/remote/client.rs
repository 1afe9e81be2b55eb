//! The HTTP client the crate talks to authorization servers with: rustls on this build's
//! crypto provider, the system's roots or a given CA bundle, an optional client
//! certificate, timeouts, no redirects, and a bound on every document it reads.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::RemoteError;

/// Default bound on a document read from an authorization server.
pub const DEFAULT_MAX_DOCUMENT_LEN: usize = 1024 * 1024;
/// Default time a whole request (connect, TLS, answer) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a CA bundle or a client identity comes from.
#[derive(Clone)]
enum Material {
    File(PathBuf),
    Pem(Vec<u8>),
}

impl Material {
    fn read(&self, what: &str) -> Result<(Vec<u8>, String), RemoteError> {
        match self {
            Self::File(path) => std::fs::read(path)
                .map(|bytes| (bytes, path.display().to_string()))
                .map_err(|e| {
                    RemoteError::config(format!("cannot read {what} {}: {e}", path.display()))
                }),
            Self::Pem(bytes) => Ok((bytes.clone(), format!("{what} (given in memory)"))),
        }
    }
}

/// Builds an [`AuthServerClient`].
///
/// ```
/// use std::time::Duration;
/// use mtls_bound_token::remote::AuthServerClient;
///
/// let client = AuthServerClient::builder()
///     .timeout(Duration::from_secs(3))
///     .build()?;
/// # Ok::<(), mtls_bound_token::remote::RemoteError>(())
/// ```
#[derive(Clone)]
pub struct AuthServerClientBuilder {
    ca: Option<Material>,
    identity: Option<(Material, Material)>,
    timeout: Duration,
    max_document_len: usize,
    allow_http: bool,
    /// Plain http to any host: for documents that are signed (OCSP responses).
    http_anywhere: bool,
}

impl Default for AuthServerClientBuilder {
    fn default() -> Self {
        Self {
            ca: None,
            identity: None,
            timeout: DEFAULT_TIMEOUT,
            max_document_len: DEFAULT_MAX_DOCUMENT_LEN,
            allow_http: false,
            http_anywhere: false,
        }
    }
}

impl fmt::Debug for AuthServerClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthServerClientBuilder")
            .field("custom_ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("timeout", &self.timeout)
            .field("max_document_len", &self.max_document_len)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl AuthServerClientBuilder {
    /// Verifies the authorization server's certificate with this CA bundle file (PEM or
    /// DER) instead of the system's roots: for a private PKI.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(Material::File(path.into()));
        self
    }

    /// As [`ca_file`](Self::ca_file), from PEM (or DER) bytes.
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.ca = Some(Material::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Presents this client certificate chain and key (files, PEM or DER) to an
    /// authorization server that wants mutual TLS.
    pub fn client_certificate_files(
        mut self,
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.identity = Some((Material::File(chain.into()), Material::File(key.into())));
        self
    }

    /// As [`client_certificate_files`](Self::client_certificate_files), from PEM bytes.
    pub fn client_certificate_pem(
        mut self,
        chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Self {
        self.identity = Some((
            Material::Pem(chain.as_ref().to_vec()),
            Material::Pem(key.as_ref().to_vec()),
        ));
        self
    }

    /// How long one request may take, connection and TLS included; default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest document read; default 1 MiB. A larger answer is an error.
    pub fn max_document_len(mut self, len: usize) -> Self {
        self.max_document_len = len;
        self
    }

    /// Plain http to any host, for OCSP: responders answer over http (RFC 6960
    /// Appendix A), and their answers are signed.
    pub(crate) fn plain_http_anywhere(mut self) -> Self {
        self.allow_http = true;
        self.http_anywhere = true;
        self
    }

    /// **Weakens**: permits plain `http://` URLs whose host is a loopback address or
    /// `localhost`, for an authorization server on the same machine and for tests. Any
    /// other host still needs https.
    pub fn allow_http_for_loopback_and_tests(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Reads the CA bundle and client identity and builds the client.
    ///
    /// # Errors
    /// [`RemoteError`] naming the file or setting to fix.
    pub fn build(self) -> Result<AuthServerClient, RemoteError> {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err(RemoteError::config(
                "the authorization server timeout must be above zero and at most 5 minutes",
            ));
        }
        if self.max_document_len == 0 {
            return Err(RemoteError::config("max_document_len must be at least 1"));
        }
        let provider = crate::crypto::rustls_provider();
        let verifier: Arc<dyn ServerCertVerifier> = match &self.ca {
            Some(ca) => {
                let (bytes, name) = ca.read("CA bundle")?;
                let certs = crate::tls::files::certificates(&bytes)
                    .map_err(|e| RemoteError::config(format!("{name} {e}")))?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        RemoteError::config(format!(
                            "{name}: a certificate is not a usable CA: {e}"
                        ))
                    })?;
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| RemoteError::config(format!("{name}: {e}")))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(Arc::clone(&provider)).map_err(|e| {
                    RemoteError::config(format!("cannot load the system's root certificates: {e}"))
                })?,
            ),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let tls = match &self.identity {
            Some((chain, key)) => {
                let (chain_bytes, chain_name) = chain.read("client certificate")?;
                let (key_bytes, key_name) = key.read("client key")?;
                let chain: Vec<CertificateDer<'static>> =
                    crate::tls::files::certificates(&chain_bytes)
                        .map_err(|e| RemoteError::config(format!("{chain_name} {e}")))?;
                let key: PrivateKeyDer<'static> = crate::tls::files::private_key(&key_bytes)
                    .map_err(|e| RemoteError::config(format!("{key_name} {e}")))?;
                tls.with_client_auth_cert(chain, key).map_err(|e| {
                    RemoteError::config(format!(
                        "{chain_name} and {key_name} do not make a client identity: {e}"
                    ))
                })?
            }
            None => tls.with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!self.allow_http)
            .user_agent(concat!("mtls-bound-token/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(AuthServerClient {
            http,
            timeout: self.timeout,
            allow_http: self.allow_http,
            http_anywhere: self.http_anywhere,
            max_document_len: self.max_document_len,
        })
    }
}

/// An HTTP client for authorization servers, shared by the remote key source, discovery
/// and introspection. Cheap to clone.
#[derive(Clone)]
pub struct AuthServerClient {
    http: reqwest::Client,
    timeout: Duration,
    allow_http: bool,
    http_anywhere: bool,
    max_document_len: usize,
}

impl fmt::Debug for AuthServerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthServerClient")
            .field("allow_http", &self.allow_http)
            .field("max_document_len", &self.max_document_len)
            .finish_non_exhaustive()
    }
}

/// A document an authorization server answered with.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl AuthServerClient {
    /// Starts a configuration: system roots, no client certificate, https only.
    pub fn builder() -> AuthServerClientBuilder {
        AuthServerClientBuilder::default()
    }

    /// How long one request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks that `url` is one this client may fetch: absolute, https (or http when
    /// allowed), no user information.
    ///
    /// # Errors
    /// [`RemoteError`] saying what is wrong with it.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, RemoteError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| RemoteError::config(format!("{url:?} is not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http && (self.http_anywhere || is_loopback(&parsed)) => {}
            "http" if self.allow_http => {
                return Err(RemoteError::config(format!(
                    "{url:?} is plain http to a host that is not loopback: use https"
                )));
            }
            "http" => {
                return Err(RemoteError::config(format!(
                    "{url:?} is plain http: use https, or allow plain http for loopback and tests"
                )));
            }
            other => {
                return Err(RemoteError::config(format!(
                    "{url:?} has scheme {other:?}; use https"
                )));
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(RemoteError::config(format!("{url:?} has no host")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(RemoteError::config(format!(
                "{url:?} carries credentials; give them as client authentication instead"
            )));
        }
        Ok(parsed)
    }

    /// GETs `url`, expecting a 200 answer of at most the document bound.
    pub(crate) async fn get(&self, url: &str) -> Result<Fetched, RemoteError> {
        let parsed = self.check_url(url)?;
        let request = self
            .http
            .get(parsed)
            .header(http::header::ACCEPT, "application/json");
        self.send(url, request).await
    }

    /// POSTs `body` of `content_type` to `url`, expecting a 200 answer of at most the
    /// document bound.
    pub(crate) async fn post_bytes(
        &self,
        url: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Fetched, RemoteError> {
        let parsed = self.check_url(url)?;
        let request = self
            .http
            .post(parsed)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(url, request).await
    }

    /// POSTs the form `fields` to `url` (with HTTP Basic credentials when given),
    /// expecting a 200 answer of at most the document bound.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Fetched, RemoteError> {
        let parsed = self.check_url(url)?;
        let mut request = self
            .http
            .post(parsed)
            .header(http::header::ACCEPT, "application/json")
            .form(fields);
        if let Some((user, password)) = basic {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            let user = form_urlencode(user);
            let password = form_urlencode(password);
            request = request.basic_auth(user, Some(password));
        }
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, RemoteError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| RemoteError::fetch(url, describe(&e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(RemoteError::fetch(
                url,
                format!("answered HTTP {}", status.as_u16()),
            ));
        }
        let too_large = || {
            RemoteError::fetch(
                url,
                format!("the answer is larger than {} bytes", self.max_document_len),
            )
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.max_document_len as u64)
        {
            return Err(too_large());
        }
        let headers = std::mem::take(response.headers_mut());
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RemoteError::fetch(url, describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_document_len {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            headers,
            body: body.freeze(),
        })
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// An error of the HTTP client with its causes, which say what failed (DNS, connect,
/// certificate, timeout).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded_as_rfc_6749_says() {
        assert_eq!(form_urlencode("a b+c/d:é"), "a+b%2Bc%2Fd%3A%C3%A9");
        assert_eq!(form_urlencode("Az09-._*"), "Az09-._*");
    }

    #[test]
    fn only_https_urls_without_credentials_are_fetched() {
        let client = AuthServerClient::builder().build().unwrap();
        assert!(client.check_url("https://as.example/jwks").is_ok());
        for bad in [
            "http://as.example/jwks",
            "ftp://as.example/jwks",
            "https://user:pw@as.example/jwks",
            "as.example/jwks",
            "file:///etc/passwd",
        ] {
            assert!(client.check_url(bad).is_err(), "{bad}");
        }
        let loopback = AuthServerClient::builder()
            .allow_http_for_loopback_and_tests()
            .build()
            .unwrap();
        assert!(loopback.check_url("http://127.0.0.1:1/jwks").is_ok());
        assert!(loopback.check_url("http://127.8.9.10:1/jwks").is_ok());
        assert!(loopback.check_url("http://localhost:1/jwks").is_ok());
        assert!(loopback.check_url("http://[::1]:1/jwks").is_ok());
        for remote in [
            "http://as.example/jwks",
            "http://10.0.0.1/jwks",
            "http://[2001:db8::1]/",
        ] {
            let err = loopback.check_url(remote).unwrap_err();
            assert!(err.to_string().contains("not loopback"), "{err}");
        }
    }

    #[test]
    fn configuration_errors_name_what_to_fix() {
        let err = AuthServerClient::builder()
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = AuthServerClient::builder()
            .ca_pem("not a certificate")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("CA bundle"), "{err}");
        let err = AuthServerClient::builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }
}
