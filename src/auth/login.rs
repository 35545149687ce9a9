//! Logging in: issuing a challenge, checking its signature, opening a session; rate
//! limits and the audit log of each attempt.

use std::net::IpAddr;
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{Auth, AuthError, Challenge, NewSession, challenge, token_hash};
use crate::config::RateLimit;
use crate::keys::{self, PublicKey};
use crate::store::{AuditEntry, AuditEvent, KeyRecord, SessionRecord};
use crate::time::{ms, now_ms, rfc3339};

/// What the cache holds for an issued challenge.
#[derive(Serialize, Deserialize)]
struct PendingChallenge {
    public_key: String,
    message: String,
    expires_at: i64,
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

fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> AuthError {
    AuthError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

fn audit_entry(
    event: AuditEvent,
    key: Option<&KeyRecord>,
    ip: IpAddr,
    detail: Option<String>,
) -> AuditEntry {
    AuditEntry {
        event,
        key_id: key.map(|k| k.key_id.clone()),
        user_id: key.map(|k| k.user_id.to_string()),
        ip: Some(ip.to_string()),
        detail,
    }
}

/// Why a signed challenge proves no key, with the key when known.
type Refusal = (Option<KeyRecord>, &'static str);

impl Auth {
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
        event: AuditEvent,
        key: Option<&KeyRecord>,
        ip: IpAddr,
        detail: Option<String>,
    ) {
        let entry = audit_entry(event, key, ip, detail);
        // The audit log must not turn a failed login into an error, but its loss is
        // logged.
        if let Err(error) = self.journal.write(entry, None).await {
            tracing::error!(%error, event = event.as_str(), "could not write the audit log");
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
        let pending = serde_json::to_vec(&pending).map_err(|e| corrupt("challenge", e))?;
        let stored = self
            .cache
            .put_if_absent(
                &format!("challenge:{challenge_id}"),
                &pending,
                // Kept a minute past its end, so a late answer is audited as expired.
                Duration::from_secs(self.settings.challenge_ttl_secs + 60),
            )
            .await?;
        if !stored {
            return Err(corrupt("challenge", "challenge id collision"));
        }
        Ok(Challenge {
            challenge_id,
            message,
            expires_at: rfc3339(expires_at),
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
        let limit = self.settings.rate_limits.login_per_ip;
        self.limit("login-ip", &rate_subject(ip), limit).await?;
        let key = match self.verify(challenge_id, signature).await? {
            Ok(key) => key,
            Err((key, reason)) => {
                tracing::info!(%ip, reason, "login refused");
                let detail = Some(reason.to_owned());
                self.audit(AuditEvent::LoginFailure, key.as_ref(), ip, detail)
                    .await;
                return Err(AuthError::Forbidden);
            }
        };
        self.puppets.register(&key.user_id).await?;

        let now = now_ms();
        let access_token = random_b64url::<32>();
        let session = SessionRecord {
            token_hash: token_hash(&access_token),
            key_id: key.key_id.clone(),
            user_id: key.user_id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(ms(self.session_max())),
        };
        self.sessions.create(&session, self.idle()).await?;
        // A revocation that raced this login: whichever ran first, no session survives
        // (revocation ends the sessions it sees; this check sees the revocation).
        let still_active = self.keys.key_by_fingerprint(&key.fingerprint).await?;
        if still_active.is_none_or(|k| k.revoked_at.is_some()) {
            self.sessions.delete(&session.token_hash).await?;
            let detail = Some("key revoked during login".into());
            self.audit(AuditEvent::LoginFailure, Some(&key), ip, detail)
                .await;
            return Err(AuthError::Forbidden);
        }
        let entry = audit_entry(AuditEvent::LoginSuccess, Some(&key), ip, None);
        // The key's last login and the audit entry, committed with other logins'.
        self.journal
            .write(entry, Some((key.key_id.clone(), now)))
            .await?;
        Ok(NewSession {
            access_token,
            user_id: key.user_id,
            key_id: key.key_id,
            expires_at: session.expires_at / 1000,
        })
    }

    /// The key a signed challenge proves, or why not.
    async fn verify(
        &self,
        challenge_id: &str,
        signature: &str,
    ) -> Result<Result<KeyRecord, Refusal>, AuthError> {
        // Taken atomically: of concurrent logins with one challenge, one gets it.
        let Some(pending) = self
            .cache
            .take(&format!("challenge:{challenge_id}"))
            .await?
        else {
            return Ok(Err((None, "unknown or already used challenge")));
        };
        let pending: PendingChallenge =
            serde_json::from_slice(&pending).map_err(|e| corrupt("challenge", e))?;
        let public_key =
            PublicKey::from_base64(&pending.public_key).map_err(|e| corrupt("challenge", e))?;
        let key = self
            .keys
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use ed25519_dalek::Signer as _;
    use ruma::ServerName;

    use super::*;
    use crate::auth::sessions::{CacheSessions, DatabaseSessions};
    use crate::auth::{KeyAdmin, Sessions};
    use crate::cache::MemoryCache;
    use crate::config::AuthSettings;
    use crate::identity::{Namespace, Puppets};
    use crate::matrix::fake::FakeHomeserver;
    use crate::store::memory::MemoryStore;
    use crate::store::{KeyStore, NewKey, StoreError};

    const HOUR: Duration = Duration::from_secs(3600);

    /// The key store, with a revocation that lands just before the `nth` lookup of a
    /// key by fingerprint: where a concurrent `keygen revoke` can finish.
    struct RevokedAt {
        store: Arc<MemoryStore>,
        admin: KeyAdmin,
        nth: usize,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl KeyStore for RevokedAt {
        async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
            self.store.insert_keys(keys).await
        }
        async fn key_by_fingerprint(&self, fp: &str) -> Result<Option<KeyRecord>, StoreError> {
            if self.lookups.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
                let key = self.store.key_by_fingerprint(fp).await?.expect("a key");
                self.admin.revoke(&key).await.expect("revoke");
            }
            self.store.key_by_fingerprint(fp).await
        }
        async fn keys_by_fingerprint_prefix(&self, p: &str) -> Result<Vec<KeyRecord>, StoreError> {
            self.store.keys_by_fingerprint_prefix(p).await
        }
        async fn keys(&self, include_revoked: bool) -> Result<Vec<KeyRecord>, StoreError> {
            self.store.keys(include_revoked).await
        }
        async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError> {
            self.store.revoke_key(key_id, at).await
        }
    }

    struct Setup {
        auth: Auth,
        admin: KeyAdmin,
        sessions: Arc<dyn Sessions>,
        key: ed25519_dalek::SigningKey,
        key_id: String,
    }

    /// Login over in-memory state, with sessions as in embedded mode (the database)
    /// or as in Redis mode (the cache); a revocation lands before the `nth` key lookup.
    async fn setup(in_cache: bool, revoke_before_lookup: usize) -> Setup {
        let store = Arc::new(MemoryStore::default());
        let cache = Arc::new(MemoryCache::default());
        let sessions: Arc<dyn Sessions> = if in_cache {
            Arc::new(CacheSessions::new(cache.clone(), HOUR))
        } else {
            Arc::new(DatabaseSessions::new(store.clone()))
        };
        let server = ServerName::parse("x").expect("server name");
        let namespace = Namespace::new("cs_", &server, "cs_bot").expect("namespace");
        let admin = |keys: Arc<dyn KeyStore>| {
            KeyAdmin::new(
                keys,
                store.clone(),
                sessions.clone(),
                namespace.clone(),
                HOUR,
            )
        };
        let keys = Arc::new(RevokedAt {
            store: store.clone(),
            admin: admin(store.clone()),
            nth: revoke_before_lookup,
            lookups: AtomicUsize::new(0),
        });
        let homeserver = Arc::new(FakeHomeserver::default());
        let puppets = Puppets::new(namespace.clone(), homeserver, store.clone());
        let mut settings = AuthSettings::default();
        let off = RateLimit {
            max: 0,
            window_secs: 60,
        };
        settings.rate_limits.challenge_per_ip = off;
        settings.rate_limits.challenge_per_key = off;
        settings.rate_limits.login_per_ip = off;
        let auth = Auth::new(
            keys.clone(),
            store.clone(),
            cache,
            sessions.clone(),
            puppets,
            settings,
        );
        let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let public = PublicKey::from_slice(key.verifying_key().as_bytes()).expect("a key");
        let key_id = admin(store.clone()).add(&public, None).await;
        let key_id = key_id.expect("add").key_id;
        Setup {
            auth,
            admin: admin(store.clone()),
            sessions,
            key,
            key_id,
        }
    }

    impl Setup {
        async fn login(&self) -> Result<NewSession, AuthError> {
            let ip: IpAddr = "192.0.2.1".parse().expect("ip");
            let public = keys::encode_base64(self.key.verifying_key().as_bytes());
            let c = self.auth.challenge(&public, ip).await?;
            let signature = keys::encode_base64(&self.key.sign(c.message.as_bytes()).to_bytes());
            self.auth.login(&c.challenge_id, &signature, ip).await
        }

        async fn live_sessions(&self) -> u64 {
            let idle = Duration::from_secs(1800);
            let live = self.sessions.count_live(&self.key_id, now_ms(), idle);
            live.await.expect("count")
        }
    }

    #[tokio::test]
    async fn no_session_survives_a_revocation_racing_its_login() {
        for in_cache in [false, true] {
            // Revoked before the signature is checked, and after the session was made.
            for nth in [1, 2] {
                let s = setup(in_cache, nth).await;
                let login = s.login().await;
                assert!(
                    matches!(login, Err(AuthError::Forbidden)),
                    "revoked before lookup {nth} (sessions in cache: {in_cache}): {login:?}"
                );
                assert_eq!(s.live_sessions().await, 0);
            }
            // Revoked after the login: the session ends at its next request.
            let s = setup(in_cache, usize::MAX).await;
            let session = s.login().await.expect("login");
            assert!(s.auth.authenticate(&session.access_token).await.is_ok());
            let key = s.admin.find(&s.key_id).await.expect("the key");
            assert_eq!(s.admin.revoke(&key).await.expect("revoke"), 1);
            assert!(matches!(
                s.auth.authenticate(&session.access_token).await,
                Err(AuthError::UnknownToken)
            ));
        }
    }

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
