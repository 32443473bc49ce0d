//! Property tests of the SSE encoder: whatever data, event names and ids it is given, the
//! independent `eventsource-stream` parser reads back exactly what a browser would see, however
//! the bytes are split into chunks.

use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::{Event, Eventsource};
use futures_util::task::noop_waker_ref;
use futures_util::Stream;
use herald::sse;
use proptest::prelude::*;

/// One block of a stream, as the hub writes them.
#[derive(Debug, Clone)]
enum Block {
    Event { id: Option<String>, event: Option<String>, data: String },
    IdOnly(String),
    Comment(String),
    Retry(u64),
}

/// Characters that stress the format: line breaks, colons, spaces, NUL, a BOM, and any char.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => Just('\n'),
        2 => Just('\r'),
        2 => Just(' '),
        1 => Just(':'),
        1 => Just('\0'),
        1 => Just('\u{feff}'),
        3 => proptest::char::range('a', 'z'),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(tricky_char(), 0..max).prop_map(|c| c.into_iter().collect())
}

/// Without NUL, CR or LF: what an `id:` line can carry.
fn id() -> impl Strategy<Value = String> {
    text(24).prop_map(|s| s.replace(['\0', '\r', '\n'], "_"))
}

fn event_name() -> impl Strategy<Value = String> {
    text(40)
        .prop_map(|s| s.replace(['\0', '\r', '\n'], "-"))
        .prop_filter("valid event name", |s| sse::valid_event_name(s))
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        6 => (proptest::option::of(id()), proptest::option::of(event_name()), text(64))
            .prop_map(|(id, event, data)| Block::Event { id, event, data }),
        1 => id().prop_map(Block::IdOnly),
        1 => text(32).prop_map(Block::Comment),
        1 => (0u64..100_000).prop_map(Block::Retry),
    ]
}

fn encode(block: &Block) -> bytes::Bytes {
    match block {
        Block::Event { id, event, data } => sse::event(id.as_deref(), event.as_deref(), data),
        Block::IdOnly(id) => sse::id_only(id),
        Block::Comment(text) => sse::comment(text),
        Block::Retry(ms) => sse::retry(*ms),
    }
}

/// What EventSource dispatches for these blocks: data with line breaks normalised to LF, the
/// event name or `message`, and the last id seen so far.
fn expected(blocks: &[Block]) -> Vec<(String, String, String)> {
    let mut last_id = String::new();
    let mut out = Vec::new();
    for block in blocks {
        match block {
            Block::Event { id, event, data } => {
                if let Some(id) = id {
                    last_id = id.clone();
                }
                let data = data.replace("\r\n", "\n").replace('\r', "\n");
                out.push((event.clone().unwrap_or_else(|| "message".into()), data, last_id.clone()));
            }
            Block::IdOnly(id) => last_id = id.clone(),
            Block::Comment(_) | Block::Retry(_) => {}
        }
    }
    out
}

/// Parses `bytes` split at `cuts` (arbitrary byte offsets, even inside a UTF-8 sequence).
fn parse(bytes: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut offsets: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    offsets.push(0);
    offsets.push(bytes.len());
    offsets.sort_unstable();
    offsets.dedup();
    let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        offsets.windows(2).map(|w| Ok(bytes[w[0]..w[1]].to_vec())).collect();
    let mut stream = futures_util::stream::iter(chunks).eventsource();
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut events = Vec::new();
    loop {
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(event))) => events.push(event),
            Poll::Ready(Some(Err(e))) => panic!("the parser refused the encoding: {e}"),
            Poll::Ready(None) => return events,
            Poll::Pending => unreachable!("an iterator stream is always ready"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_block_round_trips_through_an_independent_parser(
        blocks in proptest::collection::vec(block(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let bytes: Vec<u8> = blocks.iter().flat_map(|b| encode(b).to_vec()).collect();
        let got: Vec<(String, String, String)> = parse(&bytes, &cuts).into_iter().map(|e| (e.event, e.data, e.id)).collect();
        prop_assert_eq!(got, expected(&blocks));
    }

    #[test]
    fn one_event_alone_round_trips(id in id(), event in event_name(), data in text(200)) {
        let bytes = sse::event(Some(&id), Some(&event), &data);
        let events = parse(&bytes, &[]);
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(&events[0].id, &id);
        prop_assert_eq!(&events[0].event, &event);
        prop_assert_eq!(&events[0].data, &data.replace("\r\n", "\n").replace('\r', "\n"));
    }

    #[test]
    fn retry_hints_are_read_as_such(ms in any::<u64>()) {
        // A retry block alone dispatches nothing; in front of an event the parser carries it.
        let mut bytes = sse::retry(ms).to_vec();
        bytes.truncate(bytes.len() - 1);
        bytes.extend_from_slice(&sse::event(None, None, "x"));
        let events = parse(&bytes, &[]);
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(events[0].retry, Some(std::time::Duration::from_millis(ms)));
        prop_assert!(parse(&sse::retry(ms), &[]).is_empty());
    }
}

#[test]
fn the_encoding_never_lets_a_line_break_escape_its_field() {
    // A frame is one block: exactly one blank line, at its end.
    for data in ["a\n\nb", "\r\r", "\r\n\r\n", "x\n", "\n"] {
        let frame = sse::event(Some("e-1"), Some("E"), data);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.ends_with("\n\n"), "{text:?}");
        assert!(!text[..text.len() - 2].contains("\n\n"), "{data:?} breaks out: {text:?}");
        assert!(!text.contains('\r'), "{text:?}");
    }
}
