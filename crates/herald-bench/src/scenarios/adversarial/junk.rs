//! Junk at a steady rate, each request on a connection of its own: subscriptions with bad
//! tokens (garbage, a wrong signature, `alg: none`, expired) and publishes that are oversized,
//! malformed or carry a wrong API key. Answers are counted per kind and status.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::sync::{watch, Semaphore};

use super::raw::{self, Statuses};
use crate::jwt::Claims;
use crate::targets::{Target, CHANNEL};

/// Requests in flight at once; past it the rate falls behind (and the report shows it).
const IN_FLIGHT: usize = 256;
/// Source addresses the connections rotate over, so that client-side TIME_WAIT never runs out
/// of ports.
const SOURCES: u32 = 64;

/// Each kind of junk, with the request that carries it.
fn requests(target: &Target, max_payload_bytes: usize) -> Vec<(&'static str, Vec<u8>)> {
    let server = target.addr;
    let claims = |exp: u64| Claims { sub: "u1".into(), channels: vec![CHANNEL.into()], exp };
    let now = crate::clock::unix_secs();
    let events = |token: &str| raw::get(server, &format!("/events?channel={CHANNEL}&access_token={token}"));
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now + 3600)).expect("claims serialize"))
    );
    let publish = |key: &str, body: &str| raw::post(server, "/api/publish", key, body.as_bytes());
    let oversized = format!(r#"{{"to":{{"channels":["void"]}},"data":"{}"}}"#, "o".repeat(max_payload_bytes + 1024));
    vec![
        ("token_garbage", events("not.a-token")),
        ("token_wrong_signature", events(&crate::jwt::sign("not-the-secret-0123456789abcdef", &claims(now + 3600)))),
        ("token_alg_none", events(&alg_none)),
        ("token_expired", events(&crate::jwt::sign(&target.jwt_secret, &claims(now - 3600)))),
        ("publish_oversized", publish(&target.api_key, &oversized)),
        ("publish_malformed", publish(&target.api_key, r#"{"to":{"channels":["void"]},"data":"#)),
        ("publish_wrong_key", publish("not-the-api-key-0123456789", r#"{"to":{"channels":["void"]},"data":"x"}"#)),
    ]
}

#[derive(Debug)]
pub struct Junk {
    /// Answers per kind of junk.
    pub answers: Vec<(&'static str, Statuses)>,
    pub sent: u64,
    pub secs: f64,
}

pub async fn run(target: Target, rate: f64, max_payload_bytes: usize, mut stop: watch::Receiver<bool>) -> Junk {
    let requests: Rc<[(&'static str, Vec<u8>)]> = requests(&target, max_payload_bytes).into();
    let answers = Rc::new(RefCell::new(vec![Statuses::new(); requests.len()]));
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(sent as f64 / rate.max(0.001));
        let permit = tokio::select! {
            permit = async {
                tokio::time::sleep_until(due.into()).await;
                gate.clone().acquire_owned().await
            } => permit,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(permit) = permit else { break };
        let kind = sent as usize % requests.len();
        let source = raw::source(super::JUNK_FAMILY, sent as u32 % SOURCES);
        let (requests, answers, server) = (requests.clone(), answers.clone(), target.addr);
        tokio::task::spawn_local(async move {
            let outcome = raw::one_shot(server, source, &requests[kind].1).await;
            raw::count(&mut answers.borrow_mut()[kind], &outcome);
            drop(permit);
        });
        sent += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let _all = gate.acquire_many(IN_FLIGHT as u32).await;
    let answers = answers.borrow().clone();
    Junk { answers: requests.iter().map(|(name, _)| *name).zip(answers).collect(), sent, secs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_a_whole_request() {
        let target = Target {
            target: crate::targets::Kind::Herald,
            addr: "127.0.0.1:9".parse().unwrap(),
            sub_addrs: Vec::new(),
            api_key: "k".into(),
            jwt_secret: "s".into(),
            spread: Default::default(),
        };
        let all = requests(&target, 100);
        assert_eq!(all.len(), 7);
        for (name, request) in &all {
            let text = String::from_utf8_lossy(request);
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            if let Some(len) = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")) {
                assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{name}");
            } else {
                assert!(body.is_empty(), "{name}");
            }
        }
        let none = String::from_utf8_lossy(&all[2].1).into_owned();
        assert!(none.contains("access_token=eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."), "{none}");
    }
}
