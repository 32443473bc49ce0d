//! The `herald` binary on its SQLite store: resume across a restart, durable messages across a
//! `kill -9`, and store files that are locked or corrupt.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

async fn publish_ok(base: &str, body: Value) -> String {
    let (status, answer) = publish(base, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

fn split(id: &str) -> (String, u64) {
    let (epoch, seq) = id.trim_end_matches("-d").rsplit_once('-').expect("an event id");
    (epoch.to_string(), seq.parse().expect("a decimal seq"))
}

/// Runs `herald serve` on `store` expecting it to fail at start; returns (exit code, stderr).
async fn start_expecting_failure(store: &Path) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("HERALD_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HERALD_API_KEY", API_KEY)
        .env("HERALD_JWT_SECRET", JWT_SECRET)
        .env("HERALD_STORE", store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output).await.expect("herald should exit at once on a bad store").unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_client_resumes_across_a_restart_on_the_same_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let mut server = Process::start(&db, &[]).await;
    let alice = token("alice", json!({"tenant": "acme"}));
    let query = format!("access_token={alice}&channel=news");

    let mut sse = Sse::open(&server.base, &query, None).await;
    sse.until("herald.connected").await;
    let seen = publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "event": "m", "data": "before"})).await;
    assert_eq!(sse.next_message().await.id, seen);
    drop(sse);

    // The gap, then a durable publish: its 200 means everything enqueued before it is committed.
    let mut expected = Vec::new();
    for (to, mine) in [
        (json!({"users": ["alice"]}), true),
        (json!({"users": ["bob"]}), false),
        (json!({"tenants": ["acme"]}), true),
        (json!({"channels": ["news"]}), true),
        (json!({"channels": ["sports"]}), false),
        (json!({"all": true}), true),
    ] {
        let data = format!("gap-{}", expected.len() + usize::from(!mine) * 100);
        let id = publish_ok(&server.base, json!({"to": to, "event": "m", "data": data})).await;
        if mine {
            expected.push((id, data));
        }
    }
    let durable =
        publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "event": "m", "data": "durable", "durable": true}))
            .await;
    expected.push((durable.clone(), "durable".into()));
    server.kill9().await;

    let server = Process::start(&db, &[]).await;
    let mut sse = Sse::open(&server.base, &query, Some(&seen)).await;
    assert_eq!(sse.status, 200);
    let connected = sse.until("herald.connected").await;
    assert_eq!(connected.id, seen, "same epoch, same position: no reset");
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let e = sse.next().await;
        assert_ne!(e.event, "herald.reset", "{e:?}");
        if !e.event.starts_with("herald.") {
            got.push((e.id, e.data));
        }
    }
    assert_eq!(got, expected);
    // The sequence continues in the same epoch after the restart.
    let live = publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "event": "m", "data": "live"})).await;
    let e = sse.next_message().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (live.as_str(), "live"));
    let (before_epoch, before_seq) = split(&durable);
    let (after_epoch, after_seq) = split(&live);
    assert_eq!(after_epoch, before_epoch);
    assert_eq!(after_seq, before_seq + 1);
}

#[tokio::test]
async fn a_durable_message_answered_200_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let mut server = Process::start(&db, &[]).await;
    // Concurrent durable publishes share commits; every one answered 200 must survive.
    let base = server.base.clone();
    let publishes = (0..20).map(|i| {
        let base = base.clone();
        tokio::spawn(async move {
            publish_ok(
                &base,
                json!({"to": {"users": ["zoe"]}, "event": "note", "data": format!("n{i}"), "durable": true}),
            )
            .await
        })
    });
    let mut ids = Vec::new();
    for p in publishes.collect::<Vec<_>>() {
        ids.push(p.await.unwrap());
    }
    let last =
        publish_ok(&base, json!({"to": {"users": ["zoe"]}, "event": "note", "data": "last", "durable": true})).await;
    server.kill9().await;

    let server = Process::start(&db, &[]).await;
    let (status, body) = api_get(&server.base, "/api/users/zoe/unread").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(21)), "{body}");
    // zoe never connected before: she gets all of them, oldest first, with their ids.
    let mut sse = Sse::open(&server.base, &format!("access_token={}", token("zoe", json!({}))), None).await;
    sse.until("herald.connected").await;
    let mut got = Vec::new();
    for _ in 0..21 {
        let e = sse.next().await;
        assert_eq!(e.event, "note", "{e:?}");
        got.push(e.id);
    }
    ids.sort_by_key(|id| split(id).1);
    ids.push(last);
    assert_eq!(got, ids);
    let (_, page) = api_get(&server.base, "/api/users/zoe/messages?state=unread&limit=1").await;
    assert_eq!(page["messages"][0]["data"], "last");
}

