//! RFC 8705 §3: the token's `cnf.x5t#S256` against the certificate of the request.

use subtle::ConstantTimeEq;

use crate::cert::PeerCertificate;
use crate::token::Confirmation;
use crate::token::TokenClaims;
use crate::{AuthError, AuthReason};

/// Whether every token must be bound to the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingPolicy {
    /// Every token must carry `cnf.x5t#S256` matching the request's certificate.
    /// The default.
    #[default]
    Required,
    /// A token without any `cnf` passes as a plain bearer token (`bound: false`).
    /// A token with a `cnf` must still match. Set with
    /// [`allow_unbound_tokens`](crate::MtlsBoundTokenLayerBuilder::allow_unbound_tokens).
    Optional,
}

/// Checks the binding; `Ok(true)` when the token is bound to `certificate`,
/// `Ok(false)` for an unbound token the policy accepts.
pub(crate) fn check_binding(
    policy: BindingPolicy,
    claims: &TokenClaims,
    certificate: Option<&PeerCertificate>,
) -> Result<bool, AuthError> {
    match (claims.confirmation(), policy) {
        (Confirmation::Absent, BindingPolicy::Optional) => Ok(false),
        (Confirmation::Absent, BindingPolicy::Required) => Err(AuthError::invalid_token_because(
            AuthReason::NotBound,
            "the token is not bound to a certificate (no cnf x5t#S256)",
        )),
        (Confirmation::Unusable(why), _) => Err(AuthError::invalid_token_because(
            AuthReason::UnusableBinding,
            *why,
        )),
        (Confirmation::X5tS256(expected), _) => {
            let Some(certificate) = certificate else {
                return Err(AuthError::invalid_token_because(
                    AuthReason::NoCertificate,
                    "the token is bound to a certificate, but the request presented none",
                ));
            };
            if bool::from(certificate.thumbprint_bytes().ct_eq(expected)) {
                Ok(true)
            } else {
                Err(AuthError::invalid_token_because(
                    AuthReason::OtherCertificate,
                    "the token is bound to a different certificate",
                ))
            }
        }
    }
}
