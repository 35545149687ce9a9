//! Backends for a test: which store and cache it runs on, and a fresh database and
//! cache namespace of its own, removed when dropped.

use chatsender::config::{DatabaseUrl, Settings};
use chatsender::startup::Backends as Connected;
use chatsender::store::Stores;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

use crate::harness::{block_on, run_id, unique};

/// Which store the daemon under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Mariadb,
}

/// Which cache the daemon under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Embedded,
    Redis,
}

/// A store and a cache backend.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    pub store: StoreKind,
    pub cache: CacheKind,
}

fn skipped(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

impl Backends {
    /// For tests of behaviour that does not depend on the backends.
    pub const SQLITE_EMBEDDED: Backends = Backends {
        store: StoreKind::Sqlite,
        cache: CacheKind::Embedded,
    };

    /// False (said loudly) when a backend this test needs was reported missing by
    /// `scripts/test`; never on CI, where `scripts/test` fails instead.
    pub fn available(self) -> bool {
        let missing = match (self.store, self.cache) {
            (StoreKind::Mariadb, _) if skipped("CHATSENDER_TEST_SKIP_MARIADB") => Some("MariaDB"),
            (_, CacheKind::Redis) if skipped("CHATSENDER_TEST_SKIP_REDIS") => Some("Redis"),
            _ => None,
        };
        if let Some(missing) = missing {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{missing} is required on CI"
            );
            eprintln!(
                "!!! NOT COVERED: {missing} is not available; this test did not run with {self:?}"
            );
            return false;
        }
        true
    }
}

/// False (said loudly) when `scripts/test` reported `what` missing by setting
/// `skip_var`; on CI that is a failure.
pub fn tool_available(skip_var: &str, what: &str) -> bool {
    if !skipped(skip_var) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is required on CI"
    );
    eprintln!("!!! NOT COVERED: {what} is not available; this test did not run");
    false
}

/// A fresh database and cache namespace, removed when dropped.
pub struct Provisioned {
    pub database: DatabaseUrl,
    pub redis_url: Option<String>,
    pub key_prefix: String,
    mysql_database: Option<String>,
    _dir: tempfile::TempDir,
}

pub fn mysql_admin_url() -> String {
    std::env::var("CHATSENDER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn redis_url() -> String {
    std::env::var("CHATSENDER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

impl Provisioned {
    /// Creates a SQLite file or a MariaDB database, and a Redis key prefix.
    pub async fn new(backends: Backends) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_prefix = format!("cstest:{}:{}:", run_id(), unique(""));
        let (database, mysql_database) = match backends.store {
            StoreKind::Sqlite => {
                let path = dir.path().join("chatsender.db");
                (
                    DatabaseUrl::Sqlite(format!("sqlite://{}", path.display())),
                    None,
                )
            }
            StoreKind::Mariadb => {
                let name = unique(&format!("cs_test_{}_", run_id()));
                let admin = mysql_admin_url();
                let mut conn = sqlx::MySqlConnection::connect(&admin)
                    .await
                    .expect("connect to MariaDB");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
                )))
                .execute(&mut conn)
                .await
                .expect("create test database");
                let mut url = url::Url::parse(&admin).expect("MariaDB URL");
                url.set_path(&name);
                (
                    DatabaseUrl::Mysql(SecretString::from(url.to_string())),
                    Some(name),
                )
            }
        };
        let redis_url = (backends.cache == CacheKind::Redis).then(redis_url);
        Self {
            database,
            redis_url,
            key_prefix,
            mysql_database,
            _dir: dir,
        }
    }

    /// `CHATSENDER__…` variables that point a daemon process at these backends.
    pub fn env_overrides(&self) -> Vec<(&'static str, String)> {
        let database = match &self.database {
            DatabaseUrl::Sqlite(url) => url.clone(),
            DatabaseUrl::Mysql(url) => url.expose_secret().to_owned(),
        };
        let mut vars = vec![
            ("CHATSENDER__DATABASE__URL", database),
            ("CHATSENDER__REDIS__KEY_PREFIX", self.key_prefix.clone()),
        ];
        if let Some(url) = &self.redis_url {
            vars.push(("CHATSENDER__REDIS__URL", url.clone()));
        }
        vars
    }

    /// `settings` pointed at these backends.
    pub fn apply(&self, settings: &mut Settings) {
        settings.database.url = self.database.clone();
        settings.database.max_connections = Some(5);
        settings.redis.url = self.redis_url.clone().map(SecretString::from);
        settings.redis.key_prefix = self.key_prefix.clone();
    }

    /// Settings of a daemon on these backends (a homeserver it never reaches).
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::parse(
            "homeserver: {url: 'http://127.0.0.1:9', server_name: localhost}\n\
             appservice: {address: 'http://127.0.0.1:9', as_token: a, hs_token: h}\n",
        )
        .expect("settings");
        self.apply(&mut settings);
        settings
    }

    /// The stores of these backends, migrated.
    pub async fn stores(&self) -> Stores {
        chatsender::store::connect(&self.settings().database)
            .await
            .expect("connect the store")
    }

    /// Everything the daemon connects to on these backends.
    pub async fn backends(&self) -> Connected {
        Connected::connect(&self.settings())
            .await
            .expect("connect the backends")
    }

    /// Drops the MariaDB database and deletes the Redis keys (what fails is reported;
    /// `scripts/test` sweeps the run's leftovers at its end).
    async fn cleanup(&self) {
        if let Some(name) = &self.mysql_database {
            let dropped = async {
                let mut conn = sqlx::MySqlConnection::connect(&mysql_admin_url()).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS `{name}`"
                )))
                .execute(&mut conn)
                .await
            };
            if let Err(error) = dropped.await {
                eprintln!("could not drop test database {name}: {error}");
            }
        }
        if let Err(error) = self.wipe_redis().await {
            eprintln!("could not delete test keys {}*: {error}", self.key_prefix);
        }
    }
}

