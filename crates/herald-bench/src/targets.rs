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
    #[command(flatten)]
    pub spread: Spread,
}

/// How channel-mode subscribers spread over channels (Herald's cost curves); the defaults put
/// everybody on the one broadcast channel.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Spread {
    /// Subscriber i joins group channel `bench<i mod N>` instead of `bench` (0: not spread).
    #[arg(long, default_value_t = 0)]
    pub groups: u32,
    /// Channels `x1..xN` every subscriber joins besides its own, never published to.
    #[arg(long, default_value_t = 0)]
    pub extra_channels: u32,
}

/// The channel of group `g`, published to as [`To::Group`].
pub fn group_channel(g: u32) -> String {
    format!("{CHANNEL}{g}")
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

    /// The channel subscriber `index` listens on in channel mode.
    fn channel_of(&self, index: u32) -> String {
        match self.spread.groups {
            0 => CHANNEL.to_string(),
            n => group_channel(index % n),
        }
    }

    /// Request path for subscriber `index`, its token included (so minted before timing starts).
    pub fn subscribe_path(&self, mode: Mode, index: u32) -> String {
        match (self.target, mode) {
            (Kind::Herald, Mode::Channel) => {
                let mut channels = vec![self.channel_of(index)];
                channels.extend((1..=self.spread.extra_channels).map(|k| format!("x{k}")));
                let names: Vec<&str> = channels.iter().map(String::as_str).collect();
                let token = crate::jwt::mint(&self.jwt_secret, index, &names);
                let query: String = channels.iter().map(|c| format!("channel={c}&")).collect();
                format!("/events?{query}access_token={token}")
            }
            (Kind::Herald, Mode::User) => {
                let token = crate::jwt::mint(&self.jwt_secret, index, &[]);
                format!("/events?access_token={token}")
            }
            (Kind::Nchan, Mode::Channel) => format!("/sub/{}", self.channel_of(index)),
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
            To::Group(g) => serde_json::json!({ "channels": [group_channel(g)] }),
            To::User(i) => serde_json::json!({ "users": [format!("u{i}")] }),
            To::Users(first, n) => {
                serde_json::json!({ "users": (first..first + n).map(|i| format!("u{i}")).collect::<Vec<_>>() })
            }
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

    /// A keep-alive request to Herald's API with the API key: `GET` when `body` is empty.
    pub fn api_request(&self, method: &str, path: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
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
                    To::Group(g) => format!("/pub/{}", group_channel(g)),
                    To::User(i) | To::Users(i, _) => format!("/pub/u{i}"),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum To {
    Channel,
    /// Group channel `bench<g>` (see [`Spread::groups`]).
    Group(u32),
    User(u32),
    /// Users `u<first>..u<first + n>` in one message (Herald only: Nchan gets the first).
    Users(u32, u32),
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
            spread: Spread::default(),
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
    fn spread_subscribers_join_their_group_and_the_extra_channels() {
        let mut t = target(Kind::Herald);
        assert!(t.subscribe_path(Mode::Channel, 7).starts_with("/events?channel=bench&access_token="));
        t.spread = Spread { groups: 5, extra_channels: 2 };
        let path = t.subscribe_path(Mode::Channel, 7);
        assert!(path.starts_with("/events?channel=bench2&channel=x1&channel=x2&access_token="), "{path}");
        let req = String::from_utf8(t.publish_request(To::Group(2), "d", false)).unwrap();
        assert!(req.ends_with(r#"{"data":"d","event":"b","to":{"channels":["bench2"]}}"#), "{req}");
        let req = String::from_utf8(t.publish_request(To::Users(3, 2), "d", true)).unwrap();
        assert!(req.contains(r#""users":["u3","u4"]"#), "{req}");
    }

    #[test]
    fn only_loopback() {
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert!(loopback_addr("10.0.0.1:80").is_err());
    }
}
