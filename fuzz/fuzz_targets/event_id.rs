//! Event ids (`EventId::parse`, which also reads the `cursor` of `/api/users/{id}/messages`)
//! and the resume decision on `Last-Event-ID`. An id that parses round-trips through its
//! display; a client resumes exactly at its id when that id lies in the retained history of
//! the current epoch, and is told to reset at the head otherwise.
#![no_main]

use herald::id::EventId;
use libfuzzer_sys::fuzz_target;

const EPOCH: &str = "ep1";

fuzz_target!(|input: &[u8]| {
    // Two bytes shape the history (the messages after `floor` up to `head`); the rest is the id.
    let [floor, span, id @ ..] = input else { return };
    let Ok(raw) = std::str::from_utf8(id) else { return };
    let (floor, head) = (u64::from(*floor), u64::from(*floor) + u64::from(*span));

    let parsed = EventId::parse(raw);
    if let Some(id) = parsed {
        assert!(!id.epoch.is_empty() && id.epoch.bytes().all(|b| b.is_ascii_alphanumeric()), "{raw:?}");
        assert!(raw.starts_with(id.epoch) && raw.ends_with("-d") == id.durable, "{raw:?} read as {id:?}");
        assert_eq!(EventId::parse(&id.to_string()), Some(id), "{raw:?} does not round-trip");
    }

    let expected = match parsed {
        _ if raw.is_empty() => Ok(head),
        Some(id) if id.epoch == EPOCH && (floor..=head).contains(&id.seq) => Ok(id.seq),
        _ => Err(head),
    };
    assert_eq!(herald::fuzzing::resume(EPOCH, floor, head, Some(raw)), expected, "{raw:?} in {floor}..={head}");
});
