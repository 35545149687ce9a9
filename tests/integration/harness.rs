//! The integration-test harness: [`TestApp::spawn`] runs a daemon in process against
//! the real Synapse that `scripts/test` started, on a fresh database and cache
//! namespace, and removes them again when it is dropped.
//!
//! `scripts/test` generates several appservice registrations ("slots") with the
//! daemon's own `chatsender registration` and starts one Synapse that loads them all.
//! A test leases a free slot (a file lock, so it works across test processes), and
//! runs its daemon on the slot's port: Synapse caches registrations, including the
//! URL it pushes to, when it starts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chatsender::config::{RateLimit, Settings};
use chatsender::identity::{Namespace, Puppets};
use chatsender::live::Live;
use chatsender::matrix::Homeserver;
use chatsender::startup::Application;
use chatsender::store::Stores;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use rand::Rng;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use crate::clients::{EventStream, MatrixUser, User, public_b64, sign_challenge};
pub use crate::provision::{Backends, CacheKind, Provisioned};

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

/// Runs `work` to completion from synchronous code inside a test (a `Drop`).
pub fn block_on<F: std::future::Future<Output = ()>>(work: F) {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work));
}

/// A shared HTTP client.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        chatsender::install_tls_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // nginx in the tests has a certificate made for the run.
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("client")
    })
}

/// Percent-encodes a path segment.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

    /// This slot's namespace.
    pub fn namespace(&self) -> Namespace {
        Namespace::of(&self.settings).expect("namespace")
    }

    /// `@{prefix}{name}:{server}`, a user in this slot's namespace.
    pub fn puppet_id(&self, name: &str) -> ruma::OwnedUserId {
        self.namespace().puppet(name).expect("puppet id")
    }

    /// Settings for a daemon of this slot on the provisioned backends, with the login
    /// rate limits off (tests log in many times from one address).
    pub fn daemon_settings(&self, provisioned: &Provisioned) -> Settings {
        let mut settings = self.settings.clone();
        provisioned.apply(&mut settings);
        let off = RateLimit {
            max: 0,
            window_secs: 60,
        };
        settings.auth.rate_limits.challenge_per_ip = off;
        settings.auth.rate_limits.challenge_per_key = off;
        settings.auth.rate_limits.login_per_ip = off;
        settings
    }
}

/// A daemon running in this process, stopped when dropped.
pub struct Daemon {
    pub base_url: String,
    pub stores: Stores,
    pub homeserver: Arc<dyn Homeserver>,
    pub puppets: Puppets,
    pub live: Live,
    pub hs_token: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The slot of a second daemon, released with it.
    _slot: Option<Slot>,
}

impl Daemon {
    /// Builds and serves a daemon with `settings`.
    pub async fn start(settings: Settings) -> Daemon {
        chatsender::telemetry::init_logs(&settings.log);
        let hs_token = settings.appservice.hs_token.expose_secret().to_owned();
        let app = Application::build(settings).await.expect("daemon builds");
        let base_url = format!("http://{}", app.local_addr().expect("bound"));
        let (stores, homeserver, puppets, live) =
            (app.stores(), app.homeserver(), app.puppets(), app.live());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        Daemon {
            base_url,
            stores,
            homeserver,
            puppets,
            live,
            hs_token,
            stop,
            task: Some(task),
            _slot: None,
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

    /// Shuts down gracefully and waits until it has stopped, cleanly.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("daemon task")
                .expect("daemon ran without error");
        }
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            block_on(async {
                let _ = task.await;
            });
        }
    }
}

/// A daemon against the shared Synapse on fresh backends, with a scratch directory;
/// everything is stopped and removed when it is dropped.
pub struct TestApp {
    daemon: Option<Daemon>,
    pub slot: Slot,
    pub provisioned: Provisioned,
    pub dir: tempfile::TempDir,
    tune: Arc<dyn Fn(&mut Settings) + Send + Sync>,
}

impl TestApp {
    /// A ready daemon on fresh `backends`.
    pub async fn spawn(backends: Backends) -> TestApp {
        Self::spawn_with(backends, |_| {}).await
    }

    /// A ready daemon on fresh `backends`, with settings changed by `tune` (also on
    /// every restart).
    pub async fn spawn_with(
        backends: Backends,
        tune: impl Fn(&mut Settings) + Send + Sync + 'static,
    ) -> TestApp {
        let mut app = Self::prepare(backends, tune).await;
        app.start().await;
        app
    }

