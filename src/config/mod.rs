//! Configuration: a YAML file layered with `CHATSENDER__SECTION__KEY` environment overrides.
//!
//! Every key is documented in `config.example.yaml`. Unknown keys and bad values are
//! rejected with the key's path (`homeserver.url: …`), so a typo never silently falls
//! back to a default.

mod fields;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ruma::{OwnedServerName, OwnedUserId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use fields::*;

/// The longest lifetime or window the config accepts (a year).
const MAX_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// The environment variable that names the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "CHATSENDER_CONFIG";

/// The whole configuration of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub homeserver: HomeserverSettings,
    pub appservice: AppserviceSettings,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub web: WebSettings,
    #[serde(default)]
    pub log: LogSettings,
}

/// How the daemon reaches Synapse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverSettings {
    #[serde(deserialize_with = "http_url")]
    pub url: Url,
    pub server_name: OwnedServerName,
}

/// The application-service registration shared with Synapse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceSettings {
    #[serde(default = "default_appservice_id", deserialize_with = "non_empty")]
    pub id: String,
    /// How Synapse reaches the daemon: the registration's `url`.
    #[serde(deserialize_with = "http_url")]
    pub address: Url,
    #[serde(default = "empty_secret")]
    pub as_token: SecretString,
    #[serde(default = "empty_secret")]
    pub hs_token: SecretString,
    #[serde(default = "default_bot_localpart", deserialize_with = "localpart")]
    pub bot_localpart: String,
    #[serde(default = "default_user_prefix", deserialize_with = "localpart")]
    pub user_prefix: String,
}

/// Where the daemon keeps its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(default = "default_database_url")]
    pub url: DatabaseUrl,
    /// Connections in the pool; unset: 4 for SQLite (one writer at a time, and each
    /// connection holds its own page cache and worker thread; from 2 on, one of them
    /// records and feeds the pushed events), 10 for MariaDB.
    pub max_connections: Option<u32>,
    /// Days received events, transactions and sent messages are kept (the homeserver
    /// keeps them anyway): long enough to recognise a redelivery.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// How long a request waits for a MariaDB connection before it is answered 503
    /// (SQLite, a local file, waits for its lock instead).
    #[serde(default = "default_storage_timeout_ms")]
    pub timeout_ms: u64,
}

/// The database backend chosen by the URL's scheme.
#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    /// `sqlite://path/to/file.db` (relative to the working directory) or `sqlite::memory:`.
    Sqlite(String),
    /// `mysql://user:pass@host:port/db` (MariaDB or MySQL); `mariadb://` is accepted too.
    Mysql(SecretString),
}

/// The optional shared cache and event bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Empty: embedded mode (no Redis).
    #[serde(default, deserialize_with = "redis_url")]
    pub url: Option<SecretString>,
    /// Prepended to every key, so several deployments can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long a Redis command may take, connecting included, before the request is
    /// answered 503.
    #[serde(default = "default_storage_timeout_ms")]
    pub timeout_ms: u64,
}

/// Key login: challenges, sessions and rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The web client's origin (`scheme://host[:port]`), bound into every challenge
    /// and required in `Origin` for cookie-authenticated unsafe requests.
    #[serde(default = "default_origin", deserialize_with = "origin")]
    pub origin: String,
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_secs: u64,
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: u64,
    #[serde(default = "default_session_max")]
    pub session_max_secs: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (behind nginx).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    #[serde(default)]
    pub rate_limits: RateLimits,
}

/// Rate limits of the login endpoints; `max: 0` disables one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default = "default_challenge_per_ip")]
    pub challenge_per_ip: RateLimit,
    #[serde(default = "default_challenge_per_key")]
    pub challenge_per_key: RateLimit,
    #[serde(default = "default_login_per_ip")]
    pub login_per_ip: RateLimit,
}

/// At most `max` requests in a window of `window_secs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    #[serde(default = "default_window")]
    pub window_secs: u64,
}

/// Caps on what clients may hold open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Connections open at once; past it a new one is closed at once.
    #[serde(default = "default_max_open_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head, from when its connection
    /// is ready for one: a half-sent header or an idle keep-alive connection is
    /// closed after it.
    #[serde(default = "default_request_header_timeout")]
    pub request_header_timeout_secs: u64,
    /// Live streams one session may hold open on a daemon.
    #[serde(default = "default_streams_per_session")]
    pub max_streams_per_session: usize,
    /// Live streams one user may hold open on a daemon, over all their sessions.
    #[serde(default = "default_streams_per_user")]
    pub max_streams_per_user: usize,
}

