//! Resuming with `Last-Event-ID`: after a disconnect, at the seam under concurrent publishing,
//! and from ids the hub cannot resume from (`herald.reset`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

/// The sequence number of an event id (`<epoch>-<seq>[-d]`).
fn seq(id: &str) -> u64 {
    id.trim_end_matches("-d").rsplit_once('-').expect("an event id").1.parse().expect("a decimal seq")
}

fn epoch(id: &str) -> &str {
    id.trim_end_matches("-d").rsplit_once('-').expect("an event id").0
}

async fn publish_ok(base: &str, body: Value) -> String {
    let (status, answer) = publish(base, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn resume_after_a_disconnect_replays_exactly_the_gap_in_order_once() {
    let hub = TestHub::start(config()).await;
    let alice = token("alice", json!({"tenant": "acme", "sid": "alice-laptop"}));
    let query = format!("access_token={alice}&channel=news");

    let mut first = Sse::open(&hub.base, &query, None).await;
    assert_eq!(first.status, 200);
    first.until("herald.connected").await;
    let seen = publish_ok(&hub.base, json!({"to": {"users": ["alice"]}, "event": "m", "data": "before"})).await;
    let event = first.next_message().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (seen.as_str(), "before"));
    drop(first);

    // The gap: some for alice (by every kind of address), some for others.
    let gap: Vec<(Value, bool)> = vec![
        (json!({"users": ["alice"]}), true),
        (json!({"users": ["bob"]}), false),
        (json!({"tenants": ["acme"]}), true),
        (json!({"tenants": ["globex"]}), false),
        (json!({"channels": ["news"]}), true),
        (json!({"channels": ["sports"]}), false),
        (json!({"sessions": ["alice-laptop"]}), true),
        (json!({"sessions": ["alice-phone"]}), false),
        (json!({"all": true}), true),
        (json!({"users": ["bob", "alice"], "channels": ["news"], "tenants": ["acme"]}), true),
    ];
    let mut expected = Vec::new();
    for (i, (to, for_alice)) in gap.iter().enumerate() {
        let id = publish_ok(&hub.base, json!({"to": to, "event": "m", "data": format!("gap-{i}")})).await;
        if *for_alice {
            expected.push((id, format!("gap-{i}")));
        }
    }
    // Durable ones in the gap come once, in sequence, with their `-d` id.
    let durable = publish_ok(
        &hub.base,
        json!({"to": {"users": ["alice"]}, "event": "m", "data": "gap-durable", "durable": true}),
    )
    .await;
    assert!(durable.ends_with("-d"), "{durable}");
    expected.push((durable, "gap-durable".into()));
    publish_ok(&hub.base, json!({"to": {"users": ["bob"]}, "event": "m", "data": "bob-durable", "durable": true}))
        .await;

    let mut resumed = Sse::open(&hub.base, &query, Some(&seen)).await;
    assert_eq!(resumed.status, 200);
    let connected = resumed.until("herald.connected").await;
    assert_eq!(connected.id, seen, "the stream continues from the id it was given");
    let mut got = Vec::new();
    // Control events (`herald.unread`) may interleave; anything else must be exactly the gap.
    while got.len() < expected.len() {
        let e = resumed.next().await;
        assert_ne!(e.event, "herald.reset", "{e:?}");
        if !e.event.starts_with("herald.") {
            got.push((e.id, e.data));
        }
    }
    assert_eq!(got, expected);
    // Nothing else was queued: the next message is a live one published now.
    let live = publish_ok(&hub.base, json!({"to": {"users": ["alice"]}, "event": "m", "data": "live"})).await;
    let e = resumed.next_message().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (live.as_str(), "live"));
    hub.shutdown().await.unwrap();
}

/// Who a client is, and which of the publisher's target kinds reach it.
struct Client {
    user: &'static str,
    tenant: Option<&'static str>,
    channels: &'static [&'static str],
}

/// The publisher's rotation of addresses.
fn targets(k: usize) -> Value {
    match k % 6 {
        0 => json!({"users": ["alice"]}),
        1 => json!({"users": ["bob"]}),
        2 => json!({"channels": ["news"]}),
        3 => json!({"tenants": ["acme"]}),
        4 => json!({"users": ["carol", "dave"]}),
        _ => json!({"channels": ["sports"]}),
    }
}

