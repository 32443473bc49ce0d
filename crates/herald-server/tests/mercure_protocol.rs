//! The Mercure protocol at `/.well-known/mercure`, against the real `herald` binary configured
//! by its `HERALD_MERCURE_*` variables, written from the specification (dunglas/mercure
//! `spec/mercure.md`) and the 0.x wire that Symfony and API Platform speak.

mod common;

use common::*;
use serde_json::{json, Value};

const PUBLISHER_KEY: &str = "mercure-publisher-key-0123456789";
const SUBSCRIBER_KEY: &str = "mercure-subscriber-key-0123456789";
const DETAIL: &str = "https://mercure.rocks/authorization-detail";

/// A herald process with Mercure on, anonymous subscribers allowed and subscriptions on.
async fn hub(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Process {
    let mut env = vec![
        ("HERALD_MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY),
        ("HERALD_MERCURE_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY),
        ("HERALD_MERCURE_ANONYMOUS", "true"),
        ("HERALD_MERCURE_SUBSCRIPTIONS", "true"),
        ("HERALD_HEARTBEAT_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    Process::start(&temp_db(dir), &env).await
}

/// A publisher token (0.x shape) allowed to publish anywhere.
fn publisher() -> String {
    token_with(PUBLISHER_KEY, json!({"mercure": {"publish": ["*"]}}))
}

fn subscriber(claims: Value) -> String {
    token_with(SUBSCRIBER_KEY, claims)
}

/// POSTs a form to the hub; returns (status, `WWW-Authenticate`, body).
async fn post(base: &str, token: Option<&str>, form: &[(&str, &str)]) -> (u16, String, String) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut request = client()
        .post(format!("{base}/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, challenge, r.text().await.unwrap())
}

/// Publishes with the all-powerful publisher token; requires 200 and returns the id.
async fn publish_ok(base: &str, form: &[(&str, &str)]) -> String {
    let (status, _, body) = post(base, Some(&publisher()), form).await;
    assert_eq!(status, 200, "publish refused: {body}");
    body
}

/// Opens `GET /.well-known/mercure?{query}` with an optional bearer token.
async fn open(base: &str, query: &str, bearer: Option<&str>) -> Sse {
    let mut request = client().get(format!("{base}/.well-known/mercure?{query}"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    Sse::from_request(request).await
}

/// The next event that is an update (not a `herald.*` control event).
async fn update(sse: &mut Sse) -> eventsource_stream::Event {
    sse.next_message().await
}

fn q(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[tokio::test]
async fn publish_and_subscribe_carry_every_field_and_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let mut sse = open(&h.base, &q(&[("topic", "https://example.com/books/1")]), None).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["last-event-id"], "earliest", "an empty history answers `earliest`");
    assert_eq!(sse.headers["mercure-last-event-id"], "earliest");

    let r = client()
        .post(format!("{}/.well-known/mercure", h.base))
        .bearer_auth(publisher())
        .form(&[
            ("topic", "https://example.com/books/1"),
            ("data", "line 1\nline 2"),
            ("type", "book"),
            ("retry", "1500"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let id = r.text().await.unwrap();
    assert!(!id.is_empty());
    let event = update(&mut sse).await;
    assert_eq!((event.id.as_str(), event.event.as_str(), event.data.as_str()), (id.as_str(), "book", "line 1\nline 2"));
    assert_eq!(event.retry, Some(std::time::Duration::from_millis(1500)));

    // A custom id is the SSE id, and the publish answers it.
    let custom =
        publish_ok(&h.base, &[("topic", "https://example.com/books/1"), ("id", "urn:uuid:1"), ("data", "x")]).await;
    assert_eq!(custom, "urn:uuid:1");
    let event = update(&mut sse).await;
    assert_eq!((event.id.as_str(), event.event.as_str()), ("urn:uuid:1", "message"));

    // `GET /` answers a page.
    let home = client().get(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

/// The URI template table (0.x `topic=`): which topics each selector receives. The stream is
/// known to be caught up when a sentinel that every row matches arrives.
#[tokio::test]
async fn uri_templates_and_url_patterns_select_topics() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let topics = [
        "https://example.com/books/1",
        "https://example.com/books/1/reviews",
        "https://example.com/movies/1",
        "https://example.com/users/42/books/1",
        "https://example.com/s?q=x&lang=fr",
        "urn:isbn:1234",
        "/relative/1",
    ];
    let sentinel = "https://example.com/sentinel";
    // (parameter, selector, topics received, by index)
    let table: &[(&str, &str, &[usize])] = &[
        ("topic", "https://example.com/books/{id}", &[0]),
        ("topic", "https://example.com/{+path}", &[0, 1, 2, 3, 4]),
        ("topic", "https://example.com/books/{id}/reviews", &[1]),
        ("topic", "https://example.com/s{?q,lang}", &[4]),
        ("topic", "urn:isbn:1234", &[5]),
        ("topic", "*", &[0, 1, 2, 3, 4, 5, 6]),
        ("match", "https://example.com/books/1", &[0]),
        ("match_exact", "urn:isbn:1234", &[5]),
        ("match", "https://example.com/books/{id}", &[]),
        ("match_urlpattern", "https://example.com/books/:id", &[0]),
        ("match_urlpattern", "https://example.com/books/*", &[0, 1]),
        ("match_urlpattern", "https://example.com/:kind/1", &[0, 2]),
        ("match_urlpattern", "https://example.com/users/:uid/*", &[3]),
        ("match_urlpattern", "https://example.com/books/:id(\\d+)", &[0]),
        ("match_urlpattern", "https://EXAMPLE.com/movies/:id", &[2]),
        ("match_urlpattern", "/relative/:n", &[6]),
        ("match_urlpattern", "*", &[0, 1, 2, 3, 4, 5, 6]),
    ];
    let mut streams = Vec::new();
    for (param, selector, _) in table {
        let sse = open(&h.base, &q(&[(param, selector), ("match", sentinel)]), None).await;
        assert_eq!(sse.status, 200, "{param}={selector}");
        streams.push(sse);
    }
    for topic in topics {
        publish_ok(&h.base, &[("topic", topic), ("data", topic)]).await;
    }
    publish_ok(&h.base, &[("topic", sentinel), ("data", sentinel)]).await;
    for ((param, selector, expected), sse) in table.iter().zip(&mut streams) {
        let mut got = Vec::new();
        loop {
            let event = update(sse).await;
            if event.data == sentinel {
                break;
            }
            got.push(topics.iter().position(|t| *t == event.data).unwrap());
        }
        assert_eq!(got, *expected, "{param}={selector}");
    }
}

#[tokio::test]
async fn malformed_subscriptions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    for query in [
        q(&[("match_regex", "x")]),
        q(&[("matches", "x")]),
        q(&[("MATCH", "x")]),
        q(&[("match", "a"), ("Match_Exact", "b")]),
        q(&[("match_urlpattern", "https://example.com/(unclosed")]),
        q(&[("topic", "https://example.com/{unclosed")]),
        q(&[("match", "bad\u{7}")]),
        q(&[("match", "a\u{200B}b")]),
        String::new(),
    ] {
        let r = client().get(format!("{}/.well-known/mercure?{query}", h.base)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn publishing_needs_a_token_covering_every_topic() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let mut sse = open(&h.base, &q(&[("match", "*")]), None).await;
    let form = [("topic", "https://example.com/a"), ("topic", "https://example.com/b"), ("data", "x")];

    let (status, challenge, _) = post(&h.base, None, &form).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    let (status, challenge, _) = post(&h.base, Some("not.a.token"), &form).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer error=\"invalid_token\""));
    let wrong_key = token_with(SUBSCRIBER_KEY, json!({"mercure": {"publish": ["*"]}}));
    assert_eq!(post(&h.base, Some(&wrong_key), &form).await.0, 401, "the subscriber key does not publish");
    let expired = token_with(PUBLISHER_KEY, json!({"mercure": {"publish": ["*"]}, "exp": now_secs() - 60}));
    assert_eq!(post(&h.base, Some(&expired), &form).await.0, 401);

    // Covering one topic of two is not enough, in either claim shape.
    let one = token_with(PUBLISHER_KEY, json!({"mercure": {"publish": ["https://example.com/a"]}}));
    let (status, challenge, _) = post(&h.base, Some(&one), &form).await;
    assert_eq!((status, challenge.as_str()), (403, "Bearer error=\"insufficient_scope\""));
    let one = token_with(
        PUBLISHER_KEY,
        json!({"authorization_details": [{"type": DETAIL, "actions": ["publish"], "topics": [{"match": "https://example.com/a"}]}]}),
    );
    assert_eq!(post(&h.base, Some(&one), &form).await.0, 403);
    // A newer-shape token with `typ: at+jwt`, `aud` and `iss` covering both topics passes.
    let header = jsonwebtoken::Header { typ: Some("at+jwt".into()), ..Default::default() };
    let both = jsonwebtoken::encode(
        &header,
        &json!({"iss": "https://app.example", "aud": "https://hub.example/.well-known/mercure", "exp": now_secs() + 60,
            "authorization_details": [{"type": DETAIL, "actions": ["publish"],
                "topics": [{"match": "https://example.com/:x", "match_type": "urlpattern"}]}]}),
        &jsonwebtoken::EncodingKey::from_secret(PUBLISHER_KEY.as_bytes()),
    )
    .unwrap();
    let (status, _, id) = post(&h.base, Some(&both), &form).await;
    assert_eq!(status, 200, "{id}");
    // Nothing refused above reached the subscriber: the first update it sees is this one.
    assert_eq!(update(&mut sse).await.id, id);

    let publisher = publisher();
    for bad in [
        vec![("data", "no topic")],
        vec![("topic", "*")],
        vec![("topic", "/.well-known/mercure/subscriptions/exact/a/b")],
        vec![("topic", "https://hub.example/.well-known/%6Dercure/x")],
        vec![("topic", "https://example.com/a"), ("id", "#frag")],
        vec![("topic", "https://example.com/a"), ("id", "earliest")],
        vec![("topic", "https://example.com/a"), ("type", "mercure")],
        vec![("topic", "https://example.com/a"), ("type", "a\nb")],
        vec![("topic", "https://example.com/a"), ("retry", "1.5")],
        vec![("topic", "https://example.com/a\u{1}")],
    ] {
        let (status, _, body) = post(&h.base, Some(&publisher), &bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let (status, _, _) = post(&h.base, Some(&publisher), &[("topic", "https://example.com/a"), ("unknown", "x")]).await;
    assert_eq!(status, 200, "unknown fields are ignored");
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_allowed_to_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let books = q(&[("match_urlpattern", "https://example.com/books/:id"), ("match", "https://example.com/end")]);
    // 0.x claims: subscribe to book 1 only.
    let old = subscriber(json!({"mercure": {"subscribe": ["https://example.com/books/1", "https://example.com/end"]}}));
    let mut old_shape = open(&h.base, &books, Some(&old)).await;
    // RFC 9396 claims: the user's own namespace, matched through an alternate topic.
    let new = subscriber(json!({"sub": "u42", "authorization_details": [{"type": DETAIL, "actions": ["subscribe"],
        "topics": [{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}, {"match": "https://example.com/end"}]}]}));
    let mut new_shape = open(&h.base, &books, Some(&new)).await;
    let mut anonymous = open(&h.base, &books, None).await;
    // A token with no grants at all is like anonymous for private updates.
    let mut no_grants = open(&h.base, &books, Some(&subscriber(json!({"sub": "x"})))).await;
    for sse in [&old_shape, &new_shape, &anonymous, &no_grants] {
        assert_eq!(sse.status, 200);
    }

    publish_ok(&h.base, &[("topic", "https://example.com/books/1"), ("private", "on"), ("data", "p1")]).await;
    publish_ok(&h.base, &[("topic", "https://example.com/books/2"), ("private", ""), ("data", "p2")]).await;
    let alt = [
        ("topic", "https://example.com/books/3"),
        ("topic", "https://example.com/users/42/books/3"),
        ("private", "on"),
        ("data", "p3"),
    ];
    publish_ok(&h.base, &alt).await;
    publish_ok(&h.base, &[("topic", "https://example.com/books/4"), ("data", "public")]).await;
    publish_ok(&h.base, &[("topic", "https://example.com/end"), ("private", "on"), ("data", "end")]).await;
    publish_ok(&h.base, &[("topic", "https://example.com/end"), ("data", "end-public")]).await;

    async fn received(sse: &mut Sse) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let data = update(sse).await.data;
            if data == "end-public" {
                return got;
            }
            got.push(data);
        }
    }
    assert_eq!(received(&mut old_shape).await, ["p1", "public", "end"]);
    assert_eq!(received(&mut new_shape).await, ["p3", "public", "end"]);
    assert_eq!(received(&mut anonymous).await, ["public"]);
    assert_eq!(received(&mut no_grants).await, ["public"]);

    // Replay applies the same rules.
    let mut replayed = open(&h.base, &format!("{books}&lastEventID=earliest"), Some(&old)).await;
    assert_eq!(received(&mut replayed).await, ["p1", "public", "end"]);
}

#[tokio::test]
async fn tokens_come_from_the_header_the_cookies_or_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[("HERALD_MERCURE_ANONYMOUS", "false")]).await;
    let topic = q(&[("topic", "https://example.com/t")]);
    let token = subscriber(json!({"mercure": {"subscribe": ["https://example.com/t"]}}));

    let r = client().get(format!("{}/.well-known/mercure?{topic}", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 401, "anonymous subscribers are off");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let bad = client()
        .get(format!("{}/.well-known/mercure?{topic}", h.base))
        .header("cookie", "mercureAuthorization=garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");

    let mut streams = Vec::new();
    for cookie in ["mercureAuthorization", "__Secure-mercure_access_token"] {
        let request = client()
            .get(format!("{}/.well-known/mercure?{topic}", h.base))
            .header("cookie", format!("other=1; {cookie}={token}"));
        streams.push(Sse::from_request(request).await);
    }
    streams.push(open(&h.base, &format!("{topic}&authorization={token}"), None).await);
    // The header wins over a broken cookie.
    let request = client()
        .get(format!("{}/.well-known/mercure?{topic}", h.base))
        .bearer_auth(&token)
        .header("cookie", "mercureAuthorization=garbage");
    streams.push(Sse::from_request(request).await);
    publish_ok(&h.base, &[("topic", "https://example.com/t"), ("private", "on"), ("data", "secret")]).await;
    for sse in &mut streams {
        assert_eq!(sse.status, 200);
        assert_eq!(update(sse).await.data, "secret");
    }

    // A publisher's cookie counts only from a publish origin.
    let cookie_publish = |origin: &'static str| {
        client()
            .post(format!("{}/.well-known/mercure", h.base))
            .header("cookie", format!("mercureAuthorization={}", publisher()))
            .header("origin", origin)
            .form(&[("topic", "https://example.com/t")])
            .send()
    };
    assert_eq!(cookie_publish("https://evil.example").await.unwrap().status(), 403);
}

#[tokio::test]
async fn resume_follows_custom_ids_earliest_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    // Subscription events off: they would be the last events in history.
    let h = hub(&dir, &[("HERALD_MERCURE_SUBSCRIPTIONS", "false")]).await;
    let topic = q(&[("topic", "https://example.com/r")]);
    for id in ["urn:a", "urn:b"] {
        publish_ok(&h.base, &[("topic", "https://example.com/r"), ("id", id), ("data", id)]).await;
    }
    let generated = publish_ok(&h.base, &[("topic", "https://example.com/r"), ("data", "generated")]).await;
    publish_ok(&h.base, &[("topic", "https://example.com/other"), ("data", "other")]).await;
    publish_ok(&h.base, &[("topic", "https://example.com/r"), ("id", "urn:c"), ("data", "urn:c")]).await;

    // The header, then each query spelling; the header wins over the query.
    let header = Sse::from_request(
        client()
            .get(format!("{}/.well-known/mercure?{topic}&last_event_id=urn:b", h.base))
            .header("last-event-id", "urn:a"),
    )
    .await;
    let newer = open(&h.base, &format!("{topic}&last_event_id=urn:a"), None).await;
    let older = open(&h.base, &format!("{topic}&lastEventID=urn:a"), None).await;
    for mut sse in [header, newer, older] {
        assert_eq!(sse.headers["last-event-id"], "urn:a");
        assert_eq!(sse.headers["mercure-last-event-id"], "urn:a");
        let ids: Vec<String> = [update(&mut sse).await, update(&mut sse).await, update(&mut sse).await]
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["urn:b", generated.as_str(), "urn:c"]);
    }
    // A generated id resumes too.
    let mut sse = open(&h.base, &format!("{topic}&lastEventID={generated}"), None).await;
    assert_eq!(sse.headers["last-event-id"], generated.as_str());
    assert_eq!(update(&mut sse).await.id, "urn:c");
    // `earliest`: everything kept.
    let mut sse = open(&h.base, &format!("{topic}&lastEventID=earliest"), None).await;
    assert_eq!(sse.headers["mercure-last-event-id"], "earliest");
    assert_eq!(update(&mut sse).await.id, "urn:a");
    // An unknown id: `earliest` in the header, and a `herald.reset` event, never a silent gap.
    let mut sse = open(&h.base, &format!("{topic}&last_event_id=urn:never"), None).await;
    assert_eq!(sse.headers["mercure-last-event-id"], "earliest");
    let reset = sse.next().await;
    assert_eq!(reset.event, "herald.reset");
    assert!(!reset.id.is_empty(), "every event carries an id");
    // No id asked: the headers name the last event.
    let sse = open(&h.base, &topic, None).await;
    assert_eq!(sse.headers["last-event-id"], "urn:c");
}

#[tokio::test]
async fn subscription_events_and_the_subscriptions_api() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let watcher_token = subscriber(json!({"authorization_details": [{"type": DETAIL, "actions": ["subscribe"],
        "topics": [{"match": "/.well-known/mercure/subscriptions/*", "match_type": "urlpattern"},
                   {"match": "/.well-known/mercure/subscriptions"}]}]}));
    let mut watcher =
        open(&h.base, &q(&[("match_urlpattern", "/.well-known/mercure/subscriptions/*")]), Some(&watcher_token)).await;
    assert_eq!(watcher.status, 200);

    let member = subscriber(
        json!({"sub": "alice", "authorization_details": [{"type": DETAIL, "actions": ["subscribe"],
        "topics": [{"match": "https://example.com/:selector", "match_type": "urlpattern"}], "payload": {"foo": "bar"}}]}),
    );
    let alice = open(&h.base, &q(&[("match_urlpattern", "https://example.com/:selector")]), Some(&member)).await;
    // The watcher's own subscription is announced first.
    let own: Value = serde_json::from_str(&watcher.until("mercure").await.data).unwrap();
    assert_eq!(own["match"], "/.well-known/mercure/subscriptions/*");
    let event = watcher.until("mercure").await;
    let doc: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(doc["type"], "subscription");
    assert_eq!(doc["match_type"], "urlpattern");
    assert_eq!(doc["match"], "https://example.com/:selector");
    assert_eq!(doc["active"], true);
    assert_eq!(doc["payload"], json!({"foo": "bar"}));
    let subscriber_id = doc["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber_id.starts_with("urn:uuid:"));
    let expected_id = format!(
        "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector/{}",
        subscriber_id.replace(':', "%3A")
    );
    assert_eq!(doc["id"], expected_id.as_str());

    // The collection, the per-selector collection and the single subscription.
    let get = |path: String, token: Option<String>| {
        let mut request = client().get(format!("{}{path}", h.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let r = get("/.well-known/mercure/subscriptions".into(), Some(watcher_token.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers()["link"].to_str().unwrap().contains("rel=\"mercure\""));
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["type"], "subscriptions");
    assert_eq!(all["id"], "/.well-known/mercure/subscriptions");
    let listed: Vec<&str> =
        all["subscriptions"].as_array().unwrap().iter().map(|s| s["match"].as_str().unwrap()).collect();
    assert!(listed.contains(&"https://example.com/:selector"), "{all}");
    let one = get(expected_id.clone(), Some(watcher_token.clone())).await.unwrap();
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(one, doc);
    let per = get(
        "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector".into(),
        Some(watcher_token.clone()),
    )
    .await
    .unwrap();
    let per: Value = per.json().await.unwrap();
    assert_eq!(per["subscriptions"].as_array().unwrap().len(), 1, "{per}");
    assert_eq!(get("/.well-known/mercure/subscriptions".into(), None).await.unwrap().status(), 401);
    assert_eq!(get("/.well-known/mercure/subscriptions".into(), Some(member.clone())).await.unwrap().status(), 403);
    let gone = format!("/.well-known/mercure/subscriptions/exact/nothing/{}", subscriber_id.replace(':', "%3A"));
    assert_eq!(get(gone, Some(watcher_token.clone())).await.unwrap().status(), 404);

    // A 0.x `topic=` subscription is described in the 0.x JSON-LD shape.
    let old_token = subscriber(json!({"mercure": {"subscribe": ["*"]}}));
    let _bob = open(&h.base, &q(&[("topic", "https://example.com/books/{id}")]), Some(&old_token)).await;
    let event = watcher.until("mercure").await;
    let legacy: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(legacy["@context"], "https://mercure.rocks/");
    assert_eq!(legacy["type"], "Subscription");
    assert_eq!(legacy["topic"], "https://example.com/books/{id}");
    let path = legacy["id"].as_str().unwrap().to_owned();
    let r = get(path, Some(old_token.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/ld+json");

    // Alice leaves: an inactive event.
    drop(alice);
    loop {
        let event = watcher.until("mercure").await;
        let doc: Value = serde_json::from_str(&event.data).unwrap();
        if doc["subscriber"] == subscriber_id.as_str() {
            assert_eq!(doc["active"], false);
            break;
        }
    }
}

#[tokio::test]
async fn mercure_subscribers_are_connections_of_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let alice = subscriber(json!({"sub": "alice", "mercure": {"subscribe": ["*"]}}));
    let mut mercure = open(&h.base, &q(&[("topic", "orders")]), Some(&alice)).await;
    let mut anonymous = open(&h.base, &q(&[("topic", "orders")]), None).await;
    let (mut native, _) =
        Sse::connect(&h.base, &format!("channel=orders&access_token={}", token("bob", json!({})))).await;

    // Native publish → Mercure subscriber; Mercure publish → native subscriber; one history.
    let (status, body) = publish(&h.base, json!({"to": {"channels": ["orders"]}, "data": "native"})).await;
    assert_eq!(status, 200);
    let event = update(&mut mercure).await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (body["id"].as_str().unwrap(), "native"));
    assert_eq!(native.next_message().await.data, "native");
    let id = publish_ok(&h.base, &[("topic", "orders"), ("data", "mercure")]).await;
    // A native channel is joined only with a token allowing it: an anonymous Mercure subscriber
    // never reads it, and gets the public Mercure update first.
    assert_eq!(update(&mut anonymous).await.data, "mercure");
    let event = native.next_message().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (id.as_str(), "mercure"));
    assert_eq!(update(&mut mercure).await.data, "mercure");
    // Messages to users and broadcasts are not Mercure updates.
    publish(&h.base, json!({"to": {"all": true}, "data": "all"})).await;
    publish_ok(&h.base, &[("topic", "orders"), ("data", "after")]).await;
    assert_eq!(update(&mut mercure).await.data, "after");

    // Presence lists the Mercure subscriber with its user, and a kick closes it.
    let (status, users) = api_get(&h.base, "/api/users").await;
    assert_eq!(status, 200);
    assert!(users.to_string().contains("alice"), "{users}");
    let r =
        client().delete(format!("{}/api/users/alice/connections", h.base)).bearer_auth(API_KEY).send().await.unwrap();
    assert!(r.status().is_success());
    mercure.ended().await;
}

#[tokio::test]
async fn a_stream_closes_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(&dir, &[]).await;
    let short = subscriber(json!({"exp": now_secs() + 2, "mercure": {"subscribe": ["*"]}}));
    let mut sse = open(&h.base, &q(&[("topic", "x")]), Some(&short)).await;
    assert_eq!(sse.status, 200);
    sse.ended().await;
}

#[tokio::test]
async fn cors_follows_the_mercure_origins_and_cookies_publish_only_from_publish_origins() {
    let dir = tempfile::tempdir().unwrap();
    let h = hub(
        &dir,
        &[
            ("HERALD_MERCURE_CORS_ORIGINS", "https://app.example"),
            ("HERALD_MERCURE_PUBLISH_ORIGINS", "https://admin.example"),
        ],
    )
    .await;
    let stream = |origin: &'static str| {
        client().get(format!("{}/.well-known/mercure?topic=x", h.base)).header("origin", origin).send()
    };
    let allowed = stream("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    assert!(allowed.headers()["access-control-expose-headers"].to_str().unwrap().contains("mercure-last-event-id"));
    let other = stream("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = client()
        .request(reqwest::Method::OPTIONS, format!("{}/.well-known/mercure", h.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example");

    let mut sse = open(&h.base, &q(&[("topic", "https://example.com/t")]), None).await;
    let cookie_publish = |origin: &'static str, data: &'static str| {
        client()
            .post(format!("{}/.well-known/mercure", h.base))
            .header("cookie", format!("mercureAuthorization={}", publisher()))
            .header("origin", origin)
            .form(&[("topic", "https://example.com/t"), ("data", data)])
            .send()
    };
    assert_eq!(cookie_publish("https://app.example", "refused").await.unwrap().status(), 403);
    assert_eq!(cookie_publish("https://admin.example", "allowed").await.unwrap().status(), 200);
    assert_eq!(update(&mut sse).await.data, "allowed");
}
