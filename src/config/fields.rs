//! How each config value is read: URL and name checks, and the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, de::Error as _};
use url::Url;

use super::{
    AuthSettings, DatabaseSettings, DatabaseUrl, LogFormat, LogSettings, RateLimit, RateLimits,
    RedisSettings, ServerSettings,
};

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let scheme = s.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite(s.to_owned())),
            "mysql" | "mariadb" => {
                let url = Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
                if url.path().trim_start_matches('/').is_empty() {
                    return Err(
                        "the MariaDB URL names no database (mysql://user:pass@host/DATABASE)"
                            .into(),
                    );
                }
                Ok(Self::Mysql(SecretString::from(
                    s.replacen("mariadb:", "mysql:", 1),
                )))
            }
            _ => Err(format!(
                "`{s}` is neither sqlite://… nor mysql://… (MariaDB)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: default_database_url(),
            max_connections: None,
            retention_days: default_retention_days(),
            timeout_ms: default_storage_timeout_ms(),
        }
    }
}

pub(super) fn default_storage_timeout_ms() -> u64 {
    1000
}

pub(super) fn default_retention_days() -> u32 {
    7
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: default_key_prefix(),
            timeout_ms: default_storage_timeout_ms(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            origin: default_origin(),
            challenge_ttl_secs: default_challenge_ttl(),
            session_idle_secs: default_session_idle(),
            session_max_secs: default_session_max(),
            trust_forwarded_for: false,
            rate_limits: RateLimits::default(),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            challenge_per_ip: default_challenge_per_ip(),
            challenge_per_key: default_challenge_per_key(),
            login_per_ip: default_login_per_ip(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: default_max_open_connections(),
            request_header_timeout_secs: default_request_header_timeout(),
            max_streams_per_session: default_streams_per_session(),
            max_streams_per_user: default_streams_per_user(),
        }
    }
}

pub(super) fn default_max_open_connections() -> usize {
    10_000
}
pub(super) fn default_request_header_timeout() -> u64 {
    10
}
pub(super) fn default_streams_per_session() -> usize {
    8
}
pub(super) fn default_streams_per_user() -> usize {
    32
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

pub(super) fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let s = String::deserialize(d)?;
    let url = Url::parse(&s).map_err(|e| D::Error::custom(format!("`{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(D::Error::custom(format!(
            "`{s}` is not an http(s) URL with a host"
        )));
    }
    Ok(url)
}

pub(super) fn origin<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let url = Url::parse(&s).map_err(|e| D::Error::custom(format!("`{s}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.path() != "/" {
        return Err(D::Error::custom(format!(
            "`{s}` is not an origin (scheme://host[:port], no path)"
        )));
    }
    Ok(url.origin().ascii_serialization())
}

pub(super) fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    if s.is_empty() {
        return Ok(None);
    }
    let url = Url::parse(&s).map_err(|e| D::Error::custom(format!("not a URL: {e}")))?;
    if url.scheme() == "rediss" {
        return Err(D::Error::custom(
            "rediss:// (TLS) is not supported; reach Redis with redis:// on a private network",
        ));
    }
    if url.scheme() != "redis" {
        return Err(D::Error::custom(
            "must be empty (embedded mode) or a redis:// URL",
        ));
    }
    Ok(Some(SecretString::from(s)))
}

pub(super) fn static_dir<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    if s.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(&s);
    if !path.join("index.html").is_file() {
        return Err(D::Error::custom(format!(
            "`{s}` holds no index.html: build the web client first (`npm run build` in web/)"
        )));
    }
    Ok(Some(path))
}

pub(super) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(s)
}

pub(super) fn localpart<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/'));
    if !ok {
        return Err(D::Error::custom(format!(
            "`{s}` may only use a-z, 0-9 and ._=-/ (Matrix localpart characters)"
        )));
    }
    Ok(s)
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
pub(super) fn default_appservice_id() -> String {
    "chatsender".into()
}
pub(super) fn empty_secret() -> SecretString {
    SecretString::from("")
}
pub(super) fn default_bot_localpart() -> String {
    "chatsender_bot".into()
}
pub(super) fn default_user_prefix() -> String {
    "chatsender_".into()
}
pub(super) fn default_database_url() -> DatabaseUrl {
    DatabaseUrl::Sqlite("sqlite://data/chatsender.db".into())
}
pub(super) fn default_key_prefix() -> String {
    "chatsender:".into()
}
pub(super) fn default_origin() -> String {
    "http://127.0.0.1:8000".into()
}
pub(super) fn default_challenge_ttl() -> u64 {
    120
}
pub(super) fn default_session_idle() -> u64 {
    1800
}
pub(super) fn default_session_max() -> u64 {
    43200
}
pub(super) fn default_window() -> u64 {
    60
}
pub(super) fn default_challenge_per_ip() -> RateLimit {
    RateLimit {
        max: 30,
        window_secs: 60,
    }
}
pub(super) fn default_challenge_per_key() -> RateLimit {
    RateLimit {
        max: 10,
        window_secs: 60,
    }
}
pub(super) fn default_login_per_ip() -> RateLimit {
    RateLimit {
        max: 30,
        window_secs: 60,
    }
}
pub(super) fn default_log_level() -> String {
    "info".into()
}
