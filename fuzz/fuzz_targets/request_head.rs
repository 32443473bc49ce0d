//! The stream fast path's first decisions on a connection's bytes: is it `GET /events`
//! (`is_events`), is its head complete (`parse_head`), and what the subscriber presented.
//! Checks that the dispatch agrees with the request line, and that a decision once taken on
//! fewer bytes is the one taken on all of them (the server acts on the first one).
#![no_main]

use herald::fuzzing::{request_head, Dispatch};
use libfuzzer_sys::fuzz_target;

const PREFIX: &[u8] = b"GET /events";

fuzz_target!(|data: &[u8]| {
    let full = request_head(data);
    let is_stream_line = data.starts_with(PREFIX) && matches!(data.get(PREFIX.len()), Some(b' ' | b'?'));
    if PREFIX.starts_with(data) {
        assert!(matches!(full, Dispatch::ReadMore), "{data:?} is too short to tell, yet {full:?}");
    }
    if matches!(full, Dispatch::Stream { .. }) {
        assert!(is_stream_line, "subscribed {data:?}");
    }
    // Reads may end anywhere: at each line end, and a few bytes into the request line.
    let cuts = data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).take(32);
    for cut in (1..=PREFIX.len() + 1).chain(cuts).filter(|c| *c < data.len()) {
        match request_head(&data[..cut]) {
            Dispatch::Hyper => assert!(matches!(full, Dispatch::Hyper), "handed to hyper at {cut}, then {full:?}"),
            early @ Dispatch::Stream { .. } => {
                assert_eq!(format!("{early:?}"), format!("{full:?}"), "subscribed at {cut} differently")
            }
            Dispatch::ReadMore => {}
        }
    }
});
