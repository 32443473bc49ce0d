//! Publish bodies, single and batch, through the JSON parser and the app's validation. What
//! validation accepts must be safe to encode: the frame is one SSE block (no publisher can
//! inject a second event or field), the name is not a reserved `herald.` one.
#![no_main]

use herald::message::Message;
use herald::Publish;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let single = herald::fuzzing::publish(body);
    let batch = herald::fuzzing::publish_batch(body).unwrap_or_default();
    for publish in single.into_iter().chain(batch).filter_map(Result::ok) {
        check(publish);
    }
});

fn check(p: Publish) {
    assert!(!p.to.is_empty(), "a publish to nobody was accepted");
    assert!(p.event.as_deref().is_none_or(|e| !e.starts_with("herald.")), "a reserved event name was accepted");
    assert!(p.ttl.is_none() || p.durable, "a ttl without durable was accepted");
    let frame = Message::new("ep", 1, 0, p.to, p.event, p.data, p.durable).frame;
    assert!(frame.ends_with(b"\n\n"), "{frame:?}");
    assert!(!frame[..frame.len() - 1].windows(2).any(|w| w == b"\n\n"), "the frame is two blocks: {frame:?}");
    assert!(!frame.contains(&b'\r'), "{frame:?}");
}
