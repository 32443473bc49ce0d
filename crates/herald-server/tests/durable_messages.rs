//! Durable messages: delivery to users who come online later, acknowledgements by the user and
//! by the backend, unread counts and `herald.unread`, the message listing, and TTL.

mod common;

use std::time::Duration;

use common::*;
use herald::config::{Config, StoreKind};
use serde_json::{json, Value};

async fn publish_ok(base: &str, body: Value) -> String {
    let (status, answer) = publish(base, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

async fn durable_to(base: &str, user: &str, data: &str) -> String {
    let id = publish_ok(base, json!({"to": {"users": [user]}, "event": "note", "data": data, "durable": true})).await;
    assert!(id.ends_with("-d"), "durable ids end in -d: {id}");
    id
}

async fn post(url: &str, bearer: &str, body: Value) -> (u16, Value) {
    let r = client().post(url).bearer_auth(bearer).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /ack` with the user's token.
async fn user_ack(base: &str, user_token: &str, body: Value) -> (u16, Value) {
    post(&format!("{base}/ack"), user_token, body).await
}

/// `POST /api/users/{user}/ack` with the API key.
async fn backend_ack(base: &str, user: &str, body: Value) -> (u16, Value) {
    post(&format!("{base}/api/users/{user}/ack"), API_KEY, body).await
}

async fn unread(base: &str, user: &str) -> u64 {
    let (status, body) = api_get(base, &format!("/api/users/{user}/unread")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], user);
    body["unread"].as_u64().expect("a count")
}

fn unread_event(e: &eventsource_stream::Event) -> u64 {
    assert_eq!(e.event, "herald.unread", "{e:?}");
    serde_json::from_str::<Value>(&e.data).unwrap()["unread"].as_u64().unwrap()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

/// The memory store and the SQLite store (in a temp dir kept alive by the caller).
fn configs() -> Vec<(Config, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Config { store: StoreKind::Sqlite, store_path: temp_db(&dir), ..config() };
    vec![(config(), None), (sqlite, Some(dir))]
}

#[tokio::test]
async fn durable_messages_reach_a_user_who_connects_for_the_first_time_later() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let first = durable_to(&hub.base, "newbie", "one").await;
        publish_ok(&hub.base, json!({"to": {"users": ["newbie"]}, "data": "not durable: gone"})).await;
        let second = durable_to(&hub.base, "newbie", "two").await;
        durable_to(&hub.base, "someone-else", "not yours").await;
        let third =
            publish_ok(&hub.base, json!({"to": {"users": ["newbie", "other"]}, "data": {"n": 3}, "durable": true}))
                .await;
        assert_eq!(unread(&hub.base, "newbie").await, 3);

        let mut sse = Sse::open(&hub.base, &format!("access_token={}", token("newbie", json!({}))), None).await;
        assert_eq!(sse.status, 200);
        let connected = sse.until("herald.connected").await;
        let mut got = Vec::new();
        for _ in 0..3 {
            let e = sse.next().await;
            got.push((e.id, e.event, e.data));
        }
        assert_eq!(
            got,
            [
                (first, "note".to_string(), "one".to_string()),
                (second, "note".to_string(), "two".to_string()),
                (third, "message".to_string(), "{\"n\":3}".to_string()),
            ]
        );
        // The bare `id:` block puts the last-event-id back to the position before anything else.
        let e = sse.next().await;
        assert_eq!(unread_event(&e), 3);
        assert_eq!(e.id, connected.id, "the last-event-id is back at the position");
        let live = publish_ok(&hub.base, json!({"to": {"users": ["newbie"]}, "data": "live"})).await;
        let e = sse.next_message().await;
        assert_eq!(
            (e.id.as_str(), e.data.as_str()),
            (live.as_str(), "live"),
            "the non-durable message is not replayed"
        );
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn acks_by_the_user_and_by_the_backend_and_nobody_else() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let alice = token("alice", json!({}));
        let bob = token("bob", json!({}));
        let ids: Vec<String> = [
            durable_to(base, "alice", "a1").await,
            durable_to(base, "alice", "a2").await,
            durable_to(base, "alice", "a3").await,
            durable_to(base, "alice", "a4").await,
        ]
        .into();
        let bobs = durable_to(base, "bob", "b1").await;
        assert_eq!(unread(base, "alice").await, 4);

        // The user, with its token.
        assert_eq!(user_ack(base, &alice, json!({"ids": [ids[0]]})).await, (200, json!({"acked": 1, "unread": 3})));
        assert_eq!(
            user_ack(base, &alice, json!({"ids": [ids[0]]})).await,
            (200, json!({"acked": 0, "unread": 3})),
            "twice is once"
        );
        // The `-d` may be omitted.
        let bare = ids[1].trim_end_matches("-d");
        assert_eq!(user_ack(base, &alice, json!({"ids": [bare]})).await, (200, json!({"acked": 1, "unread": 2})));
        // The backend, on the user's behalf.
        assert_eq!(backend_ack(base, "alice", json!({"ids": [ids[2]]})).await, (200, json!({"acked": 1, "unread": 1})));

        // Another user's ack of alice's message changes nothing, by token or by API.
        assert_eq!(user_ack(base, &bob, json!({"ids": [ids[3]]})).await, (200, json!({"acked": 0, "unread": 1})));
        assert_eq!(backend_ack(base, "bob", json!({"ids": [ids[3]]})).await, (200, json!({"acked": 0, "unread": 1})));
        assert_eq!(backend_ack(base, "carol", json!({"ids": [ids[3]]})).await, (200, json!({"acked": 0, "unread": 0})));
        // Alice cannot ack bob's.
        assert_eq!(user_ack(base, &alice, json!({"ids": [bobs]})).await, (200, json!({"acked": 0, "unread": 1})));
        // An id of another epoch, or one that names no message, changes nothing.
        let seq3: u64 = ids[3].trim_end_matches("-d").rsplit_once('-').unwrap().1.parse().unwrap();
        let foreign = format!("zz{}-{seq3}-d", &ids[3][..4]);
        assert_eq!(
            user_ack(base, &alice, json!({"ids": [foreign, ids[3].replace(&format!("-{seq3}-"), "-999999-")]})).await.0,
            200
        );
        assert_eq!(unread(base, "alice").await, 1);
        assert_eq!(unread(base, "bob").await, 1);

        let (_, page) = api_get(base, "/api/users/alice/messages?state=unread").await;
        assert_eq!(ids_of(&page), [ids[3].clone()]);
        assert_eq!(
            user_ack(base, &alice, json!({"ids": [ids[3], ids[3]]})).await,
            (200, json!({"acked": 1, "unread": 0}))
        );
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn malformed_acks_are_refused_with_400_and_change_nothing() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let alice = token("alice", json!({}));
        let id = durable_to(base, "alice", "a1").await;
        let epoch = id.trim_end_matches("-d").rsplit_once('-').unwrap().0.to_string();
        let bodies = [
            json!({"ids": [id, "garbage"]}),
            json!({"ids": [id, ""]}),
            json!({"ids": [id, format!("{epoch}-")]}),
            json!({"ids": [id, format!("{epoch}-1-x")]}),
            json!({"ids": [id, format!("{epoch}-99999999999999999999999")]}),
            json!({"ids": [id, 7]}),
            json!({"ids": id}),
            json!({}),
            json!({"ids": [id], "extra": true}),
            json!([id]),
        ];
        for body in &bodies {
            let (status, problem) = user_ack(base, &alice, body.clone()).await;
            assert_eq!(status, 400, "user ack {body}: {problem}");
            assert_eq!(problem["status"], 400, "a problem object: {problem}");
            let (status, problem) = backend_ack(base, "alice", body.clone()).await;
            assert_eq!(status, 400, "backend ack {body}: {problem}");
        }
        // Not JSON at all.
        let r = client()
            .post(format!("{base}/ack"))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(unread(base, "alice").await, 1, "nothing was acknowledged");
        let (_, page) = api_get(base, "/api/users/alice/messages?state=all").await;
        assert_eq!(page["messages"][0]["read_at"], Value::Null);
        // Without a valid token or key.
        assert_eq!(user_ack(base, "not-a-token", json!({"ids": [id]})).await.0, 401);
        assert_eq!(
            post(&format!("{base}/api/users/alice/ack"), "wrong-key-0123456789", json!({"ids": [id]})).await.0,
            401
        );
        assert_eq!(unread(base, "alice").await, 1);
        hub.shutdown().await.unwrap();
    }
}

/// An id with a sequence no message can have (beyond `i64::MAX`) is well-formed: it names
/// nothing, so it must not fail the request or half-apply it.
#[tokio::test]
async fn an_ack_naming_a_sequence_beyond_any_message_changes_nothing_else() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let a1 = durable_to(base, "alice", "a1").await;
        let a2 = durable_to(base, "alice", "a2").await;
        let epoch = a1.trim_end_matches("-d").rsplit_once('-').unwrap().0.to_string();
        let huge = format!("{epoch}-{}-d", u64::MAX);
        let (status, body) = backend_ack(base, "alice", json!({"ids": [a1, huge]})).await;
        assert_eq!((status, body), (200, json!({"acked": 1, "unread": 1})));
        let (status, body) = api_get(base, &format!("/api/users/alice/messages?state=all&cursor={huge}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ids_of(&body), [a2, a1]);
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn unread_counts_follow_publishes_and_acks_and_reach_the_stream() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let alice = token("alice", json!({}));
        assert_eq!(unread(base, "alice").await, 0);
        let mut sse = Sse::open(base, &format!("access_token={alice}"), None).await;
        sse.until("herald.connected").await;
        assert_eq!(unread_event(&sse.next().await), 0, "the count comes first");

        let a1 = durable_to(base, "alice", "a1").await;
        let e = sse.next().await;
        assert_eq!((e.id.as_str(), e.data.as_str()), (a1.as_str(), "a1"));
        assert_eq!(unread_event(&sse.next().await), 1);
        let a2 = durable_to(base, "alice", "a2").await;
        assert_eq!(sse.next().await.id, a2);
        assert_eq!(unread_event(&sse.next().await), 2);
        assert_eq!(unread(base, "alice").await, 2);

        assert_eq!(user_ack(base, &alice, json!({"ids": [a1]})).await.0, 200);
        assert_eq!(unread_event(&sse.next().await), 1);
        assert_eq!(backend_ack(base, "alice", json!({"ids": [a2]})).await.0, 200);
        assert_eq!(unread_event(&sse.next().await), 0);
        assert_eq!(unread(base, "alice").await, 0);

        // Changes that are not alice's send her nothing: the next event is the marker.
        let b1 = durable_to(base, "bob", "b1").await;
        assert_eq!(backend_ack(base, "bob", json!({"ids": [b1]})).await.0, 200);
        assert_eq!(user_ack(base, &alice, json!({"ids": [a1]})).await, (200, json!({"acked": 0, "unread": 0})));
        let marker = publish_ok(base, json!({"to": {"users": ["alice"]}, "data": "marker"})).await;
        let e = sse.next().await;
        assert_eq!((e.event.as_str(), e.id.as_str()), ("message", marker.as_str()), "{e:?}");

        // A second stream of the same user is told too.
        let mut other = Sse::open(base, &format!("access_token={alice}"), None).await;
        other.until("herald.connected").await;
        assert_eq!(unread_event(&other.next().await), 0);
        let a3 = durable_to(base, "alice", "a3").await;
        for s in [&mut sse, &mut other] {
            assert_eq!(s.next().await.id, a3);
            assert_eq!(unread_event(&s.next().await), 1);
        }
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn the_message_listing_pages_newest_first_by_state() {
    for (cfg, _dir) in configs() {
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let mut m = Vec::new();
        for i in 1..=5 {
            m.push(durable_to(base, "alice", &format!("m{i}")).await);
        }
        durable_to(base, "bob", "not alice's").await;
        publish_ok(base, json!({"to": {"users": ["alice"]}, "data": "not durable"})).await;
        assert_eq!(
            backend_ack(base, "alice", json!({"ids": [m[1], m[3]]})).await,
            (200, json!({"acked": 2, "unread": 3}))
        );

        let page = |q: String| async move {
            let (status, body) = api_get(base, &format!("/api/users/alice/messages?{q}")).await;
            assert_eq!(status, 200, "{q}: {body}");
            body
        };
        // state=all, two at a time.
        let p1 = page("state=all&limit=2".into()).await;
        assert_eq!(ids_of(&p1), [m[4].clone(), m[3].clone()]);
        let c1 = p1["next_cursor"].as_str().expect("more").to_string();
        let p2 = page(format!("state=all&limit=2&cursor={c1}")).await;
        assert_eq!(ids_of(&p2), [m[2].clone(), m[1].clone()]);
        let c2 = p2["next_cursor"].as_str().expect("more").to_string();
        let p3 = page(format!("state=all&limit=2&cursor={c2}")).await;
        assert_eq!(ids_of(&p3), [m[0].clone()]);
        assert_eq!(p3["next_cursor"], Value::Null);
        // Exactly a page's worth left: no further page is promised.
        let exact = page("state=all&limit=5".into()).await;
        assert_eq!(ids_of(&exact).len(), 5);
        assert_eq!(exact["next_cursor"], Value::Null);

        // state=unread (the default), two at a time.
        let u1 = page("limit=2".into()).await;
        assert_eq!(ids_of(&u1), [m[4].clone(), m[2].clone()]);
        assert_eq!(ids_of(&page("state=unread&limit=2".into()).await), ids_of(&u1));
        let c = u1["next_cursor"].as_str().expect("more").to_string();
        let u2 = page(format!("state=unread&limit=2&cursor={c}")).await;
        assert_eq!(ids_of(&u2), [m[0].clone()]);
        assert_eq!(u2["next_cursor"], Value::Null);

        // The fields of a message.
        let all = page("state=all".into()).await;
        let messages = all["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 5);
        for (msg, i) in messages.iter().zip([4, 3, 2, 1, 0]) {
            assert_eq!(msg["id"], m[i]);
            assert_eq!(msg["event"], "note");
            assert_eq!(msg["data"], format!("m{}", i + 1));
            assert!(msg["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{msg}");
            assert!(msg["expires_at"].as_str().unwrap() > msg["created_at"].as_str().unwrap(), "{msg}");
            assert_eq!(msg["read_at"].is_string(), i == 1 || i == 3, "{msg}");
        }
        for bad in ["state=read", "limit=0", "limit=x", "cursor=garbage", "limit=100000"] {
            let (status, body) = api_get(base, &format!("/api/users/alice/messages?{bad}")).await;
            assert_eq!(status, 400, "{bad}: {body}");
        }
        let (status, body) = api_get(base, "/api/users/nobody/messages?state=all").await;
        assert_eq!((status, body), (200, json!({"messages": [], "next_cursor": null})));
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn durable_messages_expire_after_their_ttl_on_the_hub_tick() {
    for (mut cfg, _dir) in configs() {
        cfg.heartbeat_secs = 1;
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let alice = token("alice", json!({}));
        let mut sse = Sse::open(base, &format!("access_token={alice}"), None).await;
        sse.until("herald.connected").await;
        assert_eq!(unread_event(&sse.next().await), 0);
        let keeps = durable_to(base, "alice", "keeps").await;
        assert_eq!(sse.next().await.id, keeps);
        assert_eq!(unread_event(&sse.next().await), 1);
        let brief =
            publish_ok(base, json!({"to": {"users": ["alice"]}, "data": "brief", "durable": true, "ttl": 1})).await;
        assert_eq!(sse.next().await.id, brief);
        assert_eq!(unread_event(&sse.next().await), 2);
        // The sweep on the hub's tick expires it and tells the stream.
        let e = sse.until("herald.unread").await;
        assert_eq!(unread_event(&e), 1);
        assert_eq!(unread(base, "alice").await, 1);
        let (_, page) = api_get(base, "/api/users/alice/messages?state=all").await;
        assert_eq!(ids_of(&page), std::slice::from_ref(&keeps));
        // A new connection gets only the one that is left; an ack of the expired one does nothing.
        let mut again = Sse::open(base, &format!("access_token={alice}"), None).await;
        again.until("herald.connected").await;
        let e = again.next().await;
        assert_eq!((e.id.as_str(), e.data.as_str()), (keeps.as_str(), "keeps"));
        assert_eq!(unread_event(&again.next().await), 1);
        assert_eq!(user_ack(base, &alice, json!({"ids": [brief]})).await, (200, json!({"acked": 0, "unread": 1})));

        // Offline users' messages expire too: poll the API with a deadline.
        durable_to(base, "offline", "stays").await;
        publish_ok(base, json!({"to": {"users": ["offline"]}, "data": "goes", "durable": true, "ttl": 1})).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while unread(base, "offline").await != 1 {
            assert!(tokio::time::Instant::now() < deadline, "the ttl-1 message did not expire");
            tokio::time::sleep(Duration::from_millis(50)).await; // polling interval, not synchronisation
        }
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn an_expired_message_leaves_the_unread_count_when_it_expires_not_at_the_next_tick() {
    for (mut cfg, _dir) in configs() {
        // No tick will come during the test: only the expiry itself can bring the count down.
        cfg.heartbeat_secs = 3600;
        let hub = TestHub::start(cfg).await;
        let base = hub.base.as_str();
        let mut sse = Sse::open(base, &format!("access_token={}", token("erin", json!({}))), None).await;
        sse.until("herald.connected").await;
        assert_eq!(unread_event(&sse.next().await), 0);
        let brief =
            publish_ok(base, json!({"to": {"users": ["erin"]}, "data": "brief", "durable": true, "ttl": 1})).await;
        assert_eq!(sse.next().await.id, brief);
        assert_eq!(unread_event(&sse.next().await), 1);
        assert_eq!(unread_event(&sse.until("herald.unread").await), 0, "the badge drops at expiry");
        assert_eq!(unread(base, "erin").await, 0);
        hub.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn ttl_out_of_range_is_refused_and_nothing_is_sent() {
    let hub = TestHub::start(config()).await;
    let base = hub.base.as_str();
    let max = config().app.limits.max_ttl_secs;
    let mut sse = Sse::open(base, &format!("access_token={}", token("alice", json!({}))), None).await;
    sse.until("herald.connected").await;
    for ttl in [json!(0), json!(max + 1), json!(-1), json!(1.5), json!("60"), json!(u64::MAX)] {
        let (status, problem) =
            publish(base, json!({"to": {"users": ["alice"]}, "data": "x", "durable": true, "ttl": ttl})).await;
        assert_eq!(status, 400, "ttl {ttl}: {problem}");
        assert_eq!(problem["status"], 400);
    }
    let (status, problem) = publish(base, json!({"to": {"users": ["alice"]}, "data": "x", "ttl": 60})).await;
    assert_eq!(status, 400, "ttl without durable: {problem}");
    // In a batch, one bad ttl refuses the whole batch.
    let r = client()
        .post(format!("{base}/api/publish/batch"))
        .bearer_auth(API_KEY)
        .json(&json!([
            {"to": {"users": ["alice"]}, "data": "ok", "durable": true, "ttl": 60},
            {"to": {"users": ["alice"]}, "data": "x", "durable": true, "ttl": 0},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(unread(base, "alice").await, 0);
    // The bounds themselves are accepted.
    publish_ok(base, json!({"to": {"users": ["alice"]}, "data": "max", "durable": true, "ttl": max})).await;
    let e = sse.next_message().await;
    assert_eq!(e.data, "max", "nothing refused was sent before");
    assert_eq!(unread(base, "alice").await, 1);
    hub.shutdown().await.unwrap();
}
