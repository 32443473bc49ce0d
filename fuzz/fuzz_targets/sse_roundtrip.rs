//! The SSE encoder against an independent parser (`eventsource-stream`): whatever events it is
//! given within its contract (ids without NUL, CR or LF; valid event names), a client reads back
//! the same ids, event names and data (line breaks normalised to LF), however the bytes are
//! split, and comments dispatch nothing.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::Eventsource;
use futures_util::task::noop_waker_ref;
use futures_util::Stream;
use herald::sse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, input)) = input.split_first() else { return };
    // Fields separated by 0xFF (never in UTF-8), three per event: id, event name, data.
    let fields: Vec<String> = input.split(|&b| b == 0xFF).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    let mut last_id = String::new();
    for triple in fields.chunks(3) {
        let [id, event, data] = [0, 1, 2].map(|i| triple.get(i).map_or("", String::as_str));
        // Outside the contract an id is not sent as one; it goes out as a comment instead.
        let id = if id.contains(['\0', '\r', '\n']) {
            bytes.extend_from_slice(&sse::comment(id));
            None
        } else {
            Some(id)
        };
        let event = Some(event).filter(|e| sse::valid_event_name(e));
        bytes.extend_from_slice(&sse::event(id, event, data));
        if let Some(id) = id {
            last_id = id.to_string();
        }
        let data = data.replace("\r\n", "\n").replace('\r', "\n");
        expected.push((event.unwrap_or("message").to_string(), data, last_id.clone()));
    }
    assert_eq!(parse(&bytes, usize::from(chunk % 8) + 1), expected);
});

/// Feeds `bytes` to the parser `chunk` bytes at a time (splitting UTF-8 sequences too).
fn parse(bytes: &[u8], chunk: usize) -> Vec<(String, String, String)> {
    let chunks = bytes.chunks(chunk).map(|c| Ok::<_, std::convert::Infallible>(c.to_vec()));
    let mut stream = futures_util::stream::iter(chunks).eventsource();
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut events = Vec::new();
    loop {
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(e))) => events.push((e.event, e.data, e.id)),
            Poll::Ready(Some(Err(e))) => panic!("the parser refused the encoding: {e}"),
            Poll::Ready(None) => return events,
            Poll::Pending => unreachable!("an iterator stream is always ready"),
        }
    }
}
