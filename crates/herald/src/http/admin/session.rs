//! Dashboard sessions: who signed in, what they may see, and the CSRF token of their page.
//!
//! A session is a random id in an `HttpOnly`, `SameSite=Strict` cookie that points into a
//! table held here, so signing out or expiry ends it at once. Passwords and keys are compared
//! as SHA-256 digests in constant time, against every credential, so the time an attempt takes
//! says nothing about which one came close.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use crate::auth::key_digest;

/// How long a session lasts after sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; past it the oldest is ended.
const MAX_SESSIONS: usize = 10_000;
/// The cookie that carries the session id.
pub(crate) const COOKIE: &str = "herald_admin";

/// What a session may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Signed in with `admin_password`: every app.
    Admin,
    /// Signed in with this app's API key: this app alone.
    App(String),
}

impl Scope {
    /// Whether this scope covers `app`.
    pub(crate) fn allows(&self, app: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::App(own) => own == app,
        }
    }
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) scope: Scope,
    /// Sent by the page in `X-Herald-CSRF` on every change it asks for.
    pub(crate) csrf: String,
    created: Instant,
}

/// The credentials a sign-in is checked against, as digests.
pub(crate) struct Credentials {
    admin: Option<[u8; 32]>,
    apps: Vec<([u8; 32], String)>,
}

impl Credentials {
    pub(crate) fn new(admin_password: Option<&str>, app_keys: impl Iterator<Item = (String, String)>) -> Self {
        Self {
            admin: admin_password.map(key_digest),
            apps: app_keys.map(|(app, key)| (key_digest(&key), app)).collect(),
        }
    }

    /// Whether anyone can sign in at all; with no credentials the dashboard does not exist.
    pub(crate) fn any(&self) -> bool {
        self.admin.is_some() || !self.apps.is_empty()
    }

    /// The scope `password` grants, comparing it with every credential in constant time.
    pub(crate) fn verify(&self, password: &str) -> Option<Scope> {
        let digest = key_digest(password);
        let mut scope = None;
        if let Some(admin) = &self.admin {
            if bool::from(admin.ct_eq(&digest)) {
                scope = Some(Scope::Admin);
            }
        }
        for (key, app) in &self.apps {
            if bool::from(key.ct_eq(&digest)) && scope.is_none() {
                scope = Some(Scope::App(app.clone()));
            }
        }
        scope
    }
}

/// The session table. One short lock per request; never held across an await.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session; returns its id (for the cookie) and the session.
    pub(crate) fn open(&self, scope: Scope, now: Instant) -> (String, Session) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = Session { scope, csrf: hex::encode(rand::random::<[u8; 24]>()), created: now };
        let mut table = self.table.lock();
        table.retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table.iter().min_by_key(|(_, s)| s.created).map(|(id, _)| id.clone()) {
                table.remove(&oldest);
            }
        }
        table.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id` names.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.table.lock();
        match table.get(id) {
            Some(s) if now.duration_since(s.created) < SESSION_TTL => Some(s.clone()),
            Some(_) => {
                table.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub(crate) fn close(&self, id: &str) {
        self.table.lock().remove(id);
    }
}

/// Whether `given` is the session's CSRF token, in constant time.
pub(crate) fn csrf_matches(session: &Session, given: &str) -> bool {
    given.len() == session.csrf.len() && bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_and_each_key_grant_their_scope() {
        let keys =
            [("default".to_string(), "key-of-default-app".to_string()), ("hr".into(), "key-of-the-hr-app".into())];
        let credentials = Credentials::new(Some("admin-password-1"), keys.into_iter());
        assert_eq!(credentials.verify("admin-password-1"), Some(Scope::Admin));
        assert_eq!(credentials.verify("key-of-the-hr-app"), Some(Scope::App("hr".into())));
        assert_eq!(credentials.verify("key-of-the-hr-ap"), None);
        assert_eq!(credentials.verify(""), None);
    }

    #[test]
    fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (id, session) = sessions.open(Scope::Admin, now);
        assert!(csrf_matches(&session, &session.csrf) && !csrf_matches(&session, "nope"));
        assert!(sessions.get(&id, now + SESSION_TTL / 2).is_some());
        assert!(sessions.get(&id, now + SESSION_TTL).is_none());
        let (id, _) = sessions.open(Scope::Admin, now);
        sessions.close(&id);
        assert!(sessions.get(&id, now).is_none());
    }
}