#[tokio::test]
async fn a_second_herald_on_a_locked_store_file_exits_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let server = Process::start(&db, &[]).await;
    publish_ok(&server.base, json!({"to": {"users": ["a"]}, "data": "x", "durable": true})).await;
    let (code, stderr) = start_expecting_failure(&db).await;
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}; stderr: {stderr}");
    assert!(stderr.contains("locked"), "the message names the lock: {stderr}");
    assert!(stderr.contains(&db.display().to_string()), "and the file: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first one is unharmed.
    let (status, body) = api_get(&server.base, "/api/users/a/unread").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(1)));
}

#[tokio::test]
async fn a_corrupt_store_file_makes_herald_exit_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let (code, stderr) = start_expecting_failure(&db).await;
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}; stderr: {stderr}");
    assert!(stderr.contains("corrupt") || stderr.contains("not a"), "a clear message: {stderr}");
    assert!(stderr.contains(&db.display().to_string()), "naming the file: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file is left as it was");
}

#[tokio::test]
async fn a_full_store_refuses_durable_publishes_with_503_and_keeps_what_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.store = herald::config::StoreKind::Sqlite;
    config.store_path = temp_db(&dir);
    // A store that fills up after a few dozen messages behaves as a full disk.
    config.store_max_bytes = Some(256 * 1024);
    let hub = TestHub::start(config).await;
    // Online while the store fills: it must see exactly what was answered 200.
    let mut online = Sse::open(&hub.base, &format!("access_token={}", token("carol", json!({}))), None).await;
    online.until("herald.connected").await;
    let payload = "x".repeat(4000);
    let mut stored = Vec::new();
    let refusal = loop {
        let (status, answer) =
            publish(&hub.base, json!({"to": {"users": ["carol"]}, "data": payload, "durable": true})).await;
        match status {
            200 => stored.push(answer["id"].as_str().unwrap().to_string()),
            _ => break (status, answer),
        }
        assert!(stored.len() < 1000, "the store never filled up");
    };
    let (status, problem) = refusal;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:store-unavailable", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("full"), "{problem}");
    assert!(!stored.is_empty(), "some messages fit before the store was full");

    // Every message answered 200 is there, in order; the refused one is not.
    let (_, listed) = api_get(&hub.base, "/api/users/carol/messages?state=all&limit=1000").await;
    let mut ids: Vec<String> =
        listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    ids.reverse();
    assert_eq!(ids, stored);
    // The refused message is not counted either.
    let (_, unread) = api_get(&hub.base, "/api/users/carol/unread").await;
    assert_eq!(unread["unread"].as_u64(), Some(stored.len() as u64), "{unread}");
    // The hub keeps serving: streams connect and non-durable messages are delivered.
    let mut sse = Sse::open(&hub.base, &format!("access_token={}", token("carol", json!({}))), None).await;
    sse.until("herald.connected").await;
    let (status, sent) =
        publish(&hub.base, json!({"to": {"users": ["carol"]}, "event": "live", "data": "still here"})).await;
    assert_eq!(status, 200, "{sent}");
    loop {
        let event = sse.next().await;
        if event.event == "live" {
            assert_eq!(event.data, "still here");
            break;
        }
    }
    // The refused publish reached nobody: the stream that was online saw the stored messages,
    // in order, and then the live one, and nothing in between.
    let mut seen = Vec::new();
    loop {
        let event = online.next_message().await;
        if event.event == "live" {
            break;
        }
        seen.push(event.id);
    }
    assert_eq!(seen, stored, "a durable message answered 503 was delivered");
    hub.shutdown().await.unwrap();
}

