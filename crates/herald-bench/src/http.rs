//! Just enough HTTP/1.1 for the bench: a response head and chunked bodies, decoded
//! incrementally so that a connection carries no per-message allocation.

#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
    pub close: bool,
}

/// Parses a response head once `buf` holds all of it; returns the head and its length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut head = Head { status, chunked: false, content_length: None, close: false };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some((head, end + 4)))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    EndLf,
    Done,
}

/// Decoder for `Transfer-Encoding: chunked`.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    remaining: usize,
}

impl Chunked {
    /// Passes the payload bytes in `input` to `out`; returns true once the last chunk is read.
    pub fn decode(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<bool, String> {
        while !input.is_empty() && self.state != State::Done {
            if self.state == State::Data {
                let take = self.remaining.min(input.len());
                out(&input[..take]);
                self.remaining -= take;
                input = &input[take..];
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[0];
            input = &input[1..];
            self.state = match (self.state, b) {
                (State::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (b as char).to_digit(16).unwrap_or(0) as usize;
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|r| r.checked_add(digit))
                        .ok_or("chunk size overflow")?;
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') => State::Extension,
                (State::Size | State::Extension, b'\r') => State::SizeLf,
                (State::Size | State::Extension | State::SizeLf, b'\n') => {
                    if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                (State::Extension, _) => State::Extension,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataCr | State::DataLf, b'\n') => State::Size,
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::EndLf, b'\n') => State::Done,
                (State::Trailer, b'\n') => State::TrailerStart,
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (state, b) => return Err(format!("bad chunked byte {b:#x} in {state:?}")),
            };
        }
        Ok(self.state == State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_fields() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\ndata";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert!(head.chunked);
        assert_eq!(&raw[len..], b"data");
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        let (head, _) =
            parse_head(b"HTTP/1.1 401 No\r\nContent-Length: 12\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.status, head.content_length, head.close), (401, Some(12), true));
    }

    #[test]
    fn chunked_split_anywhere() {
        let raw: &[u8] = b"5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n";
        for i in 0..=raw.len() {
            let mut d = Chunked::default();
            let mut got = Vec::new();
            d.decode(&raw[..i], &mut |b| got.extend_from_slice(b)).unwrap();
            assert!(d.decode(&raw[i..], &mut |b| got.extend_from_slice(b)).unwrap());
            assert_eq!(got, b"helloabcdefghijklmnopqrstuvwxyz", "split at {i}");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        assert!(Chunked::default().decode(b"zz\r\n", &mut |_| {}).is_err());
    }
}
