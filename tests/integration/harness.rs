//! The integration-test harness: a real Synapse (started by `scripts/test`), the
//! daemon in process, and a fresh database and cache namespace per test.
//!
//! `scripts/test` generates several appservice registrations ("slots") with the
//! daemon's own `chatsender registration` and starts one Synapse that loads them all.
//! A test leases a free slot (a file lock, so it works across test processes), and
//! runs its daemon on the slot's port: Synapse caches registrations, including the
//! URL it pushes to, when it starts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chatsender::config::{DatabaseUrl, Settings};
use chatsender::startup::Application;
use chatsender::store::Store;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

/// What `scripts/test` set up.
#[derive(Debug, Deserialize)]
pub struct TestEnv {
    pub synapse_url: String,
    pub slots: usize,
    pub dir: PathBuf,
    pub synapse_python: PathBuf,
    pub synapse_helper: PathBuf,
    /// A Python with matrix-nio, and the script that drives it.
    pub nio_python: PathBuf,
    pub nio_client: PathBuf,
}

/// The environment, read once.
pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        chatsender::install_tls_provider();
        let path = std::env::var_os("CHATSENDER_TEST_ENV").map(PathBuf::from).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-env/env.json")
        });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. Integration tests need the Synapse that ./scripts/test starts; run ./scripts/test",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("env.json")
    })
}

/// This test run's id (set by `scripts/test`), part of every database name and Redis
/// prefix so the run can remove what a failed test left behind.
pub fn run_id() -> String {
    std::env::var("CHATSENDER_TEST_RUN").unwrap_or_else(|_| "dev".into())
}

/// A random lowercase suffix for names that must not collide across tests and runs.
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}{n:016x}")
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- Backends --------------------------------------------------------------------

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

/// A fresh database and cache namespace, removed by [`Provisioned::cleanup`].
pub struct Provisioned {
    pub database: DatabaseUrl,
    pub redis_url: Option<String>,
    pub key_prefix: String,
    mysql_database: Option<String>,
    _dir: tempfile::TempDir,
}

fn mysql_admin_url() -> String {
    std::env::var("CHATSENDER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn redis_url() -> String {
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

    /// Drops the MariaDB database and deletes the Redis keys.
    pub async fn cleanup(self) {
        if let Some(name) = &self.mysql_database {
            let mut conn = sqlx::MySqlConnection::connect(&mysql_admin_url())
                .await
                .expect("MariaDB");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS `{name}`"
            )))
            .execute(&mut conn)
            .await
            .expect("drop test database");
        }
        if let Some(url) = &self.redis_url {
            let client = redis::Client::open(url.as_str()).expect("redis url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.key_prefix))
                .query_async(&mut conn)
                .await
                .expect("KEYS");
            if !keys.is_empty() {
                let _: u64 = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .expect("DEL");
            }
        }
    }
}

// --- Slots and daemons -----------------------------------------------------------

/// A leased appservice registration known to the shared Synapse.
pub struct Slot {
    pub settings: Settings,
    pub config_path: PathBuf,
    _lock: File,
}

impl Slot {
    /// Waits for a free slot and takes it until dropped.
    pub async fn lease() -> Slot {
        let env = env();
        wait_until(
            "an appservice slot is free",
            Duration::from_secs(600),
            || async {
                for i in 1..=env.slots {
                    let lock =
                        File::create(env.dir.join(format!("slot{i}.lock"))).expect("lock file");
                    if lock.try_lock().is_ok() {
                        let config_path = env.dir.join(format!("slot{i}.yaml"));
                        let settings = Settings::load(&config_path).expect("slot config");
                        return Some(Slot {
                            settings,
                            config_path,
                            _lock: lock,
                        });
                    }
                }
                None
            },
        )
        .await
    }

    /// `@{prefix}{name}:{server}`, a user in this slot's namespace.
    pub fn puppet_id(&self, name: &str) -> ruma::OwnedUserId {
        ruma::UserId::parse(format!(
            "@{}{name}:{}",
            self.settings.appservice.user_prefix, self.settings.homeserver.server_name
        ))
        .expect("puppet id")
    }
}