fn addressed(c: &Client, k: usize) -> bool {
    match k % 6 {
        0 => c.user == "alice",
        1 => c.user == "bob",
        2 => c.channels.contains(&"news"),
        3 => c.tenant == Some("acme"),
        4 => c.user == "carol" || c.user == "dave",
        _ => c.channels.contains(&"sports"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_under_concurrent_publishing_has_no_gap_and_no_duplicate() {
    seam_under(1).await;
}

/// The seam while several publishers send at once, singly and in batches whose items share
/// their addresses: messages queued behind one fan-out reach each stream together, and a
/// stream starting meanwhile must still get each of them exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_under_concurrent_publishers_and_batches_has_no_gap_and_no_duplicate() {
    seam_under(4).await;
}

/// Four clients reconnect `CYCLES` times mid-flow, each resuming from the last id it read,
/// while `publishers` publish: each must receive exactly the messages addressed to it after
/// its first position, in id order. With more than one publisher, every other send is a batch
/// of three items to the same addresses.
async fn seam_under(publishers: usize) {
    const CYCLES: usize = 25;
    let hub = TestHub::start(config()).await;
    let base = hub.base.clone();
    let clients: Vec<Client> = vec![
        Client { user: "alice", tenant: Some("acme"), channels: &["news"] },
        Client { user: "bob", tenant: Some("acme"), channels: &["sports"] },
        Client { user: "carol", tenant: Some("globex"), channels: &["news", "sports"] },
        Client { user: "dave", tenant: None, channels: &[] },
    ];

    // (seq, k) of every message, in publish order; the final `end` goes to everyone.
    let published = Arc::new(parking_lot_free::Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (base, published, stop) = (base.clone(), published.clone(), stop.clone());
            tokio::spawn(async move {
                let mut k = p;
                while !stop.load(Ordering::SeqCst) {
                    assert!(k < 50_000, "the clients never finished their reconnect cycles");
                    if publishers == 1 || (k / publishers).is_multiple_of(2) {
                        let id =
                            publish_ok(&base, json!({"to": targets(k), "event": "m", "data": k.to_string()})).await;
                        published.push(seq(&id), k);
                    } else {
                        let item = json!({"to": targets(k), "event": "m", "data": k.to_string()});
                        let (status, _, answers) =
                            api_post(&base, API_KEY, "/api/publish/batch", &json!([item, item, item])).await;
                        assert_eq!(status, 200, "{answers}");
                        for answer in answers.as_array().unwrap() {
                            published.push(seq(answer["id"].as_str().expect("an id")), k);
                        }
                    }
                    k += publishers;
                }
            })
        })
        .collect();
    let publisher = {
        let base = base.clone();
        tokio::spawn(async move {
            for task in tasks {
                task.await.unwrap();
            }
            publish_ok(&base, json!({"to": {"all": true}, "event": "end", "data": "end"})).await
        })
    };

    let mut tasks = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        let (base, done, published) = (base.clone(), done.clone(), published.clone());
        tasks.push(tokio::spawn(async move {
            let mut query = format!(
                "access_token={}",
                token(client.user, client.tenant.map_or(json!({}), |t| json!({"tenant": t})))
            );
            for ch in client.channels {
                query.push_str(&format!("&channel={ch}"));
            }
            let mut start = None;
            let mut last: Option<String> = None;
            let mut received: Vec<u64> = Vec::new();
            let mut cycle = 0;
            loop {
                let mut sse = Sse::open(&base, &query, last.as_deref()).await;
                assert_eq!(sse.status, 200);
                let connected = sse.until("herald.connected").await;
                if let Some(last) = &last {
                    assert_eq!(&connected.id, last, "{}: the position is the id resumed from", client.user);
                }
                start.get_or_insert(seq(&connected.id));
                // Read a varying number of messages on this connection, then drop it mid-flow.
                let quota = if cycle < CYCLES { 2 + (cycle * 3 + n) % 9 } else { usize::MAX };
                let mut read = 0;
                while read < quota {
                    let e = sse.next().await;
                    assert_ne!(e.event, "herald.reset", "{}: {e:?}", client.user);
                    if e.event.starts_with("herald.") {
                        continue;
                    }
                    received.push(seq(&e.id));
                    last = Some(e.id.clone());
                    read += 1;
                    if e.event == "end" {
                        // Concurrent publishers log their answers in any order: ids say the order.
                        let mut expected: Vec<u64> = published
                            .snapshot()
                            .into_iter()
                            .filter(|&(s, k)| s > start.unwrap() && addressed(&client, k))
                            .map(|(s, _)| s)
                            .chain([seq(&e.id)])
                            .collect();
                        expected.sort_unstable();
                        assert_eq!(received, expected, "{}: gapless, duplicate-free, in order", client.user);
                        return received.len();
                    }
                }
                cycle += 1;
                if cycle == CYCLES {
                    done.send(()).unwrap();
                }
            }
        }));
    }
    // The publisher runs until every client has reconnected CYCLES times.
    for _ in 0..tasks.len() {
        tokio::time::timeout(WAIT * 6, finished.recv()).await.expect("clients did not finish their cycles").unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let end = tokio::time::timeout(WAIT, publisher).await.expect("publisher stuck").unwrap();
    for task in tasks {
        let n = tokio::time::timeout(WAIT * 2, task).await.expect("client stuck").unwrap();
        assert!(n > CYCLES, "each client saw messages on every connection");
    }
    assert!(seq(&end) > 50, "the publisher published throughout");
    hub.shutdown().await.unwrap();
}

/// A tiny append-only log shared between the publisher and the checkers.
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Log(Mutex<Vec<(u64, usize)>>);

    impl Log {
        pub fn push(&self, seq: u64, k: usize) {
            self.0.lock().unwrap().push((seq, k));
        }

        pub fn snapshot(&self) -> Vec<(u64, usize)> {
            self.0.lock().unwrap().clone()
        }
    }
}

