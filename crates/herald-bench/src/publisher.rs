//! Publisher driver: keep-alive HTTP/1.1 POSTs over a few connections, at a fixed rate or as
//! fast as the server answers. Each message carries its send time and its number on its stream.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{parse_head, Chunked};
use crate::targets::{Target, To};

/// What to publish.
pub struct Plan {
    pub to: Vec<To>,
    /// Messages per second over all connections; `None` is as fast as possible.
    pub rate: Option<f64>,
    pub conns: usize,
    pub durable: bool,
    /// Messages per request: above 1, Herald's `/api/publish/batch` carries them.
    pub batch: usize,
    /// Number of the first message on each stream, so that a later plan to the same
    /// subscribers continues where an earlier one ended.
    pub first: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Published {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub started_ns: u64,
    pub finished_ns: u64,
    /// How far the driver fell behind its schedule.
    pub max_lag_ms: f64,
    /// Each request's round trip, from writing it to reading its whole answer, in µs.
    pub round_trips_us: Vec<u64>,
}

impl Published {
    pub fn secs(&self) -> f64 {
        self.finished_ns.saturating_sub(self.started_ns) as f64 / 1e9
    }

    fn merge(&mut self, o: Published) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.finished_ns = self.finished_ns.max(o.finished_ns);
        self.max_lag_ms = self.max_lag_ms.max(o.max_lag_ms);
        self.round_trips_us.extend(o.round_trips_us);
    }
}

/// Numbers each message on its stream (the channel, group or addressed user) from `first`.
/// A message to several users takes its plan index: each of them sees it once.
fn number(to: &[To], first: u64) -> Vec<(To, u64)> {
    let mut per_stream = std::collections::HashMap::new();
    to.iter()
        .enumerate()
        .map(|(i, &t)| match t {
            To::Channel | To::Users(..) => (t, first + i as u64),
            To::User(_) | To::Group(_) => {
                let n = per_stream.entry(t).or_insert(first);
                *n += 1;
                (t, *n - 1)
            }
        })
        .collect()
}

pub async fn run(target: &Target, plan: Plan) -> Published {
    let jobs: Rc<[(To, u64)]> = number(&plan.to, plan.first).into();
    let conns = plan.conns.max(1);
    let start = Instant::now();
    let mut total = Published { started_ns: crate::clock::unix_nanos(), ..Published::default() };
    let mut tasks = Vec::with_capacity(conns);
    for k in 0..conns {
        let (jobs, target) = (jobs.clone(), target.clone());
        let (rate, durable, batch) = (plan.rate, plan.durable, plan.batch.max(1));
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(target.addr);
            let mut done = Published::default();
            let chunks = jobs.len().div_ceil(batch);
            for c in (k..chunks).step_by(conns) {
                let first = c * batch;
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(first as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let lag = Instant::now().saturating_duration_since(due);
                    done.max_lag_ms = done.max_lag_ms.max(lag.as_secs_f64() * 1000.0);
                }
                let chunk = &jobs[first..(first + batch).min(jobs.len())];
                let messages: Vec<(To, String)> = chunk
                    .iter()
                    .map(|&(to, n)| (to, format!(r#"{{"t":{},"n":{n}}}"#, crate::clock::unix_nanos())))
                    .collect();
                let request = match messages.as_slice() {
                    [(to, data)] => target.publish_request(*to, data, durable),
                    many => target.publish_batch_request(many, durable),
                };
                let sent = Instant::now();
                let answer = conn.request(&request).await;
                done.round_trips_us.push(sent.elapsed().as_micros() as u64);
                match answer.map(|(status, _)| status) {
                    Ok(status) if (200..300).contains(&status) => done.ok += chunk.len() as u64,
                    Ok(status) => {
                        done.errors += chunk.len() as u64;
                        done.first_error.get_or_insert(format!("status {status}"));
                    }
                    Err(e) => {
                        done.errors += chunk.len() as u64;
                        done.first_error.get_or_insert(e);
                    }
                }
            }
            done.finished_ns = crate::clock::unix_nanos();
            done
        }));
    }
    for t in tasks {
        if let Ok(done) = t.await {
            total.merge(done);
        }
    }
    total
}

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, stream: None, buf: Vec::with_capacity(4096) }
    }

    /// Sends one request (connecting first when needed); the answer's status and body.
    pub async fn request(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let result = self.exchange(request).await;
        if !matches!(result, Ok((_, true, _))) {
            self.stream = None; // errors and `Connection: close` both need a new connection
        }
        result.map(|(status, _, body)| (status, body))
    }

    /// Sends one request and reads its whole answer; true when the connection can be reused.
    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, bool, Vec<u8>), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        let (head, head_len) = loop {
            if stream.read_buf(&mut self.buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            if let Some(found) = parse_head(&self.buf)? {
                break found;
            }
        };
        let mut body = self.buf.split_off(head_len);
        if head.chunked {
            let mut decoder = Chunked::default();
            let mut decoded = Vec::new();
            let mut done = decoder.decode(&body, &mut |b| decoded.extend_from_slice(b))?;
            while !done {
                body.clear();
                if stream.read_buf(&mut body).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed in body".into());
                }
                done = decoder.decode(&body, &mut |b| decoded.extend_from_slice(b))?;
            }
            body = decoded;
        } else {
            let len = head.content_length.unwrap_or(0);
            while body.len() < len {
                if stream.read_buf(&mut body).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed in body".into());
                }
            }
        }
        body.truncate(head.content_length.unwrap_or(body.len()));
        Ok((head.status, !head.close, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_run_per_stream() {
        let to = [To::User(1), To::User(2), To::User(1), To::User(1)];
        let n: Vec<u64> = number(&to, 0).into_iter().map(|(_, n)| n).collect();
        assert_eq!(n, vec![0, 0, 1, 2]);
        let ch = number(&[To::Channel, To::Channel], 0);
        assert_eq!(ch, vec![(To::Channel, 0), (To::Channel, 1)]);
        let later: Vec<u64> = number(&to, 10).into_iter().map(|(_, n)| n).collect();
        assert_eq!(later, vec![10, 10, 11, 12]);
        let mixed = [To::Group(1), To::Group(2), To::Users(0, 3), To::Group(1)];
        let n: Vec<u64> = number(&mixed, 0).into_iter().map(|(_, n)| n).collect();
        assert_eq!(n, vec![0, 0, 2, 1]);
    }
}
