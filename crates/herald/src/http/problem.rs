//! RFC 9457 problem documents: every error the HTTP layer returns is one of these.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde::Serialize;

use crate::error::Error;

/// An `application/problem+json` answer.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    /// `WWW-Authenticate` of a 401 or 403; plain `Bearer` on a 401 when unset.
    challenge: Option<&'static str>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, detail: detail.into(), challenge: None }
    }

    /// Sets the `WWW-Authenticate` challenge (Mercure's OAuth error codes).
    pub(crate) fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Self::new(e.status(), e.kind(), e.to_string())
    }
}

/// The body of every error answer (`application/problem+json`, RFC 9457); also an item of a
/// batch answer whose publish failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemDocument {
    /// `urn:herald:problem:<kind>`, stable: branch on this.
    #[serde(rename = "type")]
    #[schema(example = "urn:herald:problem:invalid-request")]
    pub(crate) kind: String,
    /// The HTTP status's reason phrase.
    pub(crate) title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub(crate) status: u16,
    /// What went wrong and what to fix, for a person.
    pub(crate) detail: String,
}

impl ProblemDocument {
    pub(crate) fn new(status: StatusCode, kind: &str, detail: String) -> Self {
        Self {
            kind: format!("urn:herald:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDocument::new(self.status, self.kind, self.detail);
        let body = serde_json::to_string(&body).expect("a problem document serializes");
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static(challenge));
        } else if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
