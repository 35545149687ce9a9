//! Key login: challenges, signature checks, sessions, revocation and rate limits.
//! Knows nothing of HTTP: the API layer calls [`Auth`] and renders [`AuthError`].

pub mod challenge;
pub mod sessions;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::chat::Puppets;
use crate::config::{AuthSettings, RateLimit};
use crate::keys::{self, PublicKey};
use crate::store::{AuditEntry, KeyRecord, SessionRecord, Store, now_ms};
use sessions::SessionStore;

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
    /// Something beneath failed (database, cache, homeserver).
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<crate::cache::CacheError> for AuthError {
    fn from(e: crate::cache::CacheError) -> Self {
        Self::Internal(e.into())
    }
}

/// A challenge for a key holder to sign.
#[derive(Debug, Clone, Serialize)]
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

/// What the cache holds for an issued challenge.
#[derive(Serialize, Deserialize)]
struct PendingChallenge {
    public_key: String,
    message: String,
    expires_at: i64,
}

/// The login service.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    sessions: Arc<dyn SessionStore>,
    puppets: Puppets,
    settings: AuthSettings,
}

/// SHA-256 of a session token: all that is stored of it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whom an address's rate limits count against: the address itself for IPv4, its
/// /64 network for IPv6 (one host usually holds a whole /64).
fn rate_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn random_b64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    keys::encode_base64url(&bytes)
}