/// POSTs a batch with the test API key; every item must be answered with an id.
async fn publish_batch_ok(base: &str, batch: Vec<Value>) -> Vec<String> {
    let r = client().post(format!("{base}/api/publish/batch")).bearer_auth(API_KEY).json(&batch).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answers: Vec<Value> = r.json().await.unwrap();
    assert_eq!(answers.len(), batch.len());
    answers.iter().map(|a| a["id"].as_str().unwrap_or_else(|| panic!("an id: {a}")).to_string()).collect()
}

#[tokio::test]
async fn concurrent_single_and_batched_durable_publishes_survive_kill_9_with_exact_unread_counts() {
    const USERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let mut server = Process::start(&db, &[]).await;
    let base = server.base.clone();
    let mut sse = Sse::open(&base, &format!("access_token={}", token("u0", json!({}))), None).await;
    sse.until("herald.connected").await;
    // Singles and batches at once, several to the same user in one group commit: every id
    // answered 200 is kept, and each user's counter adds up all of them.
    let body =
        |user: usize, data: String| json!({"to": {"users": [format!("u{user}")]}, "data": data, "durable": true});
    let singles = (0..8).map(|task| {
        let base = base.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..12 {
                let user = (task + i) % USERS;
                ids.push((user, publish_ok(&base, body(user, format!("s{task}-{i}"))).await));
            }
            ids
        })
    });
    let batches = (0..4).map(|task| {
        let base = base.clone();
        tokio::spawn(async move {
            let users: Vec<usize> = (0..60).map(|i| (task + i) % USERS).collect();
            let batch = users.iter().enumerate().map(|(i, &u)| body(u, format!("b{task}-{i}"))).collect();
            users.into_iter().zip(publish_batch_ok(&base, batch).await).collect::<Vec<_>>()
        })
    });
    let tasks: Vec<_> = singles.chain(batches).collect();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); USERS];
    for task in tasks {
        for (user, id) in task.await.unwrap() {
            ids[user].push(id);
        }
    }
    for user_ids in &mut ids {
        user_ids.sort_by_key(|id| split(id).1);
    }
    // The online user got each of hers once, in id order, and her badge reached the total
    // (concurrent publishers' badges may arrive in either order).
    let mut got = Vec::new();
    let mut badge = 0;
    while got.len() < ids[0].len() || badge != ids[0].len() as u64 {
        let e = sse.next().await;
        match e.event.as_str() {
            "herald.unread" => {
                badge = badge.max(serde_json::from_str::<Value>(&e.data).unwrap()["unread"].as_u64().unwrap())
            }
            "message" => got.push(e.id),
            _ => {}
        }
    }
    assert_eq!(got, ids[0], "in id order, each once");
    // A few acks before the kill: the counter goes down by exactly those.
    let acked = json!({"ids": ids[1][..3]});
    let (status, _, answer) = api_post(&base, API_KEY, "/api/users/u1/ack", &acked).await;
    assert_eq!((status, answer["unread"].as_u64()), (200, Some(ids[1].len() as u64 - 3)), "{answer}");
    server.kill9().await;

    let server = Process::start(&db, &[]).await;
    for (user, user_ids) in ids.iter().enumerate() {
        let kept = if user == 1 { &user_ids[3..] } else { &user_ids[..] };
        let (status, body) = api_get(&server.base, &format!("/api/users/u{user}/unread")).await;
        assert_eq!((status, body["unread"].as_u64()), (200, Some(kept.len() as u64)), "u{user}: {body}");
        let (_, page) = api_get(&server.base, &format!("/api/users/u{user}/messages?state=unread&limit=1000")).await;
        let mut listed: Vec<String> =
            page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        listed.reverse();
        assert_eq!(listed, kept, "u{user}: every message answered 200 and not acked, oldest first");
    }
}

