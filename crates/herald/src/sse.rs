//! The `text/event-stream` wire format (WHATWG HTML, "Server-sent events").
//!
//! Every frame is encoded once into [`Bytes`] and the same bytes are shared by every recipient.
//!
//! # Format
//!
//! ```text
//! id: <id>\n        (optional; never contains NUL, CR or LF)
//! event: <name>\n   (optional; never contains CR or LF)
//! data: <line>\n    (one per line of the payload; lines split on \r\n, \n and \r)
//! \n
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes one event. `id` and `event` must already be valid (see [`valid_event_name`]); the
/// data is split into `data:` lines on every line break the format recognises.
pub fn event(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 32 + id.map_or(0, str::len) + event.map_or(0, str::len));
    if let Some(id) = id {
        debug_assert!(!id.contains(['\0', '\r', '\n']));
        field(&mut buf, "id", id);
    }
    if let Some(event) = event {
        debug_assert!(valid_event_name(event));
        field(&mut buf, "event", event);
    }
    for line in split_lines(data) {
        field(&mut buf, "data", line);
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// A block that only sets the client's last event id; it dispatches no event.
pub fn id_only(id: &str) -> Bytes {
    debug_assert!(!id.contains(['\0', '\r', '\n']));
    Bytes::from(format!("id: {id}\n\n"))
}

/// A comment line, ignored by clients: heartbeats and padding.
pub fn comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    for line in split_lines(text) {
        field(&mut buf, "", line);
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// The reconnection delay hint, in milliseconds.
pub fn retry(ms: u64) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// Event names go on one `event:` line, so they must not break it.
pub fn valid_event_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.contains(['\0', '\r', '\n'])
}

fn field(buf: &mut BytesMut, name: &str, value: &str) {
    buf.put_slice(name.as_bytes());
    buf.put_u8(b':');
    // A leading space is stripped by parsers, so one is added whenever the value starts with one.
    if !value.is_empty() || name.is_empty() {
        buf.put_u8(b' ');
    }
    buf.put_slice(value.as_bytes());
    buf.put_u8(b'\n');
}

/// Splits on `\r\n`, `\n` and `\r`, as the parser on the other side will.
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_line_break() {
        let got = event(Some("e-1"), Some("ALERT"), "a\nb\r\nc\rd");
        assert_eq!(&got[..], b"id: e-1\nevent: ALERT\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn keeps_leading_space_and_empty_lines() {
        assert_eq!(&event(None, None, " x")[..], b"data:  x\n\n");
        assert_eq!(&event(None, None, "")[..], b"data:\n\n");
        assert_eq!(&event(None, None, "a\n")[..], b"data: a\ndata:\n\n");
    }

    #[test]
    fn comments_and_retry() {
        assert_eq!(&comment("hb")[..], b": hb\n\n");
        assert_eq!(&retry(1500)[..], b"retry: 1500\n\n");
        assert_eq!(&id_only("e-3")[..], b"id: e-3\n\n");
    }
}
