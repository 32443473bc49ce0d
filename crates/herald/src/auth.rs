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
    /// Expiry, in seconds since the epoch; required unless the app sets `require_exp = false`.
    pub exp: Option<u64>,
    /// Not before, in seconds since the epoch. Typed here so that a non-integer value is
    /// refused as malformed rather than skipped by the check.
    pub nbf: Option<u64>,
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
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet (`nbf` is in the future): check the clocks of the issuer and the hub")]
    NotYetValid,
    /// No `exp`, and the app requires one.
    #[error(
        "the token has no `exp` claim (seconds since the epoch); this app requires one, so that no token is valid forever"
    )]
    MissingExpiry,
    /// `iss` is missing or is not the app's `jwt_issuer`.
    #[error("the token's `iss` claim is missing or is not `{0}`, the issuer this app requires")]
    WrongIssuer(String),
    /// `aud` is missing or does not name the app's `jwt_audience`, or names an audience when the
    /// app sets none (RFC 7519 §4.1.3: a token for someone else is refused).
    #[error("{}", match .0 {
        Some(audience) => format!("the token's `aud` claim is missing or does not name `{audience}`, the audience this app requires"),
        None => "the token names an audience (`aud`) and this app sets no `jwt_audience`: it is meant for another service".to_string(),
    })]
    WrongAudience(Option<String>),
    /// No `sub`, and the app does not allow anonymous subscribers.
    #[error("the token has no `sub` claim and this app does not allow anonymous subscribers")]
    MissingSubject,
}

/// Seconds of clock difference tolerated on `exp` and `nbf` alike.
const LEEWAY_SECS: u64 = 5;

/// Verifies subscriber tokens for one app.
pub struct Verifier {
    key: Option<Key>,
    allow_anonymous: bool,
}

/// A verification key and the claim checks of its app, with the digest of the key material so
/// that two apps sharing one key can be told apart without keeping or comparing the key itself.
struct Key {
    decoding: DecodingKey,
    alg: Algorithm,
    digest: [u8; 32],
    validation: Validation,
}

