//! Incremental Server-Sent Events parser (WHATWG rules). It accepts the stream in arbitrary
//! chunks, so a client needs no buffer beyond the one partial line it is in the middle of.

/// One dispatched event, borrowed from the parser so that no allocation is made per event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// Event type; empty when the stream gave none (EventSource's `message`).
    pub event: &'a str,
    pub data: &'a str,
    /// The last event id seen so far on this stream (ids persist across events).
    pub id: &'a str,
}

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`, so a `\n` at the start of the next one ends nothing.
    after_cr: bool,
    event: String,
    data: String,
    last_id: String,
}

impl Parser {
    /// The id a reconnecting client sends as `Last-Event-ID`.
    pub fn last_id(&self) -> &str {
        &self.last_id
    }

    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input.first() == Some(&b'\n') {
                input = &input[1..];
            }
        }
        while let Some(pos) = input.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (part, rest) = input.split_at(pos);
            let mut rest = &rest[1..];
            if input[pos] == b'\r' {
                match rest.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.line_done(part, on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(part);
                self.line_done(&line, on_event);
                line.clear();
                self.line = line;
            }
            input = rest;
        }
        self.line.extend_from_slice(input);
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment, e.g. a heartbeat
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => {
                self.event.clear();
                self.event.push_str(&value);
            }
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => {
                self.last_id.clear();
                self.last_id.push_str(&value);
            }
            _ => {} // `retry` and unknown fields do not matter to a load generator
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if self.data.is_empty() {
            self.event.clear();
            return;
        }
        self.data.pop();
        on_event(Event { event: &self.event, data: &self.data, id: &self.last_id });
        self.data.clear();
        self.event.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Owned(String, String, String);

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<Owned>, String) {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |e: Event<'_>| out.push(Owned(e.event.into(), e.data.into(), e.id.into())));
        }
        (out, p.last_id().to_string())
    }

    fn ev(event: &str, data: &str, id: &str) -> Owned {
        Owned(event.into(), data.into(), id.into())
    }

    #[test]
    fn whole_event() {
        let (evs, _) = parse_chunks(&[b"event: b\nid: e-1\ndata: {\"n\":1}\n\n"]);
        assert_eq!(evs, vec![ev("b", "{\"n\":1}", "e-1")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] =
            b"retry: 1000\r\nevent: herald.connected\r\nid: q-17\r\ndata: {}\r\n\r\n: hb\r\ndata: a\r\ndata: b\r\n\r\n";
        let want = vec![ev("herald.connected", "{}", "q-17"), ev("", "a\nb", "q-17")];
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let (evs, last) = parse_chunks(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(evs, want, "split at {i},{j}");
                assert_eq!(last, "q-17");
            }
        }
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        let (evs, _) = parse_chunks(&[b"data: x\r", b"\n\r", b"\n"]);
        assert_eq!(evs, vec![ev("", "x", "")]);
    }

    #[test]
    fn lone_cr_ends_lines() {
        let (evs, _) = parse_chunks(&[b"data: x\rdata:y\r\r"]);
        assert_eq!(evs, vec![ev("", "x\ny", "")]);
    }

    #[test]
    fn comments_and_bare_id_dispatch_nothing_but_move_the_id() {
        let (evs, last) = parse_chunks(&[b": hb\n\nid: q-20\n\n: hb\n\n"]);
        assert!(evs.is_empty());
        assert_eq!(last, "q-20");
    }

    #[test]
    fn event_type_does_not_leak_into_next_event() {
        let (evs, _) = parse_chunks(&[b"event: x\ndata: 1\n\ndata: 2\n\n"]);
        assert_eq!(evs, vec![ev("x", "1", ""), ev("", "2", "")]);
    }

    #[test]
    fn field_without_colon_and_value_without_space() {
        let (evs, _) = parse_chunks(&[b"data\ndata:z\n\n"]);
        assert_eq!(evs, vec![ev("", "\nz", "")]);
    }
}
