//! The cluster bus decoder on any line a Redis channel could carry: it never panics, a line
//! decodes only to the kind its first word names, and a node skips its own presence lines.
#![no_main]

use herald::fuzzing::{decode_bus, BusKind};
use libfuzzer_sys::fuzz_target;

const NODE: &str = "node01";

fuzz_target!(|payload: &[u8]| {
    let Some(kind) = decode_bus(payload, NODE) else { return };
    let text = std::str::from_utf8(payload).expect("only UTF-8 lines decode");
    let (word, rest) = text.split_once(' ').expect("a decoded line names its kind");
    let named = match word {
        "m" => BusKind::Message,
        "u" => BusKind::Unread,
        "p" => BusKind::Presence,
        "k" => BusKind::Kick,
        "r" => BusKind::Reports,
        other => panic!("decoded an unknown kind {other:?} as {kind:?}"),
    };
    assert_eq!(kind, named);
    if kind == BusKind::Presence {
        assert_ne!(rest.split_once(' ').map(|(node, _)| node), Some(NODE), "a node's own presence was applied");
    }
});
