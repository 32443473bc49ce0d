//! Who is connecting: subscriber tokens (JWT) and publisher keys.
//!
//! The verification algorithm is bound to the configured key, never taken from the token: an
//! HS256 secret accepts only HS256, an RSA key only RS256, an EC key only ES256. Accepting the
//! token's own `alg` is how key-confusion attacks work, and `alg: none` never passes.

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AppConfig, ConfigError};

/// The claims Herald reads from a subscriber token.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Option<String>,
    /// Tenant id.
    pub tenant: Option<String>,
    /// Login-session id: one login on one device.
    pub sid: Option<String>,
    /// Channels this user may join: exact names, or prefixes ending in `*`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Expiry, in seconds since the epoch.
    pub exp: Option<u64>,
}

impl Claims {
    /// Whether these claims allow joining `channel`.
    pub fn may_join(&self, channel: &str) -> bool {
        self.channels.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => pattern == channel,
        })
    }
}

/// Why a token was refused; each reason names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the header, the cookie or the query.
    #[error("no token: send `Authorization: Bearer <jwt>`, the `{0}` cookie or `access_token=`")]
    Missing(String),
    /// This app has no key to verify tokens with.
    #[error("this app has no JWT key configured (`jwt_secret` or `jwt_public_key`), so no token can be verified")]
    NoKey,
    /// Not three base64url parts, or an unreadable header or claims.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The token's `alg` is not the one this app's key verifies (this includes `none`).
    #[error("the token is signed with an algorithm this app does not accept; it accepts only {0:?}")]
    WrongAlgorithm(Algorithm),
    /// The signature does not match.
    #[error("the token signature is invalid for this app's key")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired: fetch a fresh one and reconnect")]
    Expired,
    /// No `sub`, and the app does not allow anonymous subscribers.
    #[error("the token has no `sub` claim and this app does not allow anonymous subscribers")]
    MissingSubject,
}

/// Verifies subscriber tokens for one app.
pub struct Verifier {
    key: Option<(DecodingKey, Algorithm)>,
    allow_anonymous: bool,
}

impl Verifier {
    /// Builds the verifier of `app`; `path` names the app in errors (`app`, `apps[1]`).
    ///
    /// # Errors
    ///
    /// A public key that is neither a PEM RSA nor a PEM EC public key (nor a file holding one).
    pub fn new(path: &str, app: &AppConfig) -> Result<Self, ConfigError> {
        let key = match (&app.jwt_secret, &app.jwt_public_key) {
            (Some(secret), _) => Some((DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256)),
            (None, Some(pem)) => {
                Some(public_key(pem).map_err(|problem| ConfigError::new(format!("{path}.jwt_public_key"), problem))?)
            }
            (None, None) => None,
        };
        Ok(Self { key, allow_anonymous: app.allow_anonymous })
    }

    /// Whether tokens can be verified at all.
    pub fn is_configured(&self) -> bool {
        self.key.is_some()
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    ///
    /// The reason the token is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (key, alg) = self.key.as_ref().ok_or(TokenError::NoKey)?;
        // Checked first and by hand so that `alg: none` and a wrong family get their own message.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) if header_alg_is_none(token) => TokenError::WrongAlgorithm(*alg),
            _ => TokenError::Malformed(e.to_string()),
        })?;
        if header.alg != *alg {
            return Err(TokenError::WrongAlgorithm(*alg));
        }
        let mut validation = Validation::new(*alg);
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm(*alg),
            _ => TokenError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        if claims.sub.as_deref().is_none_or(str::is_empty) && !self.allow_anonymous {
            return Err(TokenError::MissingSubject);
        }
        Ok(claims)
    }
}

/// `jsonwebtoken` cannot represent `alg: none`, so its header fails to parse; this tells that
/// case apart from garbage.
fn header_alg_is_none(token: &str) -> bool {
    use base64::Engine;
    let Some(header) = token.split('.').next() else { return false };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(|a| a.eq_ignore_ascii_case("none")))
        .unwrap_or(false)
}

fn public_key(pem_or_path: &str) -> Result<(DecodingKey, Algorithm), String> {
    let pem = if pem_or_path.contains("-----BEGIN") {
        pem_or_path.to_string()
    } else {
        std::fs::read_to_string(pem_or_path).map_err(|e| format!("cannot read `{pem_or_path}`: {e}"))?
    };
    // `from_rsa_pem` reads the key's algorithm OID and refuses EC keys; the PEM text says nothing
    // reliable (base64 can contain `EC` or `RSA` by chance).
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| (key, Algorithm::ES256))
        .map_err(|_| "is not a PEM RSA or EC (P-256) public key".to_string())
}

/// Compares API keys by their SHA-256 digest, so lookup time reveals nothing about the key.
pub(crate) fn key_digest(key: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// `sha256=<hex>` of HMAC-SHA256 over `body`: the signature of webhooks and proxied sends.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn app(secret: &str) -> AppConfig {
        AppConfig { jwt_secret: Some(secret.into()), ..AppConfig::default() }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    #[test]
    fn channel_patterns() {
        let claims =
            Claims { sub: None, tenant: None, sid: None, exp: None, channels: vec!["orders.*".into(), "news".into()] };
        assert!(claims.may_join("orders.7"));
        assert!(claims.may_join("news"));
        assert!(!claims.may_join("newsroom"));
        assert!(!claims.may_join("order"));
    }

    #[test]
    fn refuses_each_bad_token_for_its_reason() {
        let v = Verifier::new("app", &app("0123456789abcdef")).unwrap();
        let good = token("0123456789abcdef", serde_json::json!({"sub": "42", "exp": 4_000_000_000u64}));
        assert_eq!(v.verify(&good).unwrap().sub.as_deref(), Some("42"));
        let forged = token("another-secret-xx", serde_json::json!({"sub": "42"}));
        assert_eq!(v.verify(&forged).unwrap_err(), TokenError::BadSignature);
        let expired = token("0123456789abcdef", serde_json::json!({"sub": "42", "exp": 1000}));
        assert_eq!(v.verify(&expired).unwrap_err(), TokenError::Expired);
        let anonymous = token("0123456789abcdef", serde_json::json!({"channels": ["x"]}));
        assert_eq!(v.verify(&anonymous).unwrap_err(), TokenError::MissingSubject);
        // {"alg":"none","typ":"JWT"} . {"sub":"42"} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiJ9.";
        assert_eq!(v.verify(none).unwrap_err(), TokenError::WrongAlgorithm(Algorithm::HS256));
        assert!(matches!(v.verify("garbage").unwrap_err(), TokenError::Malformed(_)));
    }
}
