mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_publish_to_a_user_reaches_their_stream() {
    let hub = TestHub::start(config()).await;
    let mut sse = Sse::open(&hub.base, &format!("access_token={}", token("42", json!({}))), None).await;
    assert_eq!(sse.status, 200);
    let connected = sse.until("herald.connected").await;
    assert!(connected.data.contains("connection_id"));
    let (status, body) = publish(&hub.base, json!({"to": {"users": ["42"]}, "event": "ALERT", "data": {"n": 1}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 1);
    let event = sse.next_message().await;
    assert_eq!((event.event.as_str(), event.data.as_str(), event.id.as_str()), ("ALERT", "{\"n\":1}", body["id"].as_str().unwrap()));
    hub.shutdown().await.unwrap();
}