/// The web client, when the daemon serves it itself (the embedded default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// The built web client (`web/dist`); empty: not served (nginx serves it).
    #[serde(default, deserialize_with = "static_dir")]
    pub static_dir: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl Settings {
    /// Reads `path` and applies `CHATSENDER__…` environment overrides.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "{}: no such config file (copy config.example.yaml, or pass -c / set {CONFIG_ENV})",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        };
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    /// Parses YAML `text` and applies `CHATSENDER__…` environment overrides.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Yaml))
            .add_source(
                config::Environment::with_prefix("CHATSENDER")
                    .prefix_separator("__")
                    // Values stay strings (a token of digits stays as written);
                    // numbers and booleans are parsed where a key expects them.
                    .separator("__"),
            )
            .build()
            .context("not valid YAML")?;
        Self::from_source(raw)
    }

    /// Deserializes from any `config` source, naming the path of a bad key.
    fn from_source(raw: config::Config) -> anyhow::Result<Self> {
        let settings: Settings = serde_path_to_error::deserialize(raw).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                anyhow::anyhow!("{inner}")
            } else {
                anyhow::anyhow!("{path}: {inner}")
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            anyhow::bail!("log.level: `{}` is not a log filter: {e}", self.log.level);
        }
        let auth = &self.auth;
        for (key, value) in [
            ("challenge_ttl_secs", auth.challenge_ttl_secs),
            ("session_idle_secs", auth.session_idle_secs),
            ("session_max_secs", auth.session_max_secs),
        ] {
            if value == 0 || value > MAX_LIFETIME_SECS {
                anyhow::bail!("auth.{key}: must be 1 to {MAX_LIFETIME_SECS} seconds");
            }
        }
        let limits = &auth.rate_limits;
        for (key, limit) in [
            ("challenge_per_ip", limits.challenge_per_ip),
            ("challenge_per_key", limits.challenge_per_key),
            ("login_per_ip", limits.login_per_ip),
        ] {
            if limit.window_secs == 0 || limit.window_secs > MAX_LIFETIME_SECS {
                anyhow::bail!(
                    "auth.rate_limits.{key}.window_secs: must be 1 to {MAX_LIFETIME_SECS}"
                );
            }
        }
        if self.database.max_connections == Some(0) {
            anyhow::bail!("database.max_connections: must be at least 1");
        }
        for (key, value) in [
            ("database.timeout_ms", self.database.timeout_ms),
            ("redis.timeout_ms", self.redis.timeout_ms),
        ] {
            if !(10..=60_000).contains(&value) {
                anyhow::bail!("{key}: must be 10 to 60000 milliseconds");
            }
        }
        if !(1..=3650).contains(&self.database.retention_days) {
            anyhow::bail!("database.retention_days: must be 1 to 3650");
        }
        for (key, value) in [
            ("max_connections", self.server.max_connections),
            (
                "max_streams_per_session",
                self.server.max_streams_per_session,
            ),
            ("max_streams_per_user", self.server.max_streams_per_user),
        ] {
            if value == 0 {
                anyhow::bail!("server.{key}: must be at least 1");
            }
        }
        let header_timeout = self.server.request_header_timeout_secs;
        if header_timeout == 0 || header_timeout > 3600 {
            anyhow::bail!("server.request_header_timeout_secs: must be 1 to 3600 seconds");
        }
        if !self
            .appservice
            .bot_localpart
            .starts_with(&self.appservice.user_prefix)
        {
            anyhow::bail!(
                "appservice.bot_localpart: `{}` must start with appservice.user_prefix `{}` so the bot is in the namespace",
                self.appservice.bot_localpart,
                self.appservice.user_prefix
            );
        }
        self.appservice.bot_user_id(&self.homeserver.server_name)?;
        Ok(())
    }

    /// Fails unless both appservice tokens are set (what `serve` needs).
    pub fn require_tokens(&self) -> anyhow::Result<()> {
        for (name, token) in [
            ("as_token", &self.appservice.as_token),
            ("hs_token", &self.appservice.hs_token),
        ] {
            if token.expose_secret().is_empty() {
                anyhow::bail!(
                    "appservice.{name}: empty; run `chatsender registration` to generate the tokens and Synapse's registration file"
                );
            }
        }
        Ok(())
    }
}

impl AppserviceSettings {
    /// The user the appservice acts as when no puppet is named.
    pub fn bot_user_id(&self, server_name: &ruma::ServerName) -> anyhow::Result<OwnedUserId> {
        UserId::parse(format!("@{}:{server_name}", self.bot_localpart))
            .context("appservice.bot_localpart: not a valid Matrix user localpart")
    }
}