    /// A slot and fresh `backends`, with no daemon started yet (see [`Self::start`]).
    pub async fn prepare(
        backends: Backends,
        tune: impl Fn(&mut Settings) + Send + Sync + 'static,
    ) -> TestApp {
        TestApp {
            daemon: None,
            slot: Slot::lease().await,
            provisioned: Provisioned::new(backends).await,
            dir: tempfile::tempdir().expect("tempdir"),
            tune: Arc::new(tune),
        }
    }

    /// The settings the daemon runs with.
    pub fn settings(&self) -> Settings {
        let mut settings = self.slot.daemon_settings(&self.provisioned);
        (self.tune)(&mut settings);
        settings
    }

    /// The running daemon.
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon is running")
    }

    /// Stops the daemon (the backends stay).
    pub async fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop().await;
        }
    }

    /// Starts the daemon (again) and waits until it is ready.
    pub async fn start(&mut self) {
        self.daemon = Some(Daemon::start_ready(self.settings()).await);
    }

    /// A second daemon on the same backends (another slot), as in a scale-out.
    pub async fn another_daemon(&self) -> Daemon {
        let slot = Slot::lease().await;
        let mut settings = slot.daemon_settings(&self.provisioned);
        (self.tune)(&mut settings);
        let mut daemon = Daemon::start_ready(settings).await;
        daemon._slot = Some(slot);
        daemon
    }

    /// Runs `chatsender -c <slot config> keygen ARGS` on these backends.
    pub fn keygen(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_chatsender"))
            .arg("-c")
            .arg(&self.slot.config_path)
            .arg("keygen")
            .args(args)
            .envs(self.provisioned.env_overrides())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run chatsender keygen")
    }

    /// `keygen generate 1 --json` (with extra args); returns the key and its PEM file.
    pub fn generate(&self, extra: &[&str]) -> (Value, SigningKey) {
        let out = self.dir.path().to_str().expect("utf-8 path");
        let mut args = vec!["generate", "1", "--json", "--out", out];
        args.extend_from_slice(extra);
        let output = self.keygen(&args);
        assert!(
            output.status.success(),
            "keygen generate: {}",
            stderr(&output)
        );
        let keys: Vec<Value> = serde_json::from_slice(&output.stdout).expect("generate --json");
        let key = keys.into_iter().next().expect("one key");
        let pem =
            std::fs::read_to_string(key["private_key_file"].as_str().expect("file")).expect("pem");
        (key, SigningKey::from_pkcs8_pem(&pem).expect("PKCS#8 PEM"))
    }

    /// The web client's origin.
    pub fn origin(&self) -> String {
        self.slot.settings.auth.origin.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon().base_url)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = http()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn challenge(&self, public_key: &str) -> (StatusCode, Value) {
        self.post("/api/v1/auth/challenge", &json!({"public_key": public_key}))
            .await
    }

    pub async fn login_raw(&self, challenge_id: &str, signature: &str) -> (StatusCode, Value) {
        let body = json!({"challenge_id": challenge_id, "signature": signature});
        self.post("/api/v1/auth/login", &body).await
    }

    /// Answers `challenge` with `key`'s signature.
    pub async fn answer(&self, key: &SigningKey, challenge: &Value) -> (StatusCode, Value) {
        let id = challenge["challenge_id"].as_str().expect("a challenge id");
        self.login_raw(id, &sign_challenge(key, challenge)).await
    }

    /// A full login with `key`; returns the access token.
    pub async fn login(&self, key: &SigningKey) -> String {
        let (status, challenge) = self.challenge(&public_b64(key)).await;
        assert_eq!(status, 200, "{challenge}");
        let (status, session) = self.answer(key, &challenge).await;
        assert_eq!(status, 200, "{session}");
        session["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn me(&self, token: &str) -> (StatusCode, Value) {
        let r = http()
            .get(self.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("me");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A new ChatSender user called `name…`, logged in.
    pub async fn user(&self, name: &str) -> User {
        let name = unique(name);
        let (key_json, key) = self.generate(&["--name", &name]);
        let token = self.login(&key).await;
        User {
            base: self.daemon().base_url.clone(),
            token,
            user_id: key_json["user_id"].as_str().expect("user").to_owned(),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The daemon stops before its slot and backends go.
        drop(self.daemon.take());
    }
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

impl OwnSynapse {
    /// Starts Synapse on `port` with a homeserver.yaml written elsewhere.
    pub fn start_with_config(dir: &Path, port: u16, config: &Path) -> OwnSynapse {
        let env = env();
        let out = Command::new(&env.synapse_python)
            .arg(&env.synapse_helper)
            .args(["start", "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run the Synapse helper");
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
