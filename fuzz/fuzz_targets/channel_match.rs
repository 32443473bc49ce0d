//! Channel permissions (`Claims::may_join`) against a reference of their documented meaning:
//! a pattern grants exactly its own name, or, ending in `*`, every name that starts with what
//! precedes the `*` (the rest of the pattern is literal, `*` included). Input: the channel on
//! the first line, one pattern per following line.
#![no_main]

use herald::auth::Claims;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let mut lines = text.split('\n');
    let channel = lines.next().unwrap_or_default();
    let patterns: Vec<&str> = lines.collect();
    let claims: Claims = serde_json::from_value(serde_json::json!({ "channels": patterns })).expect("claims");
    assert_eq!(claims.may_join(channel), patterns.iter().any(|p| grants(p, channel)), "{channel:?} by {patterns:?}");
});

fn grants(pattern: &str, channel: &str) -> bool {
    let (pattern, channel) = (pattern.as_bytes(), channel.as_bytes());
    match pattern.split_last() {
        Some((b'*', prefix)) => channel.len() >= prefix.len() && &channel[..prefix.len()] == prefix,
        _ => pattern == channel,
    }
}
