//! Publish bodies, single and batch, through the JSON parsers and the app's validation. The
//! payload reaches subscribers as the body gave it (a string as its text, anything else as the
//! same JSON value); a batch is accepted only as a whole JSON document; and what validation
//! accepts is safe to encode: one SSE block (no publisher can inject a second event or field),
//! under a name that is not a reserved `herald.` one.
#![no_main]

use herald::fuzzing::{publish, publish_batch, validate};
use herald::message::Message;
use herald::Publish;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let json = serde_json::from_slice::<Value>(body).ok();
    if let Some(p) = publish(body) {
        let json = json.as_ref().expect("a publish accepted from invalid JSON");
        assert_same_data(&p.data, &json["data"]);
        check(p);
    }
    if let Some(batch) = publish_batch(body) {
        let json = json.as_ref().unwrap_or_else(|| panic!("a batch accepted from invalid JSON: {body:?}"));
        for (p, item) in batch.into_iter().zip(json.as_array().expect("a batch is an array")) {
            assert_same_data(&p.data, &item["data"]);
            check(p);
        }
    }
});

fn assert_same_data(data: &str, given: &Value) {
    match given {
        Value::String(s) => assert_eq!(data, s),
        other => assert_eq!(&serde_json::from_str::<Value>(data).expect("the payload is JSON"), other, "{data}"),
    }
}

fn check(p: Publish) {
    if validate(&p).is_err() {
        return;
    }
    assert!(!p.to.is_empty(), "a publish to nobody was accepted");
    assert!(p.event.as_deref().is_none_or(|e| !e.starts_with("herald.")), "a reserved event name was accepted");
    assert!(p.ttl.is_none() || p.durable, "a ttl without durable was accepted");
    let frame = Message::new("ep", 1, 0, p.to, p.event, p.data, p.durable).frame;
    assert!(frame.ends_with(b"\n\n"), "{frame:?}");
    assert!(!frame[..frame.len() - 1].windows(2).any(|w| w == b"\n\n"), "the frame is two blocks: {frame:?}");
    assert!(!frame.contains(&b'\r'), "{frame:?}");
}