/// Settings for a daemon of `slot` on the provisioned backends.
pub fn daemon_settings(slot: &Slot, provisioned: &Provisioned) -> Settings {
    let mut settings = slot.settings.clone();
    settings.database.url = provisioned.database.clone();
    settings.database.max_connections = 5;
    settings.redis.url = provisioned.redis_url.clone().map(SecretString::from);
    settings.redis.key_prefix = provisioned.key_prefix.clone();
    // Tests log in many times from one address; the rate-limit test sets its own.
    let off = chatsender::config::RateLimit {
        max: 0,
        window_secs: 60,
    };
    settings.auth.rate_limits.challenge_per_ip = off;
    settings.auth.rate_limits.challenge_per_key = off;
    settings.auth.rate_limits.login_per_ip = off;
    settings
}

/// Runs `chatsender -c <slot config> keygen ARGS` on the provisioned backends.
pub fn keygen(slot: &Slot, provisioned: &Provisioned, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatsender"))
        .arg("-c")
        .arg(&slot.config_path)
        .arg("keygen")
        .args(args)
        .envs(provisioned.env_overrides())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chatsender keygen")
}

/// A daemon running in this process.
pub struct Daemon {
    pub base_url: String,
    pub store: Arc<dyn Store>,
    pub homeserver: Arc<dyn chatsender::matrix::Homeserver>,
    pub hs_token: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Builds and serves a daemon with `settings`.
    pub async fn start(settings: Settings) -> Daemon {
        chatsender::telemetry::init_logs(&settings.log);
        let hs_token = settings.appservice.hs_token.expose_secret().to_owned();
        let app = Application::build(settings).await.expect("daemon builds");
        let base_url = format!("http://{}", app.local_addr().expect("bound"));
        let (store, homeserver) = (app.store(), app.homeserver());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        Daemon {
            base_url,
            store,
            homeserver,
            hs_token,
            stop,
            task,
        }
    }

    /// Starts a daemon and waits until `/ready` says ready.
    pub async fn start_ready(settings: Settings) -> Daemon {
        let daemon = Self::start(settings).await;
        daemon.wait_ready().await;
        daemon
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        let url = format!("{}/ready", self.base_url);
        wait_until("the daemon is ready", Duration::from_secs(30), || async {
            let r = http().get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }

    /// Shuts down gracefully and waits until it has stopped.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("daemon task")
            .expect("daemon ran without error");
    }

    /// Pushes a transaction as Synapse would, with this daemon's hs_token.
    pub async fn push(&self, txn_id: &str, body: &Value) -> reqwest::Response {
        http()
            .put(format!(
                "{}/_matrix/app/v1/transactions/{txn_id}",
                self.base_url
            ))
            .bearer_auth(&self.hs_token)
            .json(body)
            .send()
            .await
            .expect("push transaction")
    }
}

/// A shared HTTP client.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        chatsender::install_tls_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
    })
}

// --- Ordinary Matrix users ---------------------------------------------------------

/// An ordinary (password) user on the shared Synapse, driven over the Client-Server API.
pub struct MatrixUser {
    pub user_id: String,
    pub token: String,
    base: String,
    since: Option<String>,
}

