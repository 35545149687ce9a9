//! `floor`: what durably recording the ingest load costs on its own, as the bound
//! under the ingest figures. No HTTP, no parsing and no feed are timed: the
//! transactions are built and parsed between timed stretches.
//!
//! - `daemon`: the daemon's own recording (`EventLog::record_transaction` and
//!   `EventLog::sync`, what each pushed transaction waits for before its 200), through
//!   the daemon's own store on SQLite or MariaDB.
//! - `bare`: the least any durable recording writes: one row per event in a table
//!   holding only its id and JSON, one multi-row insert committed per transaction. On
//!   SQLite in the daemon's journal mode and `synchronous=FULL`; on MariaDB in InnoDB
//!   with the server's settings (a commit is flushed to disk unless it says otherwise).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chatsender::chat::event::envelope;
use chatsender::config::DatabaseSettings;
use chatsender::store::{IncomingTransaction, TransactionOutcome};
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::mysql::MySqlPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{MySqlPool, QueryBuilder, SqlitePool};

use crate::clients::{cpu_seconds, tag, transaction_body};

/// Transactions built (and parsed) per timed stretch: about a second's worth.
const STRETCH: u64 = 500;

/// What to record into.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Floor {
    Daemon,
    Bare,
}

#[derive(Deserialize)]
struct Pushed {
    events: Vec<Raw<AnyTimelineEvent>>,
}

/// The store the transactions go to.
enum Target {
    Daemon(chatsender::store::Stores),
    BareSqlite(SqlitePool),
    BareMysql(MySqlPool),
}

/// The bare table: an event's id and its JSON.
const BARE_TABLE: &str = "CREATE TABLE IF NOT EXISTS events \
    (event_id VARCHAR(255) NOT NULL PRIMARY KEY, json TEXT NOT NULL)";

impl Target {
    async fn open(floor: Floor, database: &str) -> anyhow::Result<Self> {
        Ok(match floor {
            Floor::Daemon => {
                let settings: DatabaseSettings = serde_json::from_value(json!({"url": database}))?;
                Self::Daemon(chatsender::store::connect(&settings).await?)
            }
            Floor::Bare if database.starts_with("sqlite:") => {
                let options = SqliteConnectOptions::from_str(database)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full);
                // As the daemon's pools: no ping before each use.
                let pool = SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                sqlx::query(BARE_TABLE).execute(&pool).await?;
                Self::BareSqlite(pool)
            }
            Floor::Bare if database.starts_with("mysql:") => {
                let pool = MySqlPoolOptions::new()
                    .test_before_acquire(false)
                    .connect(database)
                    .await?;
                sqlx::query(BARE_TABLE).execute(&pool).await?;
                Self::BareMysql(pool)
            }
            Floor::Bare => bail!("{database} is neither a sqlite: nor a mysql: URL"),
        })
    }

    async fn record(&self, txn: &IncomingTransaction) -> anyhow::Result<()> {
        match self {
            Self::Daemon(stores) => {
                let outcome = stores.events.record_transaction(txn).await?;
                if !matches!(outcome, TransactionOutcome::Recorded { .. }) {
                    bail!("transaction {} was not recorded: {outcome:?}", txn.txn_id);
                }
                stores.events.sync().await?;
            }
            Self::BareSqlite(pool) => {
                bare_insert(txn).build().execute(pool).await?;
            }
            Self::BareMysql(pool) => {
                bare_insert(txn).build().execute(pool).await?;
            }
        }
        Ok(())
    }
}

/// One multi-row insert of a transaction's events into the bare table.
fn bare_insert<DB: sqlx::Database>(txn: &IncomingTransaction) -> QueryBuilder<DB>
where
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("INSERT INTO events (event_id, json) ");
    query.push_values(&txn.events, |mut row, event| {
        row.push_bind(event.event_id.as_str())
            .push_bind(event.json.json().get());
    });
    query
}

/// Records transactions of `events_per_txn` events for `seconds` and reports events
/// per second of recording and the CPU per event of this process and, with `db_pid`,
/// of the database server.
pub async fn run(
    floor: Floor,
    database: &str,
    seconds: f64,
    events_per_txn: usize,
    db_pid: Option<u32>,
) -> anyhow::Result<Value> {
    let target = Target::open(floor, database)
        .await
        .with_context(|| format!("opening {database}"))?;
    let tag = tag();
    let me = std::process::id();
    let (mut recording, mut cpu, mut db_cpu) = (Duration::ZERO, 0.0, 0.0);
    let mut next = 0u64;
    while recording.as_secs_f64() < seconds {
        let txns = (next..next + STRETCH)
            .map(|n| transaction(&tag, n, events_per_txn))
            .collect::<anyhow::Result<Vec<_>>>()?;
        next += STRETCH;
        let cpu_before = (cpu_seconds(me), db_pid.and_then(cpu_seconds));
        let start = Instant::now();
        for txn in &txns {
            target.record(txn).await?;
        }
        recording += start.elapsed();
        cpu += cpu_seconds(me).unwrap_or(0.0) - cpu_before.0.unwrap_or(0.0);
        if let (Some(pid), Some(before)) = (db_pid, cpu_before.1) {
            db_cpu += cpu_seconds(pid).unwrap_or(before) - before;
        }
    }
    let events = (next * events_per_txn as u64) as f64;
    Ok(json!({
        "events": events,
        "seconds": recording.as_secs_f64(),
        "events_per_sec": events / recording.as_secs_f64(),
        "cpu_us_per_event": cpu * 1e6 / events,
        "db_cpu_us_per_event": db_pid.map(|_| db_cpu * 1e6 / events),
    }))
}

/// Transaction `n`, as the daemon has it once parsed.
fn transaction(tag: &str, n: u64, events: usize) -> anyhow::Result<IncomingTransaction> {
    let body = transaction_body(events, 10, "localhost", tag, n);
    let pushed: Pushed = serde_json::from_str(&body)?;
    let events = pushed
        .events
        .iter()
        .map(envelope)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IncomingTransaction {
        txn_id: format!("{tag}-{n}"),
        body_sha256: [0; 32],
        events,
    })
}
