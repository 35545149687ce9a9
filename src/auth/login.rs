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
        if let Err(error) = self.journal.write((entry, None)).await {
            tracing::error!(%error, event = event.as_str(), "could not write the audit log");
        }
    }

    /// Issues a challenge for `public_key`. Unknown and revoked keys get one of the
    /// same shape (it can never be used); a malformed or weak key is refused.
    pub async fn challenge(&self, public_key: &str, ip: IpAddr) -> Result<Challenge, AuthError> {
        let limits = &self.settings.rate_limits;
        self.limit("challenge-ip", &rate_subject(ip), limits.challenge_per_ip)
            .await?;
        let key = PublicKey::from_base64_at_login(public_key).map_err(|e| {
            tracing::info!(%ip, error = %e, "challenge for a malformed public key");
            AuthError::Forbidden
        })?;
        // Per key *and* address: requests from elsewhere, however many, cannot spend
        // the holder's own challenges and lock them out.
        let subject = format!("{}:{}", key.key_id(), rate_subject(ip));
        self.limit("challenge-key", &subject, limits.challenge_per_key)
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
        if self.sessions.key_refused(&key, self.keys.as_ref()).await? {
            self.sessions.delete(&session.token_hash).await?;
            let detail = Some("key revoked during login".into());
            self.audit(AuditEvent::LoginFailure, Some(&key), ip, detail)
                .await;
            return Err(AuthError::Forbidden);
        }
        let entry = audit_entry(AuditEvent::LoginSuccess, Some(&key), ip, None);
        // The key's last login and the audit entry, committed with other logins'.
        self.journal
            .write((entry, Some((key.key_id.clone(), now))))
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
        let public_key = PublicKey::from_base64_at_login(&pending.public_key)
            .map_err(|e| corrupt("challenge", e))?;
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
mod tests;
