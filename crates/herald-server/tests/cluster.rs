//! A cluster of real `herald` processes on one `redis-server` each test starts for itself:
//! cross-node delivery exactly once, cluster-wide presence and kicks, resuming and durable
//! messages on another node, a node killed with `kill -9`, and Redis stopped and restarted under
//! a steady publish load.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The shortest presence TTL Herald accepts, so a killed node drops out quickly.
const PRESENCE_TTL_SECS: u64 = 3;

/// A herald node of the cluster on `redis`.
async fn node(redis: &Redis, dir: &tempfile::TempDir, name: &str) -> Process {
    let url = redis.url();
    let ttl = PRESENCE_TTL_SECS.to_string();
    Process::start(
        &dir.path().join(format!("{name}.db")),
        &[("HERALD_REDIS_URL", url.as_str()), ("HERALD_PRESENCE_TTL_SECS", ttl.as_str())],
    )
    .await
}

/// Publishes `data` to `to` on `base`, requires 200, and returns the answer.
async fn send(base: &str, to: Value, data: &str) -> Value {
    let (status, body) = publish(base, json!({ "to": to, "data": data })).await;
    assert_eq!(status, 200, "publish refused: {body}");
    body
}

/// Publishes and returns the message id.
async fn send_id(base: &str, to: Value, data: &str) -> String {
    send(base, to, data).await["id"].as_str().unwrap().to_string()
}

