//! Key login: challenges, signature checks, sessions, revocation, rate limits, and the
//! administration of keys. Knows nothing of HTTP: the API calls [`Auth`] and renders
//! [`AuthError`]; `chatsender keygen` calls [`KeyAdmin`].

pub mod admin;
pub mod challenge;
mod journal;
mod login;
pub mod sessions;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ruma::OwnedUserId;
use sha2::{Digest, Sha256};

pub use admin::KeyAdmin;
pub use sessions::Sessions;

use crate::cache::{Cache, CacheError};
use crate::config::AuthSettings;
use crate::identity::{PuppetError, Puppets};
use crate::store::{AuditLog, KeyStore, SessionRecord, StoreError};
use crate::time::{ms, now_ms};

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Any login failure; the reason is only logged and audited, never told.
    #[error("login failed")]
    Forbidden,
    /// The session token is unknown, ended, expired or its key revoked.
    #[error("unknown or expired session token")]
    UnknownToken,
    /// Too many attempts; retry after the given time.
    #[error("too many requests; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Puppet(#[from] PuppetError),
    /// Something stored that cannot be read back (a session or challenge entry).
    #[error("unreadable {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl AuthError {
    /// The part that is down or did not answer in time, if that is the cause.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Self::Store(e) => e.is_unavailable().then_some("the database"),
            // Every cache error is Redis failing or not answering.
            Self::Cache(_) => Some("Redis"),
            _ => None,
        }
    }
}

/// A challenge for a key holder to sign.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub challenge_id: String,
    pub message: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

/// A session just created by a login.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub access_token: String,
    pub user_id: OwnedUserId,
    pub key_id: String,
    /// Unix seconds of the absolute end.
    pub expires_at: i64,
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: OwnedUserId,
    pub key_id: String,
    pub token_hash: [u8; 32],
}

/// SHA-256 of a session token: all that is stored of it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The login service.
#[derive(Clone)]
pub struct Auth {
    keys: Arc<dyn KeyStore>,
    journal: journal::Journal,
    cache: Arc<dyn Cache>,
    sessions: Arc<dyn Sessions>,
    puppets: Puppets,
    settings: AuthSettings,
}

impl Auth {
    /// The login service over the daemon's state (starts its audit writer: call it
    /// on the runtime).
    pub fn new(
        keys: Arc<dyn KeyStore>,
        audit: Arc<dyn AuditLog>,
        cache: Arc<dyn Cache>,
        sessions: Arc<dyn Sessions>,
        puppets: Puppets,
        settings: AuthSettings,
    ) -> Self {
        Self {
            keys,
            journal: journal::Journal::journal(audit),
            cache,
            sessions,
            puppets,
            settings,
        }
    }

    /// The web client's origin.
    pub fn origin(&self) -> &str {
        &self.settings.origin
    }

    /// The absolute session lifetime.
    pub fn session_max(&self) -> Duration {
        Duration::from_secs(self.settings.session_max_secs)
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.settings.session_idle_secs)
    }

    /// The session of `token`, checked against both lifetimes and revocation; counts
    /// as activity.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let hash = token_hash(token);
        let Some(session) = self.sessions.get(&hash).await? else {
            return Err(AuthError::UnknownToken);
        };
        let now = now_ms();
        if !self.within_lifetimes(&session, now) {
            self.sessions.delete(&hash).await?;
            return Err(AuthError::UnknownToken);
        }
        self.sessions.touch(&session, now, self.idle()).await?;
        Ok(Authenticated {
            user_id: session.user_id,
            key_id: session.key_id,
            token_hash: hash,
        })
    }

    /// Whether `session` is within both lifetimes at `now` (ms).
    fn within_lifetimes(&self, session: &SessionRecord, now: i64) -> bool {
        now < session.expires_at && now - session.last_seen_at < ms(self.idle())
    }

    /// Of these sessions (token hashes), those that no longer stand: ended, expired,
    /// idle too long or revoked. Reading them does not count as activity: an open
    /// event stream is not use, so a session behind one ends at the idle timeout like
    /// any other, in both modes. Thousands take a few round trips.
    pub async fn ended(&self, sessions: &[[u8; 32]]) -> Result<Vec<[u8; 32]>, AuthError> {
        let now = now_ms();
        let standing: HashSet<[u8; 32]> = self
            .sessions
            .get_many(sessions)
            .await?
            .into_iter()
            .filter(|s| self.within_lifetimes(s, now))
            .map(|s| s.token_hash)
            .collect();
        Ok(sessions
            .iter()
            .filter(|hash| !standing.contains(*hash))
            .copied()
            .collect())
    }

    /// Ends the session.
    pub async fn logout(&self, who: &Authenticated) -> Result<(), AuthError> {
        self.sessions.delete(&who.token_hash).await?;
        Ok(())
    }
}
