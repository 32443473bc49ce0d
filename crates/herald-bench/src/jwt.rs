//! Subscriber tokens for Herald: one HS256 JWT per client, so that connecting measures the hub's
//! token verification as a real deployment would see it.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub channels: Vec<String>,
    pub exp: u64,
}

/// A token for user `u<index>`, valid for a day, allowed to join `channels`.
pub fn mint(secret: &str, index: u32, channels: &[&str]) -> String {
    let claims = Claims {
        sub: format!("u{index}"),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        exp: crate::clock::unix_secs() + 86_400,
    };
    sign(secret, &claims)
}

/// An HS256 token carrying `claims` as they are (the adversarial scenario signs expired ones).
pub fn sign(secret: &str, claims: &Claims) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 encoding of plain claims cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    #[test]
    fn token_verifies_with_the_secret_only() {
        let token = mint("s3cret", 17, &["bench"]);
        let v = Validation::new(Algorithm::HS256);
        let got = decode::<Claims>(&token, &DecodingKey::from_secret(b"s3cret"), &v).unwrap();
        assert_eq!(got.claims.sub, "u17");
        assert_eq!(got.claims.channels, vec!["bench".to_string()]);
        assert_eq!(got.header.alg, Algorithm::HS256);
        assert!(decode::<Claims>(&token, &DecodingKey::from_secret(b"other"), &v).is_err());
    }
}
