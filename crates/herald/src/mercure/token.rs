//! Mercure tokens: verification with the app's publisher or subscriber key, and the grants they
//! carry, in both shapes deployed — the 0.x `mercure` claim (`publish`, `subscribe`, `payload`)
//! and RFC 9396 `authorization_details` of type `https://mercure.rocks/authorization-detail`.
//!
//! As with native tokens, the algorithm is bound to the configured key, never read from the
//! token. `typ` is not checked, so `JWT` and `at+jwt` both pass. `exp` is enforced when present
//! but not required: the publisher tokens Symfony and API Platform deployments carry are often
//! long-lived and have none. `aud`/`iss` are checked only when the app configures them.

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::selector::{MatchType, Selector, Topic};
use crate::config::{ConfigError, MercureConfig};

/// The `type` of a Mercure authorization detail.
pub const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// Most selectors a token may grant, over both shapes.
const MAX_GRANTS: usize = 256;

/// A verification key bound to its algorithm and claim checks.
pub(crate) struct Key {
    decoding: DecodingKey,
    validation: Validation,
}

/// Why a Mercure token was refused. Answered as `invalid_token` without saying which check
/// failed (the spec asks hubs not to disclose it); the log gets the reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Key {
    /// Builds a key from configuration; `path` names the key in errors.
    pub(crate) fn new(path: &str, key: &str, alg: Option<&str>, config: &MercureConfig) -> Result<Self, ConfigError> {
        let alg_path = path.replace("_key", "_alg");
        let alg = match alg.unwrap_or("HS256").to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            other => {
                return Err(ConfigError::new(
                    alg_path,
                    format!("`{other}` is not HS256, RS256 or ES256 (or their 384/512 forms)"),
                ))
            }
        };
        let pem = || -> Result<String, ConfigError> {
            if key.contains("-----BEGIN") {
                return Ok(key.to_owned());
            }
            std::fs::read_to_string(key).map_err(|_| {
                ConfigError::new(
                    path,
                    "must be a PEM public key (text, or the path of a file holding one) for an RS or ES algorithm",
                )
            })
        };
        let decoding = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => DecodingKey::from_secret(key.as_bytes()),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => DecodingKey::from_rsa_pem(pem()?.as_bytes())
                .map_err(|_| ConfigError::new(path, "is not a PEM RSA public key"))?,
            _ => DecodingKey::from_ec_pem(pem()?.as_bytes())
                .map_err(|_| ConfigError::new(path, "is not a PEM EC public key"))?,
        };
        let mut validation = Validation::new(alg);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        if let Some(audience) = &config.jwt_audience {
            validation.validate_aud = true;
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        Ok(Self { decoding, validation })
    }

    /// Verifies `token` and reads its grants.
    pub(crate) fn verify(&self, token: &str) -> Result<Grants, Refused> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.decoding, &self.validation).map_err(|e| {
            Refused(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".into(),
                ErrorKind::InvalidSignature => "the signature does not match the configured key".into(),
                ErrorKind::InvalidAlgorithm => "the token is signed with another algorithm than the key's".into(),
                other => format!("the token is invalid: {other:?}"),
            })
        })?;
        Grants::from_claims(data.claims)
    }
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    mercure: Option<Value>,
    #[serde(default)]
    authorization_details: Option<Value>,
}

/// What a verified token allows.
#[derive(Debug, Default)]
pub struct Grants {
    /// `sub`, when a string.
    pub subject: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<u64>,
    publish: Vec<Selector>,
    /// Subscribe selectors, each with the payload of the detail that granted it.
    subscribe: Vec<(Selector, Option<Value>)>,
}