/// Ids the hub cannot resume from, each answered 200 with `herald.reset` at the head, and a
/// stream that then works.
#[tokio::test]
async fn unknown_malformed_foreign_or_stale_ids_reset_with_200_via_header_and_query() {
    let mut cfg = config();
    cfg.app.limits.history_size = 3;
    let hub = TestHub::start(cfg).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(publish_ok(&hub.base, json!({"to": {"users": ["bob"]}, "data": format!("x{i}")})).await);
    }
    let mut head = ids.last().unwrap().clone();
    let ep = epoch(&head).to_string();
    let other = if ep == "zzzzzz" { "yyyyyy" } else { "zzzzzz" };
    let bad = [
        format!("{other}-3"),                    // another epoch (a history this hub does not have)
        "garbage".to_string(),                   // malformed
        format!("{ep}-"),                        // malformed
        format!("{ep}-12x"),                     // malformed
        format!("-{}", seq(&head)),              // malformed: no epoch
        format!("{ep}-999"),                     // ahead of the head
        format!("{ep}-1"), // older than the retained history (3 messages; more are published below)
        format!("{ep}-99999999999999999999999"), // out of range
    ];
    // A resumable id in the query is honoured too (so the resets below are not a query that was ignored).
    let from = ids[4].clone();
    let mut sse =
        Sse::open(&hub.base, &format!("access_token={}&lastEventId={from}", token("bob", json!({}))), None).await;
    let connected = sse.until("herald.connected").await;
    assert_eq!(connected.id, from);
    let e = sse.next_message().await;
    assert_eq!((e.event.as_str(), e.id.as_str(), e.data.as_str()), ("message", ids[5].as_str(), "x5"));
    // The header wins over the query parameter.
    let mut sse =
        Sse::open(&hub.base, &format!("access_token={}&lastEventId=garbage", token("bob", json!({}))), Some(&ids[4]))
            .await;
    sse.until("herald.connected").await;
    let e = sse.next().await;
    assert_ne!(e.event, "herald.reset", "the header won");
    let e = if e.event == "herald.unread" { sse.next().await } else { e };
    assert_eq!((e.event.as_str(), e.id.as_str()), ("message", ids[5].as_str()));
    let alice = token("alice", json!({}));
    for (i, id) in bad.iter().enumerate() {
        for via_header in [true, false] {
            let mut sse = if via_header {
                Sse::open(&hub.base, &format!("access_token={alice}"), Some(id)).await
            } else {
                Sse::open(&hub.base, &format!("access_token={alice}&lastEventId={}", urlencode(id)), None).await
            };
            assert_eq!(sse.status, 200, "{id}");
            let connected = sse.until("herald.connected").await;
            assert_eq!(connected.id, head, "{id}: continues at the head");
            let reset = sse.next().await;
            assert_eq!(reset.event, "herald.reset", "{id} (header: {via_header})");
            assert_eq!(reset.id, head, "{id}");
            let reason: Value = serde_json::from_str(&reset.data).unwrap();
            assert!(reason["reason"].as_str().is_some_and(|r| !r.is_empty()), "{reset:?}");
            let live =
                publish_ok(&hub.base, json!({"to": {"users": ["alice"]}, "data": format!("live-{i}-{via_header}")}))
                    .await;
            let e = sse.next_message().await;
            assert_eq!((e.id.as_str(), e.data), (live.as_str(), format!("live-{i}-{via_header}")));
            head = live;
        }
    }
    hub.shutdown().await.unwrap();
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Several publishers at once: each stream still sees its messages in id order (the protocol's
/// "live messages, in id order"), or a client that resumes from the last id it saw would skip
/// one that arrived late. Every fifth message is durable, so messages waiting for the turn and
/// messages waiting behind a commit interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_deliver_to_each_stream_in_id_order() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 300;
    let hub = TestHub::start(config()).await;
    let mut streams = Vec::new();
    for user in ["alice", "bob"] {
        let mut sse =
            Sse::open(&hub.base, &format!("access_token={}&channel=news", token(user, json!({}))), None).await;
        sse.until("herald.connected").await;
        streams.push(sse);
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let hub = hub.hub.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let to =
                        if i % 2 == 0 { json!({"channels": ["news"]}) } else { json!({"users": ["alice", "bob"]}) };
                    let publish = herald::message::Publish {
                        to: serde_json::from_value(to).unwrap(),
                        data: format!("{p}-{i}"),
                        durable: i % 5 == 0 && i % 2 == 1,
                        ..Default::default()
                    };
                    hub.publish("default", publish).await.unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        tokio::time::timeout(WAIT, p).await.expect("publisher stuck").unwrap();
    }
    for mut sse in streams {
        let mut seqs = Vec::new();
        while seqs.len() < PUBLISHERS * EACH {
            seqs.push(seq(&sse.next_message().await.id));
        }
        let out_of_order: Vec<_> = seqs.windows(2).filter(|w| w[0] >= w[1]).collect();
        assert!(
            out_of_order.is_empty(),
            "{} pairs out of order, e.g. {:?}",
            out_of_order.len(),
            &out_of_order[..out_of_order.len().min(5)]
        );
    }
    hub.shutdown().await.unwrap();
}
