//! What `chatsender keygen` does: generate, add, list and revoke keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::Serialize;

use super::{KeyPair, PublicKey};
use crate::auth::challenge::rfc3339;
use crate::auth::sessions::{self, SessionStore};
use crate::cache::Cache;
use crate::config::Settings;
use crate::store::{AuditEntry, KeyRecord, NewKey, Store, now_ms};

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

/// Why a revocation prefix did not pick one key.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    #[error("`{0}` is not a fingerprint prefix: give at least 8 hex characters")]
    Invalid(String),
    #[error("no key's fingerprint starts with {0}")]
    NoMatch(String),
    #[error("{prefix} matches {} keys; give more characters:\n{}", .candidates.len(), .candidates.iter().map(|k| format!("  {}  {}", k.fingerprint, k.user_id)).collect::<Vec<_>>().join("\n"))]
    Ambiguous {
        prefix: String,
        candidates: Vec<KeyRecord>,
    },
}

/// Key administration over the daemon's database (and Redis, for sessions).
pub struct KeyAdmin {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
    server_name: OwnedServerName,
    user_prefix: String,
    bot_user_id: OwnedUserId,
    idle: Duration,
}

fn ms_to_rfc3339(ms: i64) -> String {
    rfc3339(ms / 1000)
}

impl KeyAdmin {
    /// Connects to what `settings` names.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let store = crate::store::connect(&settings.database).await?;
        let cache: Arc<dyn Cache> = crate::cache::connect(&settings.redis).await?;
        let session_max = Duration::from_secs(settings.auth.session_max_secs);
        Ok(Self {
            sessions: sessions::for_mode(store.clone(), cache, session_max),
            store,
            server_name: settings.homeserver.server_name.clone(),
            user_prefix: settings.appservice.user_prefix.clone(),
            bot_user_id: settings
                .appservice
                .bot_user_id(&settings.homeserver.server_name)?,
            idle: Duration::from_secs(settings.auth.session_idle_secs),
        })
    }

    fn user_id(&self, name: &str) -> anyhow::Result<OwnedUserId> {
        let user_id = self.user_id_unchecked(name)?;
        anyhow::ensure!(
            user_id != self.bot_user_id,
            "--name `{name}`: that is the appservice's own user ({user_id})"
        );
        Ok(user_id)
    }

    /// A name that is not a key id (those are the users of keys without a name).
    fn check_name(&self, name: &str) -> anyhow::Result<OwnedUserId> {
        anyhow::ensure!(
            !(name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit())),
            "--name `{name}`: 16 hex characters look like a key id; choose another name"
        );
        self.user_id(name)
    }

    fn user_id_unchecked(&self, name: &str) -> anyhow::Result<OwnedUserId> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/'));
        anyhow::ensure!(
            valid,
            "--name `{name}`: use only a-z, 0-9 and ._=-/ (it becomes the Matrix user id)"
        );
        UserId::parse(format!("@{}{name}:{}", self.user_prefix, self.server_name))
            .with_context(|| format!("--name `{name}`: not usable in a Matrix user id"))
    }

    fn new_key(&self, public: &PublicKey, name: Option<&str>) -> anyhow::Result<NewKey> {
        let key_id = public.key_id();
        let user_id = match name {
            Some(name) => self.check_name(name)?,
            None => self.user_id(&key_id)?,
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
    ) -> anyhow::Result<Vec<KeyReport>> {
        anyhow::ensure!(count >= 1, "N must be at least 1");
        if let Some(name) = name {
            self.check_name(name)?;
        }
        create_private_dir(out)?;
        let mut keys = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut reports = Vec::with_capacity(keys.capacity());
        let mut written = Vec::with_capacity(keys.capacity());
        let result: anyhow::Result<()> = (|| {
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
                .store
                .insert_keys(&keys)
                .await
                .context("cannot register the keys"),
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
    pub async fn add(&self, public: &PublicKey, name: Option<&str>) -> anyhow::Result<KeyReport> {
        if let Some(existing) = self.store.key_by_fingerprint(&public.fingerprint()).await? {
            match existing.revoked_at {
                Some(at) => anyhow::bail!(
                    "key {} was revoked on {}; a revoked key cannot be registered again",
                    existing.key_id,
                    ms_to_rfc3339(at)
                ),
                None => anyhow::bail!(
                    "key {} is already registered to {}",
                    existing.key_id,
                    existing.user_id
                ),
            }
        }
        let key = self.new_key(public, name)?;
        self.store.insert_keys(std::slice::from_ref(&key)).await?;
        Ok(KeyReport {
            key_id: key.key_id,
            fingerprint: key.fingerprint,
            public_key: public.to_base64(),
            user_id: key.user_id.to_string(),
            private_key_file: None,
        })
    }

    /// Every key (revoked ones with `all`) with its sessions and status.
    pub async fn list(&self, all: bool) -> anyhow::Result<Vec<KeyListing>> {
        let now = now_ms();
        let mut listings = Vec::new();
        for key in self.store.keys(all).await? {
            let active_sessions = match key.revoked_at {
                Some(_) => 0,
                None => {
                    self.sessions
                        .count_live(&key.key_id, now, self.idle)
                        .await?
                }
            };
            listings.push(KeyListing {
                created: ms_to_rfc3339(key.created_at),
                last_login: key.last_login_at.map(ms_to_rfc3339),
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
    pub async fn find(&self, prefix: &str) -> Result<KeyRecord, anyhow::Error> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 8 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PrefixError::Invalid(prefix).into());
        }
        let mut candidates = self.store.keys_by_fingerprint_prefix(&prefix).await?;
        match candidates.len() {
            0 => Err(PrefixError::NoMatch(prefix).into()),
            1 => Ok(candidates.remove(0)),
            _ => Err(PrefixError::Ambiguous { prefix, candidates }.into()),
        }
    }

    /// Revokes `key` (again, harmlessly, if it already was) and ends its sessions;
    /// returns how many sessions ended.
    pub async fn revoke(&self, key: &KeyRecord) -> anyhow::Result<u64> {
        let now = now_ms();
        // Sessions first (in Redis mode this also refuses the key's sessions from
        // now on), so a failure leaves the key refused rather than half revoked.
        // Even when the key was revoked before, end sessions again: a previous run
        // may have stopped half-way.
        let ended = self
            .sessions
            .end_key(&key.key_id, now, self.idle)
            .await
            .context("could not end the key's sessions; nothing was revoked, run revoke again")?;
        let newly = self.store.revoke_key(&key.key_id, now).await?;
        // A login that finished between the two steps saw the key still active.
        let ended = ended
            + self
                .sessions
                .end_key(&key.key_id, now_ms(), self.idle)
                .await?;
        if newly {
            self.store
                .audit(&AuditEntry {
                    event: "key_revoked".into(),
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

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn write_private_key(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