impl Grants {
    fn from_claims(claims: RawClaims) -> Result<Self, Refused> {
        let bad = |why: &str| Refused(format!("the token's grants are malformed: {why}"));
        let mut grants = Grants {
            subject: claims.sub.and_then(|s| s.as_str().map(str::to_owned)),
            exp: claims.exp,
            ..Self::default()
        };
        // 0.x: {"mercure": {"publish": [...], "subscribe": [...], "payload": ...}}
        if let Some(mercure) = claims.mercure {
            let Value::Object(mercure) = mercure else { return Err(bad("`mercure` is not an object")) };
            let payload = mercure.get("payload").cloned();
            for (action, out) in [("publish", true), ("subscribe", false)] {
                let Some(list) = mercure.get(action) else { continue };
                let Value::Array(list) = list else { return Err(bad("`mercure.publish/subscribe` is not an array")) };
                for item in list {
                    let raw = item.as_str().ok_or_else(|| bad("a selector is not a string"))?;
                    let selector = Selector::parse(MatchType::Template, raw).map_err(|e| bad(&e))?;
                    if out {
                        grants.publish.push(selector);
                    } else {
                        grants.subscribe.push((selector, payload.clone()));
                    }
                }
            }
        }
        // RFC 9396: [{"type": DETAIL_TYPE, "actions": [...], "topics": [{"match", "match_type"}], "payload"}]
        if let Some(details) = claims.authorization_details {
            let Value::Array(details) = details else { return Err(bad("`authorization_details` is not an array")) };
            for detail in details {
                let Value::Object(detail) = detail else { return Err(bad("a detail is not an object")) };
                if detail.get("type").and_then(Value::as_str) != Some(DETAIL_TYPE) {
                    continue;
                }
                let Some(Value::Array(actions)) = detail.get("actions") else {
                    return Err(bad("`actions` is missing"));
                };
                let Some(Value::Array(topics)) = detail.get("topics") else { return Err(bad("`topics` is missing")) };
                if actions.is_empty() || topics.is_empty() {
                    return Err(bad("`actions` and `topics` must not be empty"));
                }
                let payload = match detail.get("payload") {
                    None => None,
                    Some(p @ Value::Object(_)) => Some(p.clone()),
                    Some(_) => return Err(bad("`payload` is not an object")),
                };
                let mut publish = false;
                let mut subscribe = false;
                for action in actions {
                    match action.as_str().ok_or_else(|| bad("an action is not a string"))? {
                        "publish" => publish = true,
                        "subscribe" => subscribe = true,
                        _ => {} // Unknown actions grant nothing.
                    }
                }
                for topic in topics {
                    let Value::Object(topic) = topic else { return Err(bad("a topic matcher is not an object")) };
                    let raw = topic.get("match").and_then(Value::as_str).ok_or_else(|| bad("`match` is missing"))?;
                    let kind = match topic.get("match_type") {
                        None => MatchType::Exact,
                        Some(Value::String(t)) if t == "exact" => MatchType::Exact,
                        Some(Value::String(t)) if t == "urlpattern" => MatchType::UrlPattern,
                        Some(_) => return Err(bad("`match_type` is not `exact` or `urlpattern`")),
                    };
                    if publish {
                        grants.publish.push(Selector::parse(kind, raw).map_err(|e| bad(&e))?);
                    }
                    if subscribe {
                        grants.subscribe.push((Selector::parse(kind, raw).map_err(|e| bad(&e))?, payload.clone()));
                    }
                }
            }
        }
        if grants.publish.len() + grants.subscribe.len() > MAX_GRANTS {
            return Err(bad(&format!("more than {MAX_GRANTS} selectors")));
        }
        Ok(grants)
    }

    /// Whether every topic may be published.
    pub fn may_publish_all(&self, topics: &[Topic<'_>]) -> bool {
        topics.iter().all(|t| self.publish.iter().any(|s| s.matches(t)))
    }

    /// Whether one of `topics` may be read (private updates, the subscriptions API).
    pub fn may_read(&self, topics: &[Topic<'_>]) -> bool {
        self.subscribe.iter().any(|(s, _)| s.matches_any(topics))
    }

    /// The payload of the first subscribe grant that matches a subscription's own selector.
    pub fn payload_for(&self, selector: &str) -> Option<&Value> {
        let topic = [Topic::new(selector)];
        self.subscribe.iter().find(|(s, _)| s.matches_any(&topic)).and_then(|(_, p)| p.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grants(claims: Value) -> Result<Grants, Refused> {
        Grants::from_claims(serde_json::from_value(claims).unwrap())
    }

    #[test]
    fn both_shapes_grant() {
        let old = grants(json!({"mercure": {"publish": ["https://e.com/{id}"], "subscribe": ["https://e.com/a"], "payload": {"u": 1}}})).unwrap();
        assert!(old.may_publish_all(&[Topic::new("https://e.com/1")]));
        assert!(!old.may_publish_all(&[Topic::new("https://e.com/1"), Topic::new("https://x.com/1")]));
        assert!(old.may_read(&[Topic::new("https://e.com/b"), Topic::new("https://e.com/a")]));
        assert_eq!(old.payload_for("https://e.com/a"), Some(&json!({"u": 1})));
        let new = grants(json!({"authorization_details": [
            {"type": DETAIL_TYPE, "actions": ["subscribe", "future"], "topics": [{"match": "https://e.com/users/42/*", "match_type": "urlpattern"}], "payload": {"p": 2}},
            {"type": "other", "actions": ["publish"], "topics": [{"match": "*"}]}
        ]}))
        .unwrap();
        assert!(new.may_read(&[Topic::new("https://e.com/users/42/books/1")]));
        assert!(!new.may_publish_all(&[Topic::new("https://e.com/x")]), "other detail types grant nothing");
    }

    #[test]
    fn malformed_details_refuse_the_whole_token() {
        for claims in [
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": [1], "topics": [{"match": "a"}]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "a", "match_type": "regex"}]}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": []}]}),
            json!({"authorization_details": [{"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": ["a"]}]}),
            json!({"mercure": {"subscribe": "a"}}),
        ] {
            assert!(grants(claims.clone()).is_err(), "{claims}");
        }
    }
}
