//! `GET /poll`, the long-poll fallback: answers at once, after a wait, on timeout; resets; and
//! switching between the stream and polling without losing or doubling a message.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn publish_ok(base: &str, body: Value) -> String {
    let (status, answer) = publish(base, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

fn seq(id: &str) -> u64 {
    id.trim_end_matches("-d").rsplit_once('-').expect("an event id").1.parse().expect("a decimal seq")
}

/// `GET /poll` for `user_token`; returns (status, body).
async fn poll(base: &str, user_token: &str, last_event_id: Option<&str>, timeout_secs: u64) -> (u16, Value) {
    let mut url = format!("{base}/poll?access_token={user_token}&timeout={timeout_secs}");
    if let Some(id) = last_event_id {
        url.push_str(&format!("&lastEventId={id}"));
    }
    let r = tokio::time::timeout(WAIT, client().get(url).send()).await.expect("poll answered within WAIT").unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The (id, event, data) of each event of a poll answer.
fn events(answer: &Value) -> Vec<(Option<String>, Option<String>, String)> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().map(str::to_owned),
                e["event"].as_str().map(str::to_owned),
                e["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_poll_answers_at_once_when_something_is_due() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.as_str();
    let alice = token("alice", json!({"tenant": "acme"}));
    let d1 =
        publish_ok(base, json!({"to": {"users": ["alice"]}, "event": "note", "data": "d1", "durable": true})).await;

    // First call (no lastEventId): the durable backlog, at once although the timeout is long.
    let started = Instant::now();
    let (status, first) = poll(base, &alice, None, 30).await;
    assert_eq!(status, 200, "{first}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once");
    assert_eq!(events(&first), [(Some(d1.clone()), Some("note".into()), "d1".into())]);
    assert_eq!(first["reset"], false);
    let position = first["lastEventId"].as_str().unwrap().to_string();
    assert_eq!(seq(&position), seq(&d1));

    // Something published since the position: at once again, only what is alice's, in order.
    let m1 = publish_ok(base, json!({"to": {"tenants": ["acme"]}, "data": {"n": 1}})).await;
    publish_ok(base, json!({"to": {"users": ["bob"]}, "data": "bob's"})).await;
    let m2 = publish_ok(base, json!({"to": {"users": ["alice"]}, "event": "ALERT", "data": "two"})).await;
    let started = Instant::now();
    let (status, second) = poll(base, &alice, Some(&position), 30).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once");
    assert_eq!(
        events(&second),
        [(Some(m1), None, "{\"n\":1}".into()), (Some(m2.clone()), Some("ALERT".into()), "two".into())]
    );
    assert_eq!(seq(second["lastEventId"].as_str().unwrap()), seq(&m2));
    assert_eq!(second["reset"], false);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_pending_poll_answers_when_a_message_arrives() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.clone();
    let alice = token("alice", json!({}));
    let (_, first) = poll(&base, &alice, None, 30).await;
    let position = first["lastEventId"].as_str().unwrap().to_string();

    let started = Instant::now();
    let pending = {
        let (base, alice, position) = (base.clone(), alice.clone(), position.clone());
        tokio::spawn(async move { poll(&base, &alice, Some(&position), 30).await })
    };
    // Messages for others do not end the poll; the one for alice does.
    publish_ok(&base, json!({"to": {"users": ["bob"]}, "data": "bob's"})).await;
    let id = publish_ok(&base, json!({"to": {"users": ["alice"]}, "event": "note", "data": "arrived"})).await;
    let (status, answer) = tokio::time::timeout(WAIT, pending).await.expect("the poll answered").unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20), "well before the 30 s timeout");
    assert_eq!(events(&answer), [(Some(id.clone()), Some("note".into()), "arrived".into())]);
    assert_eq!(seq(answer["lastEventId"].as_str().unwrap()), seq(&id));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_poll_with_nothing_due_answers_empty_on_timeout() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.as_str();
    let alice = token("alice", json!({}));
    let (_, first) = poll(base, &alice, None, 30).await;
    let position = first["lastEventId"].as_str().unwrap().to_string();
    publish_ok(base, json!({"to": {"users": ["bob"]}, "data": "bob's"})).await;
    let started = Instant::now();
    let (status, answer) = poll(base, &alice, Some(&position), 1).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(waited >= Duration::from_millis(900), "waited for the timeout: {waited:?}");
    assert!(waited < Duration::from_secs(5), "but not much longer: {waited:?}");
    assert_eq!(events(&answer), []);
    assert_eq!(answer["reset"], false);
    let next = answer["lastEventId"].as_str().unwrap().to_string();
    assert!(seq(&next) >= seq(&position));
    // timeout beyond the maximum is refused.
    assert_eq!(poll(base, &alice, Some(&next), 61).await.0, 400);
    hub.shutdown().await.unwrap();
}

