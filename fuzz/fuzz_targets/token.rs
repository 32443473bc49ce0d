//! Subscriber tokens through `Verifier::verify`, with an HS256, an ES256 and an RS256 verifier.
//! Byte 0 picks the mode: the rest is either a token as sent, or a header and claims (JSON,
//! split by 0xFF) that the target signs itself, with the HS256 secret and, for key confusion,
//! with each public key used as an HMAC secret. Checks that no token passes a verifier
//! without its key, and that whatever passes carries a subject and has not expired.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use herald::auth::{Claims, Verifier};
use herald::config::AppConfig;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzzing-secret-0123456789";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf1kRJrMttuGfLPp6aTKvgvmNiJi4
1BAm37dXqqjfuS1fobEfnfbshppp/8hSWLWQVC9PNePEaUXTrtoSVsKQig==
-----END PUBLIC KEY-----
";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzomF7hoKkHG13h7R6Du9
1XXVZMd35SRdM4SUkgHwsh3/avJ4pwQHCaES/QOe85dHG9pTqWlxqt2AxTPFEnNz
k/CX19oQQw/VkaVs/f5FkxhpheXGHxQV9xb/SEqT5Ntzysz1F9x972hjcMZpzTZs
tFU6R+ZlUrKpw+KBfEqXFtCuI/1VDI5E8pTb4pEcizzPEYSOZwpsf0o0PnrWfA2M
GbW/NBIdJmcW1bghvFvWCYVhm80AW0/HMhv4mLDKUy4Gjb4a9xTxrQ58FClZSG1m
y0oi5CGqjd6mFlZ47fn4/23hYNKnjp06OJaVMAzllVZyLCFQh5Tg9amKs2jKr5ZF
NwIDAQAB
-----END PUBLIC KEY-----
";
/// `Verifier`'s leeway on `exp`, in seconds.
const LEEWAY: u64 = 5;

struct Verifiers {
    hs256: Verifier,
    es256: Verifier,
    rs256: Verifier,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let verifier = |app: AppConfig| Verifier::new("app", &app).expect("a valid key");
        Verifiers {
            hs256: verifier(AppConfig { jwt_secret: Some(SECRET.into()), ..AppConfig::default() }),
            es256: verifier(AppConfig { jwt_public_key: Some(EC_PUBLIC.into()), ..AppConfig::default() }),
            rs256: verifier(AppConfig { jwt_public_key: Some(RSA_PUBLIC.into()), ..AppConfig::default() }),
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    let v = verifiers();
    if mode % 2 == 0 {
        // A token as a client sends it. Only the HS256 secret is ever used to sign a corpus entry.
        let token = String::from_utf8_lossy(rest);
        assert!(v.es256.verify(&token).is_err(), "ES256 accepted a token not signed with its key: {token}");
        assert!(v.rs256.verify(&token).is_err(), "RS256 accepted a token not signed with its key: {token}");
        if let Ok(claims) = v.hs256.verify(&token) {
            check(&claims);
        }
        return;
    }
    let mut parts = rest.splitn(2, |&b| b == 0xFF);
    let (header, claims) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if let Ok(accepted) = v.hs256.verify(&signed(header, claims, SECRET.as_bytes())) {
        check(&accepted);
        // Read leniently: a verifier skips unknown fields without checking their UTF-8.
        let header_json = serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(header)).ok();
        let alg = header_json.and_then(|h| h["alg"].as_str().map(str::to_owned));
        assert_eq!(alg.as_deref(), Some("HS256"), "accepted a header that is not HS256: {header:?}");
    }
    // Key confusion: HS256 with the public key as the secret must not pass the asymmetric verifiers.
    assert!(v.es256.verify(&signed(header, claims, EC_PUBLIC.as_bytes())).is_err(), "ES256 key confusion");
    assert!(v.rs256.verify(&signed(header, claims, RSA_PUBLIC.as_bytes())).is_err(), "RS256 key confusion");
});

/// `header.claims.signature`, base64url, signed with HMAC-SHA256 under `secret`.
fn signed(header: &[u8], claims: &[u8], secret: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// What every accepted token must satisfy for an app that does not allow anonymous users.
fn check(claims: &Claims) {
    assert!(claims.sub.as_deref().is_some_and(|s| !s.is_empty()), "accepted without a subject: {claims:?}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    assert!(claims.exp.is_none_or(|exp| exp.saturating_add(LEEWAY) >= now), "accepted an expired token: {claims:?}");
}