/// The config path: `-c`, else `$CHATSENDER_CONFIG`, else `./config.yaml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> anyhow::Result<Settings> {
        Settings::parse(yaml)
    }

    const MINIMAL: &str = "homeserver: {url: 'http://127.0.0.1:8008', server_name: localhost}\nappservice: {address: 'http://127.0.0.1:8000'}\n";

    #[test]
    fn minimal_config_takes_the_embedded_defaults() {
        let s = parse(MINIMAL).expect("minimal config");
        assert!(
            matches!(s.database.url, DatabaseUrl::Sqlite(ref u) if u == "sqlite://data/chatsender.db")
        );
        assert!(s.redis.url.is_none());
        assert_eq!(s.appservice.user_prefix, "chatsender_");
        assert_eq!(s.listen, default_listen());
        assert!(
            s.require_tokens().is_err(),
            "empty tokens must not be served"
        );
    }

    #[test]
    fn a_bad_log_level_is_named() {
        let err =
            parse(&format!("{MINIMAL}log: {{level: 'chatsender=loud'}}\n")).expect_err("bad level");
        assert!(format!("{err:#}").starts_with("log.level: "), "{err:#}");
        parse(&format!(
            "{MINIMAL}log: {{level: 'info,chatsender=debug'}}\n"
        ))
        .expect("a good filter");
    }

    #[test]
    fn the_example_config_is_valid() {
        let s = parse(include_str!("../../config.example.yaml")).expect("config.example.yaml");
        assert_eq!(s.auth.origin, "http://127.0.0.1:8000");
        assert_eq!(s.auth.rate_limits.challenge_per_key.max, 10);
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_only() {
        let s = parse(&format!(
            "{MINIMAL}auth: {{origin: 'HTTPS://Chat.Example.org:443'}}\n"
        ))
        .expect("origin");
        assert_eq!(s.auth.origin, "https://chat.example.org");
        let err = parse(&format!(
            "{MINIMAL}auth: {{origin: 'https://chat.example.org/app'}}\n"
        ))
        .expect_err("path");
        assert!(format!("{err:#}").starts_with("auth.origin: "), "{err:#}");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = parse(&format!(
            "{MINIMAL}database: {{url: 'sqlite::memory:', colour: red}}\n"
        ))
        .expect_err("unknown key");
        let msg = format!("{err:#}");
        assert!(msg.contains("database") && msg.contains("colour"), "{msg}");
    }

    #[test]
    fn bad_urls_are_named_with_their_path() {
        let err = parse("homeserver: {url: 'not a url', server_name: localhost}\nappservice: {address: 'http://127.0.0.1:8000'}\n")
            .expect_err("bad homeserver url");
        assert!(
            format!("{err:#}").starts_with("homeserver.url: "),
            "{err:#}"
        );

        let err =
            parse(&format!("{MINIMAL}database: {{url: 'postgres://x/y'}}\n")).expect_err("bad db");
        assert!(format!("{err:#}").starts_with("database.url: "), "{err:#}");

        let err = parse(&format!(
            "{MINIMAL}redis: {{url: 'http://127.0.0.1:6379'}}\n"
        ))
        .expect_err("bad redis");
        assert!(format!("{err:#}").starts_with("redis.url: "), "{err:#}");
        let err = parse(&format!(
            "{MINIMAL}redis: {{url: 'rediss://127.0.0.1:6380'}}\n"
        ))
        .expect_err("tls");
        assert!(format!("{err:#}").contains("not supported"), "{err:#}");
    }

    #[test]
    fn bad_localparts_and_numbers_are_refused() {
        let err = parse("homeserver: {url: 'http://h', server_name: localhost}\nappservice: {address: 'http://h', user_prefix: 'Bad Prefix'}\n")
            .expect_err("bad prefix");
        assert!(
            format!("{err:#}").starts_with("appservice.user_prefix: "),
            "{err:#}"
        );
        let err = parse(&format!("{MINIMAL}database: {{max_connections: lots}}\n"))
            .expect_err("bad number");
        assert!(
            format!("{err:#}").contains("database.max_connections"),
            "{err:#}"
        );
        for (section, bad, named) in [
            ("server", "{max_connections: 0}", "server.max_connections"),
            (
                "server",
                "{max_streams_per_user: 0}",
                "server.max_streams_per_user",
            ),
            (
                "server",
                "{request_header_timeout_secs: 0}",
                "server.request_header_timeout_secs",
            ),
            ("database", "{retention_days: 0}", "database.retention_days"),
            ("redis", "{timeout_ms: 1}", "redis.timeout_ms"),
        ] {
            let err = parse(&format!("{MINIMAL}{section}: {bad}\n")).expect_err(named);
            assert!(format!("{err:#}").starts_with(named), "{err:#}");
        }
    }
}