impl Auth {
    /// The login service over the daemon's state.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<dyn Cache>,
        puppets: Puppets,
        settings: AuthSettings,
    ) -> Self {
        let sessions = sessions::for_mode(
            store.clone(),
            cache.clone(),
            Duration::from_secs(settings.session_max_secs),
        );
        Self {
            store,
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

    async fn limit(&self, what: &str, subject: &str, limit: RateLimit) -> Result<(), AuthError> {
        if limit.max == 0 {
            return Ok(());
        }
        let key = format!("rate:{what}:{subject}");
        let (count, left) = self
            .cache
            .hit(&key, Duration::from_secs(limit.window_secs))
            .await?;
        if count > u64::from(limit.max) {
            tracing::info!(what, subject, "rate limited");
            return Err(AuthError::RateLimited(left));
        }
        Ok(())
    }

    async fn audit(
        &self,
        event: &str,
        key: Option<&KeyRecord>,
        ip: IpAddr,
        detail: Option<String>,
    ) {
        let entry = AuditEntry {
            event: event.to_owned(),
            key_id: key.map(|k| k.key_id.clone()),
            user_id: key.map(|k| k.user_id.to_string()),
            ip: Some(ip.to_string()),
            detail,
        };
        // The audit log must not turn a login into an error, but its loss is logged.
        if let Err(error) = self.store.audit(&entry).await {
            tracing::error!(%error, event, "could not write the audit log");
        }
    }

    /// Issues a challenge for `public_key`. Unknown and revoked keys get one of the
    /// same shape (it can never be used); a malformed key is refused.
    pub async fn challenge(&self, public_key: &str, ip: IpAddr) -> Result<Challenge, AuthError> {
        let limits = &self.settings.rate_limits;
        self.limit("challenge-ip", &rate_subject(ip), limits.challenge_per_ip)
            .await?;
        let key = PublicKey::from_base64(public_key).map_err(|e| {
            tracing::info!(%ip, error = %e, "challenge for a malformed public key");
            AuthError::Forbidden
        })?;
        self.limit("challenge-key", &key.key_id(), limits.challenge_per_key)
            .await?;

        let issued_at = now_ms() / 1000;
        let expires_at =
            issued_at + i64::try_from(self.settings.challenge_ttl_secs).unwrap_or(i64::MAX);
        let message = challenge::message(
            &self.settings.origin,
            &key.to_base64(),
            &random_b64url::<32>(),
            issued_at,
            expires_at,
        );
        let challenge_id = random_b64url::<24>();
        let pending = PendingChallenge {
            public_key: key.to_base64(),
            message: message.clone(),
            expires_at,
        };
        let stored = self
            .cache
            .put_if_absent(
                &format!("challenge:{challenge_id}"),
                &serde_json::to_vec(&pending).map_err(anyhow::Error::from)?,
                // Kept a minute past its end, so a late answer is audited as expired.
                Duration::from_secs(self.settings.challenge_ttl_secs + 60),
            )
            .await?;
        if !stored {
            return Err(AuthError::Internal(anyhow::anyhow!(
                "challenge id collision"
            )));
        }
        Ok(Challenge {
            challenge_id,
            message,
            expires_at: challenge::rfc3339(expires_at),
        })
    }

    /// Checks the signature over a challenge and opens a session. Every failure is
    /// the same [`AuthError::Forbidden`]; the reason goes to the audit log.
    pub async fn login(
        &self,
        challenge_id: &str,
        signature: &str,
        ip: IpAddr,
    ) -> Result<NewSession, AuthError> {
        self.limit(
            "login-ip",
            &rate_subject(ip),
            self.settings.rate_limits.login_per_ip,
        )
        .await?;
        let key = match self.verify(challenge_id, signature).await? {
            Ok(key) => key,
            Err((key, reason)) => {
                tracing::info!(%ip, reason, "login refused");
                self.audit("login_failure", key.as_ref(), ip, Some(reason.to_owned()))
                    .await;
                return Err(AuthError::Forbidden);
            }
        };

        let display_name = self
            .store
            .user(&key.user_id)
            .await?
            .and_then(|u| u.display_name);
        self.puppets
            .ensure_user(&key.user_id, display_name.as_deref())
            .await?;

        let now = now_ms();
        let access_token = random_b64url::<32>();
        let max_ms = i64::try_from(self.session_max().as_millis()).unwrap_or(i64::MAX);
        let session = SessionRecord {
            token_hash: token_hash(&access_token),
            key_id: key.key_id.clone(),
            user_id: key.user_id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(max_ms),
        };
        self.sessions.create(&session, self.idle()).await?;
        // A revocation that raced this login: whichever ran first, no session survives
        // (revocation ends the sessions it sees; this check sees the revocation).
        let still_active = self.store.key_by_fingerprint(&key.fingerprint).await?;
        if still_active.is_none_or(|k| k.revoked_at.is_some()) {
            self.sessions.delete(&session.token_hash).await?;
            self.audit(
                "login_failure",
                Some(&key),
                ip,
                Some("key revoked during login".into()),
            )
            .await;
            return Err(AuthError::Forbidden);
        }
        self.store.record_login(&key.key_id, now).await?;
        self.audit("login_success", Some(&key), ip, None).await;
        Ok(NewSession {
            access_token,
            user_id: key.user_id,
            key_id: key.key_id,
            expires_at: session.expires_at / 1000,
        })
    }

    /// The key a signed challenge proves, or why not (with the key when known).
    async fn verify(
        &self,
        challenge_id: &str,
        signature: &str,
    ) -> Result<Result<KeyRecord, (Option<KeyRecord>, &'static str)>, AuthError> {
        // Taken atomically: of concurrent logins with one challenge, one gets it.
        let Some(pending) = self
            .cache
            .take(&format!("challenge:{challenge_id}"))
            .await?
        else {
            return Ok(Err((None, "unknown or already used challenge")));
        };
        let pending: PendingChallenge =
            serde_json::from_slice(&pending).map_err(anyhow::Error::from)?;
        let public_key = PublicKey::from_base64(&pending.public_key)
            .map_err(|e| anyhow::anyhow!("stored challenge key: {e}"))?;
        let key = self
            .store
            .key_by_fingerprint(&public_key.fingerprint())
            .await?;
        if now_ms() / 1000 > pending.expires_at {
            return Ok(Err((key, "challenge expired")));
        }
        let Ok(signature) = keys::decode_base64(signature.trim()) else {
            return Ok(Err((key, "signature is not canonical base64")));
        };
        if !public_key.verify(pending.message.as_bytes(), &signature) {
            return Ok(Err((key, "bad signature")));
        }
        match key {
            None => Ok(Err((None, "key not registered"))),
            Some(k) if k.revoked_at.is_some() => Ok(Err((Some(k), "key revoked"))),
            Some(k) => Ok(Ok(k)),
        }
    }

    /// The session of `token`, checked against both lifetimes and revocation; counts
    /// as activity.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let hash = token_hash(token);
        let Some(session) = self.sessions.get(&hash).await? else {
            return Err(AuthError::UnknownToken);
        };
        let now = now_ms();
        let idle_ms = i64::try_from(self.idle().as_millis()).unwrap_or(i64::MAX);
        if now >= session.expires_at || now - session.last_seen_at >= idle_ms {
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

    /// Whether the session still stands (not ended, expired or revoked), without
    /// counting as activity: for long-lived requests such as the event stream.
    pub async fn is_valid(&self, who: &Authenticated) -> Result<(), AuthError> {
        let session = self
            .sessions
            .get(&who.token_hash)
            .await?
            .ok_or(AuthError::UnknownToken)?;
        if now_ms() >= session.expires_at {
            return Err(AuthError::UnknownToken);
        }
        Ok(())
    }

    /// Ends the session.
    pub async fn logout(&self, who: &Authenticated) -> Result<(), AuthError> {
        self.sessions.delete(&who.token_hash).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(rate_subject(a), rate_subject(b));
        assert_ne!(rate_subject(a), rate_subject(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(rate_subject(mapped), "192.0.2.7");
        assert_eq!(rate_subject("192.0.2.7".parse().expect("ip")), "192.0.2.7");
    }
}
