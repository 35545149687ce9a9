//! The MariaDB backend: production, shared by several daemons.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::MySqlPool;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

use super::sql::{self, impl_sql_store};
use super::{
    AuditEntry, IncomingTransaction, KeyRecord, NewKey, Puppet, RoomEvent, SessionRecord,
    StoreError, TransactionOutcome, UserRecord, now_ms,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// State in a MariaDB (or MySQL) database.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects to `url` and migrates the database (sqlx takes a lock, so several
    /// daemons starting together migrate once).
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Self> {
        let options = MySqlConnectOptions::from_str(url.expose_secret())?.charset("utf8mb4");
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(super::MigrateError)?;
        Ok(Self { pool })
    }
}

impl_sql_store!(MysqlStore, sqlx::MySql, backend: "mysql", insert_ignore: "INSERT IGNORE");