fn data(event: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// The next `n` messages of a stream as `(id, data)`.
async fn messages(sse: &mut Sse, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let m = sse.next_message().await;
        out.push((m.id, m.data));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_crosses_nodes_exactly_once() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await, node(&redis, &dir, "c").await);

    let (mut on_b, _) = Sse::connect(
        &b.base,
        &format!("access_token={}&channel=news", token("u1", json!({"tenant": "t1", "sid": "s1"}))),
    )
    .await;
    let (mut on_c, _) = Sse::connect(
        &c.base,
        &format!("access_token={}&channel=sports", token("u2", json!({"tenant": "t2", "sid": "s2"}))),
    )
    .await;
    let (mut on_a, _) = Sse::connect(&a.base, &format!("access_token={}", token("u3", json!({})))).await;

    let to_users = send_id(&a.base, json!({"users": ["u1"]}), "users").await;
    let to_sessions = send_id(&a.base, json!({"sessions": ["s2"]}), "sessions").await;
    let to_tenants = send_id(&a.base, json!({"tenants": ["t1"]}), "tenants").await;
    let to_channels = send_id(&a.base, json!({"channels": ["sports"]}), "channels").await;
    let both = send_id(&a.base, json!({"users": ["u1"], "sessions": ["s2"], "tenants": ["t1", "t2"]}), "both").await;
    let all = send(&a.base, json!({"all": true}), "all").await;
    // `delivered` counts every connection in the cluster that got it: u3's here, u1's and u2's
    // on the other nodes, which report their counts to this one.
    assert_eq!(all["delivered"], 3, "{all}");
    assert_eq!(all.get("complete"), None, "every node reported: {all}");
    let all = all["id"].as_str().unwrap().to_string();
    let sentinel = send_id(&a.base, json!({"all": true}), "sentinel").await;

    let expect = |list: &[(&String, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(id, d)| (id.to_string(), d.to_string())).collect()
    };
    assert_eq!(
        messages(&mut on_b, 5).await,
        expect(&[
            (&to_users, "users"),
            (&to_tenants, "tenants"),
            (&both, "both"),
            (&all, "all"),
            (&sentinel, "sentinel")
        ])
    );
    assert_eq!(
        messages(&mut on_c, 5).await,
        expect(&[
            (&to_sessions, "sessions"),
            (&to_channels, "channels"),
            (&both, "both"),
            (&all, "all"),
            (&sentinel, "sentinel")
        ])
    );
    assert_eq!(messages(&mut on_a, 2).await, expect(&[(&all, "all"), (&sentinel, "sentinel")]));

    // Nothing more was queued behind the sentinel: the next message is the next one published.
    let last = send_id(&b.base, json!({"all": true}), "last").await;
    for sse in [&mut on_a, &mut on_b, &mut on_c] {
        assert_eq!(messages(sse, 1).await, expect(&[(&last, "last")]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_listings_feed_and_kicks_are_cluster_wide() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await, node(&redis, &dir, "c").await);
    let mut feed = Sse::presence(&a.base, API_KEY).await;

    let (mut on_b, connected) =
        Sse::connect(&b.base, &format!("access_token={}&channel=news", token("42", json!({"tenant": "acme"})))).await;
    let id_b = connected["connection_id"].as_str().unwrap().to_string();
    let connect = feed.next().await;
    assert_eq!(connect.event, "connect");
    assert_eq!(data(&connect)["id"], id_b.as_str());
    assert_eq!(data(&connect)["user"], "42");

    let (mut on_c, connected) = Sse::connect(&c.base, &format!("access_token={}", token("7", json!({})))).await;
    let id_c = connected["connection_id"].as_str().unwrap().to_string();
    assert_eq!(data(&feed.until("connect").await)["id"], id_c.as_str());

    // Every node answers for every node's connections.
    for base in [&a.base, &b.base, &c.base] {
        let (status, users) = api_get(base, "/api/users").await;
        assert_eq!(status, 200, "{users}");
        assert_eq!(users["users"], json!([{"id": "42", "connections": 1}, {"id": "7", "connections": 1}]), "{base}");
        let (_, user) = api_get(base, "/api/users/42").await;
        assert_eq!(user["online"], true, "{base}: {user}");
        assert_eq!(user["connections"][0]["id"], id_b.as_str());
        assert_eq!(user["connections"][0]["channels"], json!(["news"]));
        let (_, conns) = api_get(base, "/api/connections").await;
        let mut ids: Vec<&str> =
            conns["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        let mut want = vec![id_b.as_str(), id_c.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{base}: {conns}");
        let (_, filtered) = api_get(base, "/api/connections?tenant=acme").await;
        assert_eq!(filtered["connections"].as_array().unwrap().len(), 1, "{base}: {filtered}");
    }

    // A kick of a user on A closes its stream on B, after `herald.kicked`.
    let r = client()
        .delete(format!("{}/api/users/42/connections?reason=bye", a.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["kicked"], 1);
    let kicked = on_b.until("herald.kicked").await;
    assert_eq!(data(&kicked)["reason"], "bye");
    on_b.ended().await;
    let disconnect = feed.until("disconnect").await;
    assert_eq!(data(&disconnect)["id"], id_b.as_str());
    let (_, user) = api_get(&c.base, "/api/users/42").await;
    assert_eq!(user["online"], false, "{user}");

    // A kick of one connection by id, from a node that does not hold it.
    let r = client()
        .delete(format!("{}/api/connections/{id_c}?reason=gone", b.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(data(&on_c.until("herald.kicked").await)["reason"], "gone");
    on_c.ended().await;
    assert_eq!(data(&feed.until("disconnect").await)["id"], id_c.as_str());
    let (_, users) = api_get(&a.base, "/api/users").await;
    assert_eq!(users["users"], json!([]));
    let r = client().delete(format!("{}/api/connections/{id_c}", a.base)).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "a closed connection is gone on every node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await, node(&redis, &dir, "c").await);
    let query = format!("access_token={}", token("r", json!({})));

    let (mut on_b, _) = Sse::connect(&b.base, &query).await;
    let seen = send_id(&a.base, json!({"users": ["r"]}), "seen").await;
    assert_eq!(messages(&mut on_b, 1).await, [(seen.clone(), "seen".to_string())]);
    drop(on_b);

    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push((send_id(&a.base, json!({"users": ["r"]}), &format!("missed {i}")).await, format!("missed {i}")));
        send_id(&a.base, json!({"users": ["someone else"]}), "not for r").await;
    }
    let mut on_c = Sse::open(&c.base, &query, Some(&seen)).await;
    assert_eq!(on_c.status, 200);
    let connected = on_c.next().await;
    assert_eq!(connected.event, "herald.connected");
    assert_eq!(messages(&mut on_c, 5).await, missed);
    let after = send_id(&b.base, json!({"users": ["r"]}), "after").await;
    assert_eq!(messages(&mut on_c, 1).await, [(after, "after".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_message_is_delivered_and_acknowledged_on_other_nodes() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await, node(&redis, &dir, "c").await);

    let (status, published) =
        publish(&a.base, json!({"to": {"users": ["d"]}, "event": "NOTE", "data": "keep me", "durable": true})).await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["delivered"], 0);
    let id = published["id"].as_str().unwrap().to_string();
    assert!(id.ends_with("-d"), "{id}");
    let (_, unread) = api_get(&b.base, "/api/users/d/unread").await;
    assert_eq!(unread["unread"], 1, "{unread}");

    let (mut on_c, _) = Sse::connect(&c.base, &format!("access_token={}", token("d", json!({})))).await;
    let pending = on_c.next_message().await;
    assert_eq!((pending.id.as_str(), pending.event.as_str(), pending.data.as_str()), (id.as_str(), "NOTE", "keep me"));
    assert_eq!(data(&on_c.until("herald.unread").await)["unread"], 1);

    let (status, _, acked) = api_post(&b.base, API_KEY, "/api/users/d/ack", &json!({"ids": [id]})).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked, json!({"acked": 1, "unread": 0}));
    // The user's stream on C hears of the ack made through B.
    assert_eq!(data(&on_c.until("herald.unread").await)["unread"], 0);
    let (_, unread) = api_get(&a.base, "/api/users/d/unread").await;
    assert_eq!(unread["unread"], 0, "{unread}");
    let (_, read) = api_get(&a.base, "/api/users/d/messages?state=all").await;
    assert_eq!(read["messages"][0]["id"], id.as_str(), "{read}");
    assert!(read["messages"][0]["read_at"].is_string(), "{read}");

    // A later durable message to the connected user is live on C, sent from B.
    let (status, live) = publish(&b.base, json!({"to": {"users": ["d"]}, "data": "live", "durable": true})).await;
    assert_eq!(status, 200, "{live}");
    let m = on_c.next_message().await;
    assert_eq!((m.id.as_str(), m.data.as_str()), (live["id"].as_str().unwrap(), "live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_presence_and_its_client_resumes_elsewhere() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut k, b) = (node(&redis, &dir, "a").await, node(&redis, &dir, "k").await, node(&redis, &dir, "b").await);
    let query = format!("access_token={}", token("k", json!({})));
    let (_on_b, _) = Sse::connect(&b.base, &format!("access_token={}", token("stays", json!({})))).await;

    let (mut on_k, _) = Sse::connect(&k.base, &query).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push((send_id(&a.base, json!({"users": ["k"]}), &format!("m{i}")).await, format!("m{i}")));
    }
    assert_eq!(messages(&mut on_k, 2).await, sent[..2]);
    let (_, users) = api_get(&a.base, "/api/users").await;
    assert_eq!(users["users"], json!([{"id": "k", "connections": 1}, {"id": "stays", "connections": 1}]));

    let mut feed = Sse::presence(&a.base, API_KEY).await;
    k.kill9().await;
    let killed = Instant::now();
    for i in 3..6 {
        sent.push((send_id(&a.base, json!({"users": ["k"]}), &format!("m{i}")).await, format!("m{i}")));
    }
    // The killed node's connection drops out of presence within the TTL (plus slack for the
    // node's refresh period and a loaded machine), while live nodes' connections stay.
    let deadline = killed + Duration::from_secs(PRESENCE_TTL_SECS + 3);
    loop {
        let (status, users) = api_get(&a.base, "/api/users").await;
        assert_eq!(status, 200, "{users}");
        if users["users"] == json!([{"id": "stays", "connections": 1}]) {
            break;
        }
        assert!(Instant::now() < deadline, "the killed node's connection is still listed: {users}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, user) = api_get(&b.base, "/api/users/k").await;
    assert_eq!(user["online"], false, "{user}");
    // One live node announces the dead node's connections as gone on the presence feed.
    let gone = feed.until("disconnect").await;
    let gone: Value = serde_json::from_str(&gone.data).unwrap();
    assert_eq!(gone["user"], "k", "{gone}");

    // The client reconnects to B from the last message it read and loses nothing.
    let mut on_b = Sse::open(&b.base, &query, Some(&sent[1].0)).await;
    assert_eq!(on_b.status, 200);
    assert_eq!(on_b.next().await.event, "herald.connected");
    assert_eq!(messages(&mut on_b, 4).await, sent[2..]);
    let after = send_id(&b.base, json!({"users": ["k"]}), "after").await;
    assert_eq!(messages(&mut on_b, 1).await, [(after, "after".to_string())]);
}

/// A node its peers took for dead (silent longer than the TTL: a failover, a pause) while its
/// clients stayed connected rewrites its connections once it refreshes again, and announces them
/// again on the presence feed, where its peers had announced them gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_buried_alive_lists_its_connections_again() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await);
    let mut feed = Sse::presence(&a.base, API_KEY).await;
    let (_on_b, connected) = Sse::connect(&b.base, &format!("access_token={}", token("alive", json!({})))).await;
    let id = connected["connection_id"].as_str().unwrap().to_string();
    assert_eq!(data(&feed.until("connect").await)["id"], id.as_str());

    // What a peer's burial leaves in Redis, done at once: B out of the live set, its hash gone.
    let keys = redis.command("KEYS herald:default:conns:*").await.unwrap();
    let hash = keys.lines().find(|l| l.starts_with("herald:")).expect("B's connections hash").to_string();
    let node_b = hash.rsplit(':').next().unwrap();
    let bury = format!(
        "EVAL \"redis.call('ZREM', KEYS[1], ARGV[1]) return redis.call('DEL', KEYS[2])\" 2 herald:default:nodes {hash} {node_b}"
    );
    assert_eq!(redis.command(&bury).await.unwrap().trim(), ":1", "B's hash was not there to delete");

    let again = feed.until("connect").await;
    assert_eq!(data(&again)["id"], id.as_str(), "B announces its connection again");
    eventually("A lists B's connection again", || async {
        let (_, user) = api_get(&a.base, "/api/users/alive").await;
        user["connections"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
}

/// The sequence numbers of event ids (`<epoch>-<seq>[-d]`).
fn seqs_of(ids: &[String]) -> Vec<u64> {
    ids.iter().map(|id| id.split('-').nth(1).unwrap().parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_lose_the_bus_catch_up_from_the_stream() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await);
    let query = format!("access_token={}", token("bus", json!({})));
    let (mut on_a, _) = Sse::connect(&a.base, &query).await;
    let (mut on_b, _) = Sse::connect(&b.base, &query).await;

    // Publishes on A without pause while every node's bus connection is cut three times;
    // whatever was published while a node was resubscribing must come from the stream.
    let publisher = {
        let base = a.base.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..300 {
                ids.push(send_id(&base, json!({"users": ["bus"]}), &format!("n{n}")).await);
            }
            ids
        })
    };
    let mut read_by_b = Vec::new();
    for _ in 0..3 {
        eventually("both nodes subscribed to the bus", || async {
            redis.command("PUBSUB NUMSUB herald:default:bus").await.is_some_and(|r| r.ends_with(":2\r\n"))
        })
        .await;
        read_by_b.push(on_b.next_message().await.id);
        let killed = redis.command("CLIENT KILL TYPE pubsub").await.unwrap_or_default();
        assert_eq!(killed, ":2\r\n", "both bus connections are cut");
    }
    let sent = publisher.await.unwrap();
    assert!(seqs_of(&sent).windows(2).all(|w| w[0] < w[1]), "{sent:?}");
    for (name, sse, mut received) in [("a", &mut on_a, Vec::new()), ("b", &mut on_b, read_by_b)] {
        while received.last() != sent.last() {
            received.push(sse.next_message().await.id);
        }
        let received = &received[received.iter().position(|id| *id == sent[0]).unwrap_or_default()..];
        assert_eq!(received, &sent[..], "node {name} lost, doubled or reordered messages");
    }
}

/// What the publisher task saw: `(status, id, how long the answer took)` per publish, and
/// whether to stop.
#[derive(Default)]
struct Load {
    answers: Vec<(u16, Option<String>, Duration)>,
    stop: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_fails_fast_while_redis_is_down_and_recovers_with_nothing_lost() {
    let mut redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await);
    let (mut on_b, _) = Sse::connect(&b.base, &format!("access_token={}", token("steady", json!({})))).await;

    let load: Arc<std::sync::Mutex<Load>> = Arc::default();
    let publisher = {
        let (load, base) = (load.clone(), a.base.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            for n in 0.. {
                if load.lock().unwrap().stop {
                    return;
                }
                let body = json!({"to": {"users": ["steady"]}, "data": format!("n{n}"), "durable": true});
                let started = Instant::now();
                let r = http.post(format!("{base}/api/publish")).bearer_auth(API_KEY).json(&body).send().await.unwrap();
                let status = r.status().as_u16();
                let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
                let answer: Value = r.json().await.unwrap();
                let took = started.elapsed();
                if status == 503 {
                    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
                    assert_eq!(answer["status"], 503, "{answer}");
                } else {
                    assert_eq!(status, 200, "{answer}");
                }
                let id = answer["id"].as_str().map(str::to_owned);
                load.lock().unwrap().answers.push((status, id, took));
                // A steady rate rather than a flood of refusals while Redis is down.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let count = |status: u16| load.lock().unwrap().answers.iter().filter(|(s, ..)| *s == status).count();

    // Running: the subscriber on B gets the publishes taken by A.
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(on_b.next_message().await.id);
    }
    redis.stop().await;
    let ok_before_restart = {
        let deadline = Instant::now() + WAIT;
        while count(503) < 5 {
            assert!(Instant::now() < deadline, "publishes did not fail while Redis was down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        count(200)
    };
    redis.restart().await;
    // Publishing works again once A reconnects on its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(200) < ok_before_restart + 10 {
        assert!(Instant::now() < deadline, "publishing did not recover after Redis came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.lock().unwrap().stop = true;
    publisher.await.unwrap();

    let answers = std::mem::take(&mut load.lock().unwrap().answers);
    for (status, _, took) in &answers {
        if *status == 503 {
            assert!(*took < Duration::from_secs(10), "a refusal took {took:?}");
        }
    }
    let accepted: Vec<String> =
        answers.iter().filter(|(s, ..)| *s == 200).map(|(_, id, _)| id.clone().unwrap()).collect();
    // Redis kept its data (AOF): the sequence went on rather than starting over.
    let epochs: Vec<&str> = accepted.iter().map(|id| id.split('-').next().unwrap()).collect();
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "the epoch changed: {accepted:?}");
    assert!(seqs_of(&accepted).windows(2).all(|w| w[0] < w[1]), "sequence numbers went back: {accepted:?}");

    // The subscriber's stream stayed open through the outage and, once B resubscribed and
    // caught up, carries every accepted message, in order, once.
    let last = accepted.last().unwrap().clone();
    loop {
        let m = on_b.next_message().await;
        received.push(m.id.clone());
        if m.id == last {
            break;
        }
    }
    assert!(seqs_of(&received).windows(2).all(|w| w[0] < w[1]), "out of order or doubled: {received:?}");
    let missing: Vec<&String> = accepted.iter().filter(|id| !received.contains(id)).collect();
    assert!(missing.is_empty(), "accepted but not delivered: {missing:?}");

    // Every accepted durable message is stored, too.
    let (_, stored) = api_get(&b.base, "/api/users/steady/messages?state=all&limit=1000").await;
    let stored: Vec<&str> = stored["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in &accepted {
        assert!(stored.contains(&id.as_str()), "{id} was accepted but is not stored");
    }

    // And live delivery works again across nodes.
    let after = send_id(&a.base, json!({"users": ["steady"]}), "after").await;
    assert_eq!(on_b.next_message().await.id, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_counts_every_node_and_says_when_a_node_did_not_report_in_time() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (node(&redis, &dir, "a").await, node(&redis, &dir, "b").await, node(&redis, &dir, "c").await);
    let query = format!("access_token={}&channel=news", token("n", json!({})));
    let mut streams = Vec::new();
    for base in [&a.base, &a.base, &b.base, &c.base] {
        streams.push(Sse::connect(base, &query).await.0);
    }
    let answer = send(&a.base, json!({"channels": ["news"]}), "to all four").await;
    assert_eq!(answer["delivered"], 4, "{answer}");
    assert_eq!(answer.get("complete"), None, "{answer}");

    // A frozen node is still live (its presence has not expired) but cannot report: the answer
    // comes after the bounded wait, says so, and counts what the others reported.
    let frozen = c.child.id().unwrap().to_string();
    let stop = std::process::Command::new("kill").args(["-STOP", &frozen]).status().unwrap();
    assert!(stop.success());
    let answer = send(&a.base, json!({"channels": ["news"]}), "c is frozen").await;
    let resumed = std::process::Command::new("kill").args(["-CONT", &frozen]).status().unwrap();
    assert!(resumed.success());
    assert_eq!(answer["delivered"], 3, "{answer}");
    assert_eq!(answer["complete"], false, "{answer}");
    assert_eq!(answer["unreported_nodes"], 1, "{answer}");
}
