//! The Mercure protocol (dunglas/mercure `spec/mercure.md`, and the 0.x wire that Symfony and
//! API Platform speak): topic selectors and tokens. The hub side (subscribing, publishing,
//! subscriptions) is in `hub::mercure`, the HTTP side in `http::mercure`.
//!
//! Mercure topics are the app's channels: an update to topics `[a, b]` is a message to channels
//! `a` and `b`, sequenced, stored, clustered and resumed like any other.

pub mod selector;
pub mod token;

pub use selector::{MatchType, Selector, Topic};
pub use token::Grants;
