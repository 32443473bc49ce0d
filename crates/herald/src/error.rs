//! The errors of the hub's API. Each says what the caller should fix; the HTTP layer turns
//! them into RFC 9457 problem documents with [`Error::status`] and [`Error::kind`].

use http::StatusCode;

use crate::auth::TokenError;
use crate::store::StoreError;

/// Everything a hub operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No app with that id.
    #[error("there is no app `{0}`")]
    UnknownApp(String),
    /// A publish, ack or query that cannot be carried out as written.
    #[error("{0}")]
    Invalid(String),
    /// A publish whose payload is over the app's limit.
    #[error("the payload is {size} bytes; this app accepts at most {limit} (`limits.max_payload_bytes`)")]
    PayloadTooLarge {
        /// Bytes sent.
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// The subscriber token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token does not allow a requested channel.
    #[error("the token does not allow channel `{0}`; add it (or a `prefix*` covering it) to the `channels` claim")]
    ChannelForbidden(String),
    /// A connection would exceed a per-user or per-address limit.
    #[error("{0}")]
    TooManyConnections(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store could not do it; for a durable publish this means it was not stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One item of a batch was refused; nothing of the batch was sent.
    #[error("item {0}: {1}")]
    BatchItem(usize, Box<Error>),
    /// The hub is shutting down and takes no new streams.
    #[error("the hub is shutting down; reconnect shortly")]
    ShuttingDown,
}

impl Error {
    /// The HTTP status that fits.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BatchItem(_, e) => e.status(),
            Self::UnknownApp(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Token(TokenError::NoKey) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Token(_) => StatusCode::UNAUTHORIZED,
            Self::ChannelForbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(StoreError::Locked(_) | StoreError::Corrupt(..) | StoreError::Failed(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Store(StoreError::DiskFull | StoreError::Overloaded | StoreError::Unavailable(_))
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable slug naming the kind of problem, used in the problem `type` URI.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BatchItem(_, e) => e.kind(),
            Self::UnknownApp(_) => "unknown-app",
            Self::Invalid(_) => "invalid-request",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::Token(TokenError::Missing(_)) => "token-missing",
            Self::Token(TokenError::NoKey) => "jwt-key-not-configured",
            Self::Token(TokenError::Expired) => "token-expired",
            Self::Token(TokenError::NotYetValid) => "token-not-yet-valid",
            Self::Token(TokenError::MissingExpiry) => "token-missing-expiry",
            Self::Token(TokenError::WrongIssuer(_)) => "token-issuer-refused",
            Self::Token(TokenError::WrongAudience(_)) => "token-audience-refused",
            Self::Token(TokenError::BadSignature) => "token-bad-signature",
            Self::Token(TokenError::WrongAlgorithm(_)) => "token-algorithm-refused",
            Self::Token(TokenError::MissingSubject) => "token-missing-subject",
            Self::Token(TokenError::Malformed(_)) => "token-malformed",
            Self::ChannelForbidden(_) => "channel-forbidden",
            Self::TooManyConnections(_) => "too-many-connections",
            Self::NotFound(_) => "not-found",
            Self::Store(_) => "store-unavailable",
            Self::ShuttingDown => "shutting-down",
        }
    }
}
