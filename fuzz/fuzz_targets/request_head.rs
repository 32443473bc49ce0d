//! The lean paths' first decisions on a connection's bytes: is it `GET /events`, a Mercure
//! stream or `POST /api/publish` (`kind_of`), is its head complete (`parse_head`, the publish
//! path's `parse`), and what the subscriber or publisher presented.
//! Checks that the dispatch agrees with the request line, and that a decision once taken on
//! fewer bytes is the one taken on all of them (the server acts on the first one).
#![no_main]

use herald::fuzzing::{request_head, Dispatch};
use libfuzzer_sys::fuzz_target;

const PREFIX: &[u8] = b"GET /events";
const PUBLISH: &[u8] = b"POST /api/publish";

fn line_is(data: &[u8], prefix: &[u8]) -> bool {
    data.starts_with(prefix) && matches!(data.get(prefix.len()), Some(b' ' | b'?'))
}

fuzz_target!(|data: &[u8]| {
    let full = request_head(data);
    let is_stream_line = line_is(data, PREFIX);
    if PREFIX.starts_with(data) || PUBLISH.starts_with(data) {
        assert!(matches!(full, Dispatch::ReadMore), "{data:?} is too short to tell, yet {full:?}");
    }
    if matches!(full, Dispatch::Stream { .. }) {
        assert!(is_stream_line, "subscribed {data:?}");
    }
    if matches!(full, Dispatch::Publish { .. }) {
        assert!(line_is(data, PUBLISH), "took {data:?} for a publish");
    }
    // Reads may end anywhere: at each line end, and a few bytes into the request line.
    let cuts = data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).take(32);
    for cut in (1..=PREFIX.len() + 1).chain(cuts).filter(|c| *c < data.len()) {
        match request_head(&data[..cut]) {
            Dispatch::Hyper => assert!(matches!(full, Dispatch::Hyper), "handed to hyper at {cut}, then {full:?}"),
            early @ (Dispatch::Stream { .. } | Dispatch::Publish { .. } | Dispatch::Mercure) => {
                assert_eq!(format!("{early:?}"), format!("{full:?}"), "decided at {cut} differently")
            }
            Dispatch::ReadMore => {}
        }
    }
});
