//! The servers under test and how each one is spoken to, so that every scenario runs unchanged
//! against Herald and Nchan.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Herald,
    Nchan,
    /// Herald's Mercure endpoint (see `mercure`).
    Mercure,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Herald => "herald",
            Kind::Nchan => "nchan",
            Kind::Mercure => "mercure",
        }
    }
}

/// Where subscribers listen: everybody on the one broadcast channel, or each on its own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Channel,
    User,
}

/// The broadcast channel of the channel scenarios.
pub const CHANNEL: &str = "bench";

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Server kind.
    #[arg(long, value_enum, default_value = "herald")]
    pub target: Kind,
    /// Server address; must be on loopback (127.0.0.0/8 or ::1).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = loopback_addr)]
    pub addr: SocketAddr,
    /// Subscriber addresses, comma-separated (the nodes of a cluster): subscriber i connects to
    /// the (i mod n)-th. The publisher stays on --addr, as do subscribers when this is not given.
    #[arg(long, value_delimiter = ',', value_parser = loopback_addr)]
    pub sub_addrs: Vec<SocketAddr>,
    /// Herald API key for /api/publish.
    #[arg(long, env = "HERALD_API_KEY", default_value = "bench-api-key-0123456789")]
    pub api_key: String,
    /// Herald HS256 secret that subscriber tokens are signed with.
    #[arg(long, env = "HERALD_JWT_SECRET", default_value = "bench-jwt-secret-0123456789abcdef0123456789")]
    pub jwt_secret: String,
}

fn loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e| format!("{e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("the bench only targets loopback addresses".into())
    }
}

impl Target {
    /// Where subscriber `index` connects.
    pub fn subscriber_addr(&self, index: u32) -> SocketAddr {
        match self.sub_addrs.len() {
            0 => self.addr,
            n => self.sub_addrs[index as usize % n],
        }
    }

    /// Request path for subscriber `index`, its token included (so minted before timing starts).
    pub fn subscribe_path(&self, mode: Mode, index: u32) -> String {
        match (self.target, mode) {
            (Kind::Herald, Mode::Channel) => {
                let token = crate::jwt::mint(&self.jwt_secret, index, &[CHANNEL]);
                format!("/events?channel={CHANNEL}&access_token={token}")
            }
            (Kind::Herald, Mode::User) => {
                let token = crate::jwt::mint(&self.jwt_secret, index, &[]);
                format!("/events?access_token={token}")
            }
            (Kind::Nchan, Mode::Channel) => format!("/sub/{CHANNEL}"),
            (Kind::Nchan, Mode::User) => format!("/sub/u{index}"),
            (Kind::Mercure, mode) => crate::mercure::subscribe_path(mode, index),
        }
    }

    /// The request of a subscriber connecting to `server`.
    pub fn subscribe_request(&self, server: SocketAddr, path: &str, last_event_id: &str) -> Vec<u8> {
        let resume =
            if last_event_id.is_empty() { String::new() } else { format!("Last-Event-ID: {last_event_id}\r\n") };
        format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\n{resume}\r\n").into_bytes()
    }

    pub fn supports_durable(&self) -> bool {
        self.target == Kind::Herald
    }

    /// Herald's JSON body publishing `data` to `to`.
    fn herald_publish(to: To, data: &str, durable: bool) -> serde_json::Value {
        let to = match to {
            To::Channel => serde_json::json!({ "channels": [CHANNEL] }),
            To::User(i) => serde_json::json!({ "users": [format!("u{i}")] }),
        };
        let mut body = serde_json::json!({ "to": to, "event": "b", "data": data });
        if durable {
            body["durable"] = true.into();
        }
        body
    }

    /// A keep-alive POST of several messages to Herald's `/api/publish/batch`.
    pub fn publish_batch_request(&self, messages: &[(To, String)], durable: bool) -> Vec<u8> {
        let body: Vec<_> = messages.iter().map(|(to, data)| Self::herald_publish(*to, data, durable)).collect();
        let body = serde_json::Value::from(body).to_string();
        format!(
            "POST /api/publish/batch HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            self.api_key,
            body.len()
        )
        .into_bytes()
    }

    /// A keep-alive POST publishing bench message `data` to `to`.
    pub fn publish_request(&self, to: To, data: &str, durable: bool) -> Vec<u8> {
        let (path, auth, body) = match self.target {
            Kind::Mercure => return crate::mercure::publish_request(self, to, data),
            Kind::Herald => {
                let auth = format!("Authorization: Bearer {}\r\n", self.api_key);
                ("/api/publish".to_string(), auth, Self::herald_publish(to, data, durable).to_string())
            }
            Kind::Nchan => {
                let path = match to {
                    To::Channel => format!("/pub/{CHANNEL}"),
                    To::User(i) => format!("/pub/u{i}"),
                };
                (path, String::new(), data.to_string())
            }
        };
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .into_bytes()
    }
}

/// Addressee of one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Channel,
    User(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind) -> Target {
        Target {
            target: kind,
            addr: "127.0.0.1:9".parse().unwrap(),
            sub_addrs: Vec::new(),
            api_key: "k".into(),
            jwt_secret: "s".into(),
        }
    }

    #[test]
    fn herald_publish_carries_data_as_a_json_string() {
        let req = target(Kind::Herald).publish_request(To::User(17), r#"{"t":1,"n":2}"#, true);
        let req = String::from_utf8(req).unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /api/publish HTTP/1.1\r\n"));
        assert!(head.contains("Authorization: Bearer k\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["to"]["users"][0], "u17");
        assert_eq!(v["data"], r#"{"t":1,"n":2}"#);
        assert_eq!(v["durable"], true);
    }

    #[test]
    fn nchan_publishes_raw_data_per_channel() {
        let req = String::from_utf8(target(Kind::Nchan).publish_request(To::User(3), "x", false));
        assert!(req.unwrap().starts_with("POST /pub/u3 HTTP/1.1\r\n"));
        assert_eq!(target(Kind::Nchan).subscribe_path(Mode::Channel, 5), "/sub/bench");
    }

    #[test]
    fn resume_header_only_when_an_id_is_known() {
        let t = target(Kind::Nchan);
        let fresh = String::from_utf8(t.subscribe_request(t.addr, "/sub/x", "")).unwrap();
        assert!(!fresh.contains("Last-Event-ID"));
        let again = String::from_utf8(t.subscribe_request(t.addr, "/sub/x", "q-4")).unwrap();
        assert!(again.contains("Last-Event-ID: q-4\r\n"));
    }

    #[test]
    fn subscribers_spread_over_sub_addrs() {
        let mut t = target(Kind::Herald);
        assert_eq!(t.subscriber_addr(5), t.addr);
        t.sub_addrs = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"].iter().map(|a| a.parse().unwrap()).collect();
        let ports: Vec<u16> = (0..7).map(|i| t.subscriber_addr(i).port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1]);
        let req = String::from_utf8(t.subscribe_request(t.subscriber_addr(1), "/events", "")).unwrap();
        assert!(req.contains("Host: 127.0.0.1:2\r\n"), "{req}");
    }

    #[test]
    fn sub_addrs_parse_as_a_loopback_list() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            target: Target,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["x", "--sub-addrs", "127.0.0.1:1,127.0.0.2:2"]).unwrap();
        assert_eq!(cli.target.sub_addrs.len(), 2);
        assert!(<Cli as clap::Parser>::try_parse_from(["x", "--sub-addrs", "127.0.0.1:1,10.0.0.1:2"]).is_err());
    }

    #[test]
    fn only_loopback() {
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert!(loopback_addr("10.0.0.1:80").is_err());
    }
}
