//! Key administration, as `chatsender keygen` offers it: generate, add, list and revoke
//! keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{AuthError, Sessions};
use crate::identity::{NameError, Namespace};
use crate::keys::{KeyError, KeyPair, PublicKey};
use crate::store::{AuditEntry, AuditEvent, AuditLog, KeyRecord, KeyStore, NewKey, StoreError};
use crate::time::{now_ms, rfc3339_ms};

/// A key as `keygen generate` and `add` report it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    pub key_id: String,
    pub fingerprint: String,
    pub public_key: String,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
}

/// A key as `keygen list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyListing {
    pub key_id: String,
    pub fingerprint: String,
    pub user_id: String,
    pub name: Option<String>,
    pub created: String,
    pub last_login: Option<String>,
    pub active_sessions: u64,
    pub status: &'static str,
}

/// Why a key operation failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--name {0}")]
    Name(#[from] NameError),
    #[error("N must be at least 1")]
    NoKeys,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("key {key_id} was revoked on {on}; a revoked key cannot be registered again")]
    Revoked { key_id: String, on: String },
    #[error("key {key_id} is already registered to {user_id}")]
    Registered { key_id: String, user_id: String },
    #[error("`{0}` is not a fingerprint prefix: give at least 8 hex characters")]
    InvalidPrefix(String),
    #[error("no key's fingerprint starts with {0}")]
    NoMatch(String),
    #[error("{prefix} matches {} keys; give more characters:\n{}", .candidates.len(), .candidates.iter().map(|k| format!("  {}  {}", k.fingerprint, k.user_id)).collect::<Vec<_>>().join("\n"))]
    Ambiguous {
        prefix: String,
        candidates: Vec<KeyRecord>,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot register the keys: {0}")]
    Register(#[source] StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not end the key's sessions; nothing was revoked, run revoke again: {0}")]
    NotRevoked(#[source] AuthError),
    #[error("sessions: {0}")]
    Sessions(#[source] AuthError),
}

/// Key administration over the daemon's database (and Redis, for sessions).
pub struct KeyAdmin {
    keys: Arc<dyn KeyStore>,
    audit: Arc<dyn AuditLog>,
    sessions: Arc<dyn Sessions>,
    namespace: Namespace,
    idle: Duration,
}

impl KeyAdmin {
    /// Administration of the keys in `keys`; `idle` is the session idle lifetime.
    pub fn new(
        keys: Arc<dyn KeyStore>,
        audit: Arc<dyn AuditLog>,
        sessions: Arc<dyn Sessions>,
        namespace: Namespace,
        idle: Duration,
    ) -> Self {
        Self {
            keys,
            audit,
            sessions,
            namespace,
            idle,
        }
    }

    fn new_key(&self, public: &PublicKey, name: Option<&str>) -> Result<NewKey, AdminError> {
        let key_id = public.key_id();
        let user_id = match name {
            Some(name) => self.namespace.named(name)?,
            None => self.namespace.puppet(&key_id)?,
        };
        Ok(NewKey {
            user_id,
            display_name: Some(name.unwrap_or(&key_id).to_owned()),
            name: name.map(str::to_owned),
            fingerprint: public.fingerprint(),
            public_key: *public.as_bytes(),
            key_id,
        })
    }

    /// Makes `count` key pairs, writes each private key to `out/<key_id>.pem` (mode
    /// 0600) and registers the public keys; `progress` is told of each key made.
    pub async fn generate(
        &self,
        count: u64,
        name: Option<&str>,
        out: &Path,
        progress: impl Fn(u64),
    ) -> Result<Vec<KeyReport>, AdminError> {
        if count == 0 {
            return Err(AdminError::NoKeys);
        }
        if let Some(name) = name {
            self.namespace.named(name)?;
        }
        create_private_dir(out)?;
        let mut keys = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut reports = Vec::with_capacity(keys.capacity());
        let mut written = Vec::with_capacity(keys.capacity());
        let result: Result<(), AdminError> = (|| {
            for i in 0..count {
                let pair = KeyPair::generate();
                let key = self.new_key(&pair.public, name)?;
                let file = out.join(format!("{}.pem", key.key_id));
                write_private_key(&file, &pair.private_key_pem()?)?;
                written.push(file.clone());
                reports.push(KeyReport {
                    key_id: key.key_id.clone(),
                    fingerprint: key.fingerprint.clone(),
                    public_key: pair.public.to_base64(),
                    user_id: key.user_id.to_string(),
                    private_key_file: Some(file),
                });
                keys.push(key);
                progress(i + 1);
            }
            Ok(())
        })();
        let result = match result {
            Ok(()) => self
                .keys
                .insert_keys(&keys)
                .await
                .map_err(AdminError::Register),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Nothing was registered: remove the private keys written for it.
            for file in &written {
                let _ = std::fs::remove_file(file);
            }
            return Err(e);
        }
        Ok(reports)
    }

    /// Registers a public key made elsewhere (the browser, OpenSSL).
    pub async fn add(
        &self,
        public: &PublicKey,
        name: Option<&str>,
    ) -> Result<KeyReport, AdminError> {
        if let Some(existing) = self.keys.key_by_fingerprint(&public.fingerprint()).await? {
            return Err(match existing.revoked_at {
                Some(at) => AdminError::Revoked {
                    key_id: existing.key_id,
                    on: rfc3339_ms(at),
                },
                None => AdminError::Registered {
                    key_id: existing.key_id,
                    user_id: existing.user_id.to_string(),
                },
            });
        }
        let key = self.new_key(public, name)?;
        self.keys.insert_keys(std::slice::from_ref(&key)).await?;
        Ok(KeyReport {
            key_id: key.key_id,
            fingerprint: key.fingerprint,
            public_key: public.to_base64(),
            user_id: key.user_id.to_string(),
            private_key_file: None,
        })
    }

    /// Every key (revoked ones with `all`) with its sessions and status.
    pub async fn list(&self, all: bool) -> Result<Vec<KeyListing>, AdminError> {
        let now = now_ms();
        let mut listings = Vec::new();
        for key in self.keys.keys(all).await? {
            let active_sessions = match key.revoked_at {
                Some(_) => 0,
                None => self
                    .sessions
                    .count_live(&key.key_id, now, self.idle)
                    .await
                    .map_err(AdminError::Sessions)?,
            };
            listings.push(KeyListing {
                created: rfc3339_ms(key.created_at),
                last_login: key.last_login_at.map(rfc3339_ms),
                status: if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                },
                key_id: key.key_id,
                fingerprint: key.fingerprint,
                user_id: key.user_id.to_string(),
                name: key.name,
                active_sessions,
            });
        }
        Ok(listings)
    }

    /// The one key whose fingerprint starts with `prefix`.
    pub async fn find(&self, prefix: &str) -> Result<KeyRecord, AdminError> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 8 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::InvalidPrefix(prefix));
        }
        let mut candidates = self.keys.keys_by_fingerprint_prefix(&prefix).await?;
        match candidates.len() {
            0 => Err(AdminError::NoMatch(prefix)),
            1 => Ok(candidates.remove(0)),
            _ => Err(AdminError::Ambiguous { prefix, candidates }),
        }
    }

    /// Revokes `key` (again, harmlessly, if it already was) and ends its sessions;
    /// returns how many sessions ended.
    pub async fn revoke(&self, key: &KeyRecord) -> Result<u64, AdminError> {
        let now = now_ms();
        // Sessions first (in Redis mode this also refuses the key's sessions from
        // now on), so a failure leaves the key refused rather than half revoked.
        // Even when the key was revoked before, end sessions again: a previous run
        // may have stopped half-way.
        let ended = self
            .sessions
            .end_key(&key.key_id, now, self.idle)
            .await
            .map_err(AdminError::NotRevoked)?;
        let newly = self.keys.revoke_key(&key.key_id, now).await?;
        // A login that finished between the two steps saw the key still active.
        let ended = ended
            + self
                .sessions
                .end_key(&key.key_id, now_ms(), self.idle)
                .await
                .map_err(AdminError::Sessions)?;
        if newly {
            self.audit
                .audit(&AuditEntry {
                    event: AuditEvent::KeyRevoked,
                    key_id: Some(key.key_id.clone()),
                    user_id: Some(key.user_id.to_string()),
                    ip: None,
                    detail: Some(format!("{ended} sessions ended")),
                })
                .await?;
        }
        Ok(ended)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), AdminError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| AdminError::Write {
        path: dir.to_owned(),
        source,
    })
}

fn write_private_key(path: &Path, pem: &str) -> Result<(), AdminError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(pem.as_bytes()))
        .map_err(|source| AdminError::Write {
            path: path.to_owned(),
            source,
        })
}