impl Provisioned {
    /// Deletes every Redis key of this namespace, as a Redis restarted without its
    /// data would have none.
    pub async fn wipe_redis(&self) -> Result<(), redis::RedisError> {
        let Some(url) = &self.redis_url else {
            return Ok(());
        };
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.key_prefix))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
        }
        Ok(())
    }
}

impl Drop for Provisioned {
    fn drop(&mut self) {
        block_on(self.cleanup());
    }
}

// --- Which backends a test runs on -------------------------------------------------

/// Declares one test per store × cache for each async fn `name(Backends)`: for what
/// the backends change.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::provision::{Backends, CacheKind, StoreKind};
                async fn run(store: StoreKind, cache: CacheKind) {
                    let backends = Backends { store, cache };
                    if backends.available() {
                        super::$name(backends).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn sqlite_embedded() { run(StoreKind::Sqlite, CacheKind::Embedded).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn sqlite_redis() { run(StoreKind::Sqlite, CacheKind::Redis).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn mariadb_embedded() { run(StoreKind::Mariadb, CacheKind::Embedded).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn mariadb_redis() { run(StoreKind::Mariadb, CacheKind::Redis).await }
            }
        )*
    };
}

/// Declares, for each async fn `name(Backends)`, one test on the one store × cache
/// it is about (`name: mariadb_embedded(Mariadb, Embedded)`): for what only those
/// backends have, such as an outage of MariaDB or of Redis.
#[macro_export]
macro_rules! on_backend {
    ($($name:ident: $test:ident($store:ident, $cache:ident)),* $(,)?) => {
        $(
            mod $name {
                use $crate::provision::{Backends, CacheKind, StoreKind};
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn $test() {
                    let backends = Backends { store: StoreKind::$store, cache: CacheKind::$cache };
                    if backends.available() {
                        super::$name(backends).await;
                    }
                }
            }
        )*
    };
}

/// Declares one test on SQLite with the embedded cache for each async fn
/// `name(Backends)`: for what the backends do not change.
#[macro_export]
macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "integration test: needs Synapse, MariaDB and Redis; run ./scripts/test"]
                async fn sqlite_embedded() {
                    super::$name($crate::provision::Backends::SQLITE_EMBEDDED).await
                }
            }
        )*
    };
}
