//! Login under races and limits, over in-memory state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Where a concurrent `keygen revoke` finishes, if one does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Revoked {
    Never,
    /// Before the login reads the key to check the signature.
    BeforeKeyLookup,
    /// Once the login has made its session, before it answers.
    AfterSessionMade,
}

/// The key store, with a revocation that lands just before the first lookup of a key
/// by fingerprint.
struct RevokedAt {
    store: Arc<MemoryStore>,
    admin: KeyAdmin,
    armed: AtomicBool,
}

#[async_trait]
impl KeyStore for RevokedAt {
    async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
        self.store.insert_keys(keys).await
    }
    async fn key_by_fingerprint(&self, fp: &str) -> Result<Option<KeyRecord>, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
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

/// Sessions, with a revocation that lands just after the first session is made.
struct RevokedOnCreate {
    sessions: Arc<dyn Sessions>,
    admin: KeyAdmin,
    armed: AtomicBool,
}

#[async_trait]
impl Sessions for RevokedOnCreate {
    async fn create(&self, session: &SessionRecord, idle: Duration) -> Result<(), AuthError> {
        self.sessions.create(session, idle).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            let key = self.admin.find(&session.key_id).await.expect("the key");
            self.admin.revoke(&key).await.expect("revoke");
        }
        Ok(())
    }
    async fn get(&self, hash: &[u8; 32]) -> Result<Option<SessionRecord>, AuthError> {
        self.sessions.get(hash).await
    }
    async fn get_many(&self, hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, AuthError> {
        self.sessions.get_many(hashes).await
    }
    async fn touch(&self, s: &SessionRecord, now: i64, idle: Duration) -> Result<(), AuthError> {
        self.sessions.touch(s, now, idle).await
    }
    async fn key_refused(&self, key: &KeyRecord, keys: &dyn KeyStore) -> Result<bool, AuthError> {
        self.sessions.key_refused(key, keys).await
    }
    async fn delete(&self, hash: &[u8; 32]) -> Result<bool, AuthError> {
        self.sessions.delete(hash).await
    }
    async fn end_key(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError> {
        self.sessions.end_key(key_id, now, idle).await
    }
    async fn count_live(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError> {
        self.sessions.count_live(key_id, now, idle).await
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
/// or as in Redis mode (the cache); a revocation lands where `revoked` says.
async fn setup(in_cache: bool, revoked: Revoked) -> Setup {
    let mut settings = AuthSettings::default();
    let off = RateLimit {
        max: 0,
        window_secs: 60,
    };
    settings.rate_limits.challenge_per_ip = off;
    settings.rate_limits.challenge_per_key = off;
    settings.rate_limits.login_per_ip = off;
    setup_with(in_cache, revoked, settings).await
}

async fn setup_with(in_cache: bool, revoked: Revoked, settings: AuthSettings) -> Setup {
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
        armed: AtomicBool::new(revoked == Revoked::BeforeKeyLookup),
    });
    let racing = Arc::new(RevokedOnCreate {
        sessions: sessions.clone(),
        admin: admin(store.clone()),
        armed: AtomicBool::new(revoked == Revoked::AfterSessionMade),
    });
    let homeserver = Arc::new(FakeHomeserver::default());
    let puppets = Puppets::new(namespace.clone(), homeserver, store.clone());
    let auth = Auth::new(
        keys.clone(),
        store.clone(),
        cache,
        racing,
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
        for revoked in [Revoked::BeforeKeyLookup, Revoked::AfterSessionMade] {
            let s = setup(in_cache, revoked).await;
            let login = s.login().await;
            assert!(
                matches!(login, Err(AuthError::Forbidden)),
                "revoked {revoked:?} (sessions in cache: {in_cache}): {login:?}"
            );
            assert_eq!(s.live_sessions().await, 0);
        }
        // Revoked after the login: the session ends at its next request.
        let s = setup(in_cache, Revoked::Never).await;
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

#[tokio::test]
async fn requests_from_elsewhere_cannot_lock_a_key_holder_out() {
    let s = setup_with(false, Revoked::Never, AuthSettings::default()).await;
    let public = keys::encode_base64(s.key.verifying_key().as_bytes());
    let per_key = AuthSettings::default().rate_limits.challenge_per_key.max;
    // Alice's public key, asked for from many addresses (a spoofed X-Forwarded-For)…
    for n in 0..=per_key * 10 {
        let ip: IpAddr = format!("198.51.100.{n}").parse().expect("ip");
        s.auth.challenge(&public, ip).await.expect("a challenge");
    }
    // …and from one address past its limit, which still holds there.
    let attacker: IpAddr = "203.0.113.9".parse().expect("ip");
    let mut refused = 0;
    for _ in 0..=per_key {
        if let Err(AuthError::RateLimited(_)) = s.auth.challenge(&public, attacker).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "one address is limited per key");
    s.login()
        .await
        .expect("Alice still signs in from her own address");
}

#[tokio::test]
async fn an_open_stream_does_not_keep_an_idle_session_alive_in_either_mode() {
    for in_cache in [false, true] {
        let mut settings = AuthSettings {
            session_idle_secs: 1,
            ..AuthSettings::default()
        };
        settings.rate_limits.login_per_ip.max = 0;
        let s = setup_with(in_cache, Revoked::Never, settings).await;
        let session = s.login().await.expect("login");
        let who = s.auth.authenticate(&session.access_token).await;
        let hash = who.expect("a session").token_hash;
        let ended = || async { s.auth.ended(&[hash]).await.expect("check") == [hash] };
        assert!(!ended().await, "sessions in cache: {in_cache}");
        let started = std::time::Instant::now();
        while !ended().await {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a stream's session outlived its idle timeout (sessions in cache: {in_cache})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