impl Verifier {
    /// Builds the verifier of `app`; `path` names the app in errors (`app`, `apps[1]`).
    ///
    /// # Errors
    ///
    /// A public key that is neither a PEM RSA nor a PEM EC public key (nor a file holding one).
    pub fn new(path: &str, app: &AppConfig) -> Result<Self, ConfigError> {
        let key = match (&app.jwt_secret, &app.jwt_public_key) {
            (Some(secret), _) => {
                Some((DecodingKey::from_secret(secret.as_bytes()), Algorithm::HS256, key_digest(secret)))
            }
            (None, Some(pem)) => {
                Some(public_key(pem).map_err(|problem| ConfigError::new(format!("{path}.jwt_public_key"), problem))?)
            }
            (None, None) => None,
        };
        let key = key.map(|(decoding, alg, digest)| {
            let mut validation = Validation::new(alg);
            validation.leeway = LEEWAY_SECS;
            validation.validate_nbf = true;
            validation.required_spec_claims = HashSet::new();
            if app.require_exp {
                validation.required_spec_claims.insert("exp".into());
            }
            if let Some(issuer) = &app.jwt_issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
            if let Some(audience) = &app.jwt_audience {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            Key { decoding, alg, digest, validation }
        });
        Ok(Self { key, allow_anonymous: app.allow_anonymous })
    }

    /// Whether tokens can be verified at all.
    pub fn is_configured(&self) -> bool {
        self.key.is_some()
    }

    /// A digest of the key material (the secret, or the public key's DER), equal for two apps
    /// that verify with the same key.
    pub(crate) fn key_digest(&self) -> Option<[u8; 32]> {
        self.key.as_ref().map(|key| key.digest)
    }

    /// Verifies `token` and returns its claims.
    ///
    /// # Errors
    ///
    /// The reason the token is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let Key { decoding, alg, validation, .. } = self.key.as_ref().ok_or(TokenError::NoKey)?;
        // Checked first and by hand so that `alg: none` and a wrong family get their own message.
        // Header fields such as `kid`, `jku` or `x5u` are never read: the key is the app's.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) if header_alg_is_none(token) => TokenError::WrongAlgorithm(*alg),
            _ => TokenError::Malformed(e.to_string()),
        })?;
        if header.alg != *alg {
            return Err(TokenError::WrongAlgorithm(*alg));
        }
        // The signature is checked before any claim, so a forged token never learns which claim
        // would have failed.
        let data = jsonwebtoken::decode::<Claims>(token, decoding, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => TokenError::MissingExpiry,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => wrong_issuer(validation),
            ErrorKind::InvalidIssuer => wrong_issuer(validation),
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => wrong_audience(validation),
            ErrorKind::InvalidAudience => wrong_audience(validation),
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

fn wrong_issuer(validation: &Validation) -> TokenError {
    TokenError::WrongIssuer(validation.iss.iter().flatten().next().cloned().unwrap_or_default())
}

fn wrong_audience(validation: &Validation) -> TokenError {
    TokenError::WrongAudience(validation.aud.iter().flatten().next().cloned())
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

/// Reads a public key given as PEM text or as the path of a PEM file. Errors never quote the
/// value: a key pasted in the wrong place is key material, and start-up errors end up in logs.
fn public_key(pem_or_path: &str) -> Result<(DecodingKey, Algorithm, [u8; 32]), String> {
    let pem = if pem_or_path.contains("-----BEGIN") {
        pem_or_path.to_string()
    } else {
        std::fs::read_to_string(pem_or_path).map_err(|e| {
            format!("is neither PEM text (`-----BEGIN PUBLIC KEY-----`...) nor the path of a readable file ({e})")
        })?
    };
    let refused = || "is not a PEM RSA or EC (P-256) public key".to_string();
    let digest = key_digest_bytes(&pem_der(&pem).ok_or_else(refused)?);
    // `from_rsa_pem` reads the key's algorithm OID and refuses EC keys; the PEM text says nothing
    // reliable (base64 can contain `EC` or `RSA` by chance).
    if let Ok(decoding) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((decoding, Algorithm::RS256, digest));
    }
    DecodingKey::from_ec_pem(pem.as_bytes()).map(|decoding| (decoding, Algorithm::ES256, digest)).map_err(|_| refused())
}

/// The DER bytes inside the first PEM block, so that line wrapping and surrounding text do not
/// make one key look like two.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The SHA-256 of a key: API keys are looked up by it, so lookup time reveals nothing about the
/// key, and JWT keys are compared by it.
pub(crate) fn key_digest(key: &str) -> [u8; 32] {
    key_digest_bytes(key.as_bytes())
}

fn key_digest_bytes(key: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
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
        let claims = Claims {
            sub: None,
            tenant: None,
            sid: None,
            exp: None,
            nbf: None,
            channels: vec!["orders.*".into(), "news".into()],
        };
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
        let anonymous = token("0123456789abcdef", serde_json::json!({"channels": ["x"], "exp": 4_000_000_000u64}));
        assert_eq!(v.verify(&anonymous).unwrap_err(), TokenError::MissingSubject);
        // {"alg":"none","typ":"JWT"} . {"sub":"42"} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiJ9.";
        assert_eq!(v.verify(none).unwrap_err(), TokenError::WrongAlgorithm(Algorithm::HS256));
        assert!(matches!(v.verify("garbage").unwrap_err(), TokenError::Malformed(_)));
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn time_claims_are_checked_with_one_leeway() {
        let secret = "0123456789abcdef";
        let v = Verifier::new("app", &app(secret)).unwrap();
        let exp = now() + 600;
        let early = token(secret, serde_json::json!({"sub": "1", "exp": exp, "nbf": now() + 60}));
        assert_eq!(v.verify(&early).unwrap_err(), TokenError::NotYetValid);
        let skewed = token(secret, serde_json::json!({"sub": "1", "exp": exp, "nbf": now() + 2}));
        assert!(v.verify(&skewed).is_ok(), "an nbf within the leeway passes");
        let fractional = token(secret, serde_json::json!({"sub": "1", "exp": exp, "nbf": 1.5}));
        assert!(matches!(v.verify(&fractional).unwrap_err(), TokenError::Malformed(_)));
        let forever = token(secret, serde_json::json!({"sub": "1"}));
        assert_eq!(v.verify(&forever).unwrap_err(), TokenError::MissingExpiry);
        let lenient = Verifier::new("app", &AppConfig { require_exp: false, ..app(secret) }).unwrap();
        assert!(lenient.verify(&forever).is_ok());
        let far = token(secret, serde_json::json!({"sub": "1", "exp": u64::MAX}));
        assert_eq!(v.verify(&far).unwrap().exp, Some(u64::MAX));
    }

    #[test]
    fn issuer_and_audience_are_required_when_set() {
        let secret = "0123456789abcdef";
        let config = AppConfig {
            jwt_issuer: Some("https://id.example".into()),
            jwt_audience: Some("herald".into()),
            ..app(secret)
        };
        let v = Verifier::new("app", &config).unwrap();
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "1", "exp": now() + 600});
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            token(secret, c)
        };
        assert!(v.verify(&claims(serde_json::json!({"iss": "https://id.example", "aud": "herald"}))).is_ok());
        assert!(v.verify(&claims(serde_json::json!({"iss": "https://id.example", "aud": ["x", "herald"]}))).is_ok());
        let issuer = TokenError::WrongIssuer("https://id.example".into());
        assert_eq!(v.verify(&claims(serde_json::json!({"aud": "herald"}))).unwrap_err(), issuer);
        assert_eq!(v.verify(&claims(serde_json::json!({"iss": "https://evil", "aud": "herald"}))).unwrap_err(), issuer);
        let audience = TokenError::WrongAudience(Some("herald".into()));
        assert_eq!(v.verify(&claims(serde_json::json!({"iss": "https://id.example"}))).unwrap_err(), audience);
        assert_eq!(
            v.verify(&claims(serde_json::json!({"iss": "https://id.example", "aud": "other"}))).unwrap_err(),
            audience
        );
        // Without `jwt_audience`, a token meant for another audience is refused too.
        let plain = Verifier::new("app", &app(secret)).unwrap();
        assert_eq!(
            plain.verify(&claims(serde_json::json!({"aud": "other"}))).unwrap_err(),
            TokenError::WrongAudience(None)
        );
    }

    #[test]
    fn a_bad_public_key_is_named_and_never_echoed() {
        let secret_looking = "-----BEGIN PUBLIC KEY-----\nTOPSECRETMATERIAL\n-----END PUBLIC KEY-----";
        let raw = "TOPSECRETMATERIAL-not-a-path";
        for value in [secret_looking, raw] {
            let config = AppConfig { jwt_public_key: Some(value.into()), ..AppConfig::default() };
            let error = Verifier::new("apps[1]", &config).err().expect("refused").to_string();
            assert!(error.contains("`apps[1].jwt_public_key`"), "{error}");
            assert!(!error.contains("TOPSECRET"), "the value is echoed: {error}");
        }
    }
}
