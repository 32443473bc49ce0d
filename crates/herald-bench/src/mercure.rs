//! Herald's Mercure endpoint as a bench target (`--target mercure`): form publishes to
//! `/.well-known/mercure`, and subscribers that mix exact `topic=` subscriptions with
//! `match_urlpattern=` ones, [`DISTINCT_PATTERNS`] of them distinct, so that the hub evaluates
//! a realistic number of selectors per publish. Every selector matches the broadcast topic, so
//! the channel scenarios expect the same deliveries as on the native endpoint.
//!
//! The server runs with `HERALD_MERCURE_ANONYMOUS=true` and the bench's JWT secret as its
//! `HERALD_MERCURE_PUBLISHER_JWT_KEY` (see `bench/mercure`).

use jsonwebtoken::{encode, EncodingKey, Header};

use crate::targets::{Mode, Target, To};

/// Distinct URL patterns in play once there are twice as many subscribers.
pub const DISTINCT_PATTERNS: u32 = 1000;

/// The topic of the channel scenarios.
const TOPIC: &str = "https://bench.example/bench";

fn user_topic(index: u32) -> String {
    format!("https://bench.example/u{index}")
}

fn encode_query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The subscribe path of subscriber `index`: even ones by exact topic, odd ones by one of
/// [`DISTINCT_PATTERNS`] URL patterns whose group names differ (`:n0` ... `:n999`).
pub fn subscribe_path(mode: Mode, index: u32) -> String {
    match mode {
        Mode::Channel if index.is_multiple_of(2) => format!("/.well-known/mercure?topic={}", encode_query(TOPIC)),
        Mode::Channel => {
            let pattern = format!("https://bench.example/:n{}", (index / 2) % DISTINCT_PATTERNS);
            format!("/.well-known/mercure?match_urlpattern={}", encode_query(&pattern))
        }
        Mode::User => format!("/.well-known/mercure?topic={}", encode_query(&user_topic(index))),
    }
}

/// A keep-alive form publish of `data` to `to`, with a publisher token for every topic.
pub fn publish_request(target: &Target, to: To, data: &str) -> Vec<u8> {
    let topic = match to {
        To::Channel => TOPIC.to_string(),
        To::Group(g) => format!("https://bench.example/{}", crate::targets::group_channel(g)),
        // One topic per update, like Nchan: the first user.
        To::User(i) | To::Users(i, _) => user_topic(i),
    };
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("topic", &topic)
        .append_pair("type", "b")
        .append_pair("data", data)
        .finish();
    // One token for the run, minted on first use: the bench measures the hub, not its signing.
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let token = TOKEN.get_or_init(|| {
        let claims = serde_json::json!({"mercure": {"publish": ["*"]}});
        encode(&Header::default(), &claims, &EncodingKey::from_secret(target.jwt_secret.as_bytes()))
            .expect("HS256 encoding of plain claims cannot fail")
    });
    format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        target.addr,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_mix_topics_and_a_thousand_patterns() {
        let paths: std::collections::HashSet<String> = (0..4000).map(|i| subscribe_path(Mode::Channel, i)).collect();
        assert_eq!(paths.len(), 1 + DISTINCT_PATTERNS as usize);
        assert!(subscribe_path(Mode::Channel, 3).contains("match_urlpattern=https%3A%2F%2Fbench.example%2F%3An1"));
    }
}