#[tokio::test]
async fn durable_publishes_refused_by_a_full_store_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let mut server = Process::start(&db, &[("HERALD_STORE_MAX_BYTES", "262144")]).await;
    // Two users each: a refusal may come at any of the message's rows (history, either inbox
    // row, either counter), and none of them may stay.
    let body = |i: usize| json!({"to": {"users": ["carol", "dave"]}, "event": "m", "data": "x".repeat(500 + i * 37 % 3000), "durable": true});
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        let (status, answer) = publish(&server.base, body(i)).await;
        match status {
            200 => stored.push(answer["id"].as_str().unwrap().to_string()),
            503 => refused += 1,
            _ => panic!("{status}: {answer}"),
        }
        if refused == 20 {
            break;
        }
    }
    assert_eq!(refused, 20, "the store never filled up");
    // A refusal rolls back the whole transaction, with the counts written before it.
    for user in ["carol", "dave"] {
        let (_, unread) = api_get(&server.base, &format!("/api/users/{user}/unread")).await;
        assert_eq!(unread["unread"].as_u64(), Some(stored.len() as u64), "{user} before the restart: {unread}");
    }
    server.kill9().await;

    let server = Process::start(&db, &[("HERALD_STORE_MAX_BYTES", "262144")]).await;
    for user in ["carol", "dave"] {
        let (_, unread) = api_get(&server.base, &format!("/api/users/{user}/unread")).await;
        assert_eq!(unread["unread"].as_u64(), Some(stored.len() as u64), "{user}: {unread}");
        let (_, listed) = api_get(&server.base, &format!("/api/users/{user}/messages?state=all&limit=1000")).await;
        let mut ids: Vec<String> =
            listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        ids.reverse();
        assert_eq!(ids, stored, "{user}: only what was answered 200");
    }
    // History too: a stream resuming from the first message gets (from history, and its unread
    // ones from the inbox) only what was answered 200, then a live marker.
    let query = format!("access_token={}", token("carol", json!({})));
    let mut sse = Sse::open(&server.base, &query, Some(&stored[0])).await;
    sse.until("herald.connected").await;
    let marker = publish_ok(&server.base, json!({"to": {"users": ["carol"]}, "event": "live", "data": "marker"})).await;
    let mut seen = Vec::new();
    loop {
        let e = sse.next_message().await;
        if e.id == marker {
            break;
        }
        if !seen.contains(&e.id) {
            seen.push(e.id);
        }
    }
    seen.sort_by_key(|id| split(id).1);
    assert_eq!(seen, stored, "only what was answered 200");
}

#[tokio::test]
async fn the_sequence_continues_across_restarts_after_history_aged_out_entirely() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let env = [("HERALD_HISTORY_AGE_SECS", "1")];
    let mut server = Process::start(&db, &env).await;
    for data in ["a", "b", "c"] {
        publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "data": data})).await;
    }
    // A durable publish answers once everything before it is on disk.
    let last = publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "data": "d", "durable": true})).await;
    let published = tokio::time::Instant::now();
    server.kill9().await;
    // The history must be older than its age limit when the next start trims it: this waits
    // for the clock, not for the server.
    tokio::time::sleep_until(published + std::time::Duration::from_millis(1500)).await;
    // This start trims every message; the one after it must still continue the sequence.
    let mut server = Process::start(&db, &env).await;
    server.kill9().await;
    let server = Process::start(&db, &env).await;
    let next = publish_ok(&server.base, json!({"to": {"users": ["alice"]}, "data": "e"})).await;
    let ((epoch, seq), (next_epoch, next_seq)) = (split(&last), split(&next));
    assert_eq!((next_epoch, next_seq), (epoch, seq + 1), "{last} then {next}");
}