/// A quiet user's poll position must not fall behind the retained history while others'
/// messages go by: the next poll with the returned id must not be told to reset.
#[tokio::test]
async fn a_quiet_pollers_position_keeps_up_with_a_busy_app() {
    let mut cfg = config();
    cfg.app.limits.history_size = 4;
    let hub = TestHub::start(cfg).await;
    let base = hub.base.as_str();
    let alice = token("alice", json!({}));
    let (_, first) = poll(base, &alice, None, 30).await;
    let mut position = first["lastEventId"].as_str().unwrap().to_string();
    for round in 0..3 {
        for i in 0..3 {
            publish_ok(base, json!({"to": {"users": ["bob"]}, "data": format!("{round}-{i}")})).await;
        }
        let (status, answer) = poll(base, &alice, Some(&position), 1).await;
        assert_eq!(status, 200);
        assert_eq!(answer["reset"], false, "round {round}: {answer}");
        assert_eq!(events(&answer), [], "round {round}");
        position = answer["lastEventId"].as_str().unwrap().to_string();
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_poll_from_an_id_it_cannot_resume_from_resets_with_200() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.as_str();
    let alice = token("alice", json!({}));
    let d1 = publish_ok(base, json!({"to": {"users": ["alice"]}, "data": "d1", "durable": true})).await;
    let head = publish_ok(base, json!({"to": {"users": ["bob"]}, "data": "x"})).await;
    let epoch = head.rsplit_once('-').unwrap().0.to_string();
    let other = if epoch == "zzzzzz" { "yyyyyy" } else { "zzzzzz" };
    for bad in [format!("{other}-1"), "garbage".to_string(), format!("{epoch}-999"), format!("{epoch}-x")] {
        let (status, answer) = poll(base, &alice, Some(&bad), 1).await;
        assert_eq!(status, 200, "{bad}: {answer}");
        assert_eq!(answer["reset"], true, "{bad}");
        let got = events(&answer);
        assert_eq!(got[0].0, None);
        assert_eq!(got[0].1.as_deref(), Some("herald.reset"));
        assert!(serde_json::from_str::<Value>(&got[0].2).unwrap()["reason"].is_string());
        // After a reset the durable backlog comes again.
        assert_eq!(got[1..], [(Some(d1.clone()), None, "d1".into())], "{bad}");
        assert_eq!(answer["lastEventId"], head.as_str());
    }
    hub.shutdown().await.unwrap();
}

/// Stream, then poll from the stream's last id, then stream from the poll's `lastEventId`:
/// every message of the user arrives once, in order.
#[tokio::test]
async fn switching_from_stream_to_poll_and_back_loses_and_doubles_nothing() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.as_str();
    let alice = token("alice", json!({"tenant": "acme"}));
    let query = format!("access_token={alice}&channel=news");
    let mut expected = Vec::new();
    let mut got = Vec::new();
    let mut n = 0;
    let mut send = |to: Value, mine: bool, durable: bool| {
        n += 1;
        let body = json!({"to": to, "event": "m", "data": format!("m{n}"), "durable": durable});
        let data = format!("m{n}");
        async move {
            let id = publish_ok(base, body).await;
            (id, data, mine)
        }
    };

    let mut sse = Sse::open(base, &query, None).await;
    sse.until("herald.connected").await;
    for (to, mine) in
        [(json!({"users": ["alice"]}), true), (json!({"users": ["bob"]}), false), (json!({"channels": ["news"]}), true)]
    {
        let (id, data, mine) = send(to, mine, false).await;
        if mine {
            expected.push((id, data));
        }
    }
    while got.len() < expected.len() {
        let e = sse.next_message().await;
        got.push((e.id, e.data));
    }
    let last = got.last().unwrap().0.clone();
    drop(sse);

    // While offline: one durable, one to the tenant, one not hers.
    for (to, mine, durable) in [
        (json!({"users": ["alice"]}), true, true),
        (json!({"tenants": ["acme"]}), true, false),
        (json!({"tenants": ["globex"]}), false, false),
    ] {
        let (id, data, mine) = send(to, mine, durable).await;
        if mine {
            expected.push((id, data));
        }
    }
    let (status, answer) = poll(base, &alice, Some(&last), 30).await;
    assert_eq!(status, 200);
    assert_eq!(answer["reset"], false);
    let mut acks = Vec::new();
    for (id, _, data) in events(&answer) {
        let id = id.expect("messages have ids");
        if id.ends_with("-d") {
            acks.push(id.clone());
        }
        got.push((id, data));
    }
    assert_eq!(acks.len(), 1, "the durable one came by poll");
    // The client acknowledges what it received, as herald.js does.
    let r = client().post(format!("{base}/ack")).bearer_auth(&alice).json(&json!({"ids": acks})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut position = answer["lastEventId"].as_str().unwrap().to_string();

    // Another poll round, with the message published while the poll is pending.
    let pending = {
        let (base, alice, position) = (base.to_string(), alice.clone(), position.clone());
        tokio::spawn(async move { poll(&base, &alice, Some(&position), 30).await })
    };
    let (id, data, _) = send(json!({"all": true}), true, false).await;
    expected.push((id, data));
    let (_, answer) = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    for (id, _, data) in events(&answer) {
        got.push((id.unwrap(), data));
    }
    position = answer["lastEventId"].as_str().unwrap().to_string();

    // Offline again, then back to the stream from the poll's position.
    for (to, mine) in [(json!({"users": ["alice"]}), true), (json!({"channels": ["sports"]}), false)] {
        let (id, data, mine) = send(to, mine, false).await;
        if mine {
            expected.push((id, data));
        }
    }
    let mut sse = Sse::open(base, &query, Some(&position)).await;
    let connected = sse.until("herald.connected").await;
    assert_eq!(connected.id, position);
    let (id, data, _) = send(json!({"users": ["alice"]}), true, false).await;
    expected.push((id.clone(), data));
    loop {
        let e = sse.next().await;
        assert_ne!(e.event, "herald.reset");
        if e.event.starts_with("herald.") {
            continue;
        }
        got.push((e.id.clone(), e.data));
        if e.id == id {
            break;
        }
    }
    assert_eq!(got, expected);
    hub.shutdown().await.unwrap();
}