impl MatrixUser {
    /// Registers a new user with a password.
    pub async fn register(name_prefix: &str) -> MatrixUser {
        let base = env().synapse_url.clone();
        let username = unique(name_prefix);
        let body = json!({
            "username": username, "password": "correct horse battery staple",
            "auth": {"type": "m.login.dummy"}, "inhibit_login": false,
        });
        let r: Value = http()
            .post(format!("{base}/_matrix/client/v3/register"))
            .json(&body)
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register answer");
        let token = r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("registration failed: {r}"));
        MatrixUser {
            user_id: r["user_id"].as_str().expect("user_id").to_owned(),
            token: token.to_owned(),
            base,
            since: None,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = http()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("client request");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} answered {status}: {value}");
        value
    }

    /// Joins a room (after an invite).
    pub async fn join(&self, room_id: &str) {
        let path = format!("/_matrix/client/v3/join/{}", urlencode(room_id));
        self.call(reqwest::Method::POST, &path, Some(json!({})))
            .await;
    }

    /// Sends a text message; returns its event id.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            urlencode(room_id),
            unique("t")
        );
        let r = self
            .call(
                reqwest::Method::PUT,
                &path,
                Some(json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        r["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Syncs until `find` picks something out of a sync answer.
    pub async fn sync_until<T>(
        &mut self,
        what: &str,
        mut find: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut path = "/_matrix/client/v3/sync?timeout=1000".to_owned();
            if let Some(since) = &self.since {
                path.push_str(&format!("&since={since}"));
            }
            let r = self.call(reqwest::Method::GET, &path, None).await;
            self.since = r["next_batch"].as_str().map(str::to_owned);
            if let Some(found) = find(&r) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw {what} in /sync",
                self.user_id
            );
        }
    }
}

/// Percent-encodes a path segment.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// --- Extra Synapse instances -------------------------------------------------------

/// A Synapse of a test's own (for tests that stop or delay the homeserver); stopped
/// by its PID when dropped.
pub struct OwnSynapse {
    dir: PathBuf,
}

impl OwnSynapse {
    /// Starts Synapse on `port` with the given registration files.
    pub fn start(dir: &Path, port: u16, registrations: &[PathBuf]) -> OwnSynapse {
        let env = env();
        let mut cmd = Command::new(&env.synapse_python);
        cmd.arg(&env.synapse_helper)
            .arg("start")
            .arg("--open-registration")
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string());
        for r in registrations {
            cmd.arg("--registration").arg(r);
        }
        let out = cmd.output().expect("run the Synapse helper");
        assert!(
            out.status.success(),
            "Synapse did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OwnSynapse {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for OwnSynapse {
    fn drop(&mut self) {
        let env = env();
        let _ = Command::new(&env.synapse_python)
            .arg(&env.synapse_helper)
            .args(["stop", "--dir"])
            .arg(&self.dir)
            .status();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// --- The backend matrix ------------------------------------------------------------

/// Declares one `#[tokio::test]` per store × cache for each async fn `name(Backends)`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::{Backends, CacheKind, StoreKind};
                async fn run(store: StoreKind, cache: CacheKind) {
                    let backends = Backends { store, cache };
                    if backends.available() {
                        super::$name(backends).await;
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_embedded() { run(StoreKind::Sqlite, CacheKind::Embedded).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_redis() { run(StoreKind::Sqlite, CacheKind::Redis).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb_embedded() { run(StoreKind::Mariadb, CacheKind::Embedded).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb_redis() { run(StoreKind::Mariadb, CacheKind::Redis).await }
            }
        )*
    };
}

// --- Server-Sent Events ------------------------------------------------------------

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A live `GET /api/v1/events` connection.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The id of the last event read, for reconnecting.
    pub last_id: Option<String>,
    /// Comment lines read (`: keepalive`).
    pub comments: Vec<String>,
}

impl EventStream {
    /// Connects as `token`, resuming after `last_event_id` if given.
    pub async fn connect(base_url: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = http()
            .get(format!("{base_url}/api/v1/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200, "GET /api/v1/events");
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            last_id: last_event_id.map(str::to_owned),
            comments: Vec::new(),
        }
    }

    /// The next event, or `None` if none comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        self.comments.push(comment.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // A comment (keepalive).
                }
                if id.is_some() {
                    self.last_id.clone_from(&id);
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.ok()?).replace("\r\n", "\n"));
        }
    }

    /// Reads events until one matches, failing after 30 s; returns it and what came before.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&SseEvent) -> bool,
    ) -> (SseEvent, Vec<SseEvent>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await.unwrap_or_else(|| {
                panic!("no {what} on the event stream within 30 s; saw {before:?}")
            });
            if matches(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}
