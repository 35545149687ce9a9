//! What both SQL backends share: one generic store, and the spelling of each dialect.
//!
//! SQLite and MariaDB accept the same SQL here except for "insert unless it exists"
//! (`INSERT OR IGNORE` / `INSERT IGNORE`), so every concern is implemented once for
//! [`SqlStore<DB>`] and each backend says how its dialect spells that. Every such
//! insert only ever hits a duplicate key: other columns are validated before they get
//! this far.
//!
//! Upserts are "insert if missing" then "update", as two statements outside a
//! transaction: inside one, MariaDB's shared lock from the insert and the exclusive
//! lock of the update deadlock two writers of the same row.
//!
//! Each impl block over `DB` repeats the same `where` clause (written out, since Rust
//! does not carry such bounds from a trait to its users): what sqlx needs to bind and
//! read this crate's column types on a pool of `DB`.

use std::path::PathBuf;

use sqlx::{Database, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Transaction};

use super::StoreError;

/// How a backend's SQL differs.
pub trait Dialect: Database {
    /// `sqlite` or `mysql`, for logs and `/ready`.
    const BACKEND: &'static str;
    /// The start of an insert that skips rows whose key exists.
    const INSERT_IGNORE: &'static str;

    /// Whether the rows one multi-row insert adds to an `AUTOINCREMENT` table have
    /// consecutive ids ending at [`Dialect::last_insert_id`]: SQLite's, whose one writer
    /// numbers a statement's rows one after the other. InnoDB may leave gaps for ignored
    /// rows, so MariaDB reads them back with `RETURNING`.
    const NUMBERS_INSERTS_IN_ORDER: bool;

    /// What a recording says first in its transaction so that no other recording can
    /// take a place in the event log until it has committed: the log's rows then commit
    /// in the order of their places (see [`Dialect::MARK_FED_THROUGH`]). MariaDB locks
    /// the one row of `event_log_writer` (InnoDB releases it once the commit is
    /// visible). `None` for SQLite, whose first write takes its one write lock.
    const LOCK_EVENT_LOG: Option<&'static str>;
    /// Raises the feed's progress (`feed_progress.fed_through`: every event up to that
    /// place in the log is fed) to the place bound. Recordings commit the log's rows in
    /// the order of their places ([`Dialect::LOCK_EVENT_LOG`]), so no event commits
    /// below that number later; `feed_queue` is a view of the events above it.
    const MARK_FED_THROUGH: &'static str;

    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The id of the last row a statement inserted.
    fn last_insert_id(result: &Self::QueryResult) -> i64;
}

impl Dialect for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const INSERT_IGNORE: &'static str = "INSERT OR IGNORE";
    const NUMBERS_INSERTS_IN_ORDER: bool = true;
    const LOCK_EVENT_LOG: Option<&'static str> = None;
    const MARK_FED_THROUGH: &'static str =
        "UPDATE feed_progress SET fed_through = MAX(fed_through, ?)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult) -> i64 {
        result.last_insert_rowid()
    }
}

impl Dialect for sqlx::MySql {
    const BACKEND: &'static str = "mysql";
    const INSERT_IGNORE: &'static str = "INSERT IGNORE";
    const NUMBERS_INSERTS_IN_ORDER: bool = false;
    const LOCK_EVENT_LOG: Option<&'static str> =
        Some("SELECT only_row FROM event_log_writer WHERE only_row = 0 FOR UPDATE");
    const MARK_FED_THROUGH: &'static str =
        "UPDATE feed_progress SET fed_through = GREATEST(fed_through, ?)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult) -> i64 {
        // Ids stay far below 2^63.
        i64::try_from(result.last_insert_id()).unwrap_or(i64::MAX)
    }
}

/// The store on a pool of `DB`.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    /// Where the pushed events are recorded and fed: on SQLite a connection of its
    /// own, whose page cache stays warm between the feed's statements (a connection
    /// drops its cache whenever another one wrote); on MariaDB the pool.
    pub(super) writer: Pool<DB>,
    /// The SQLite database file, where `writer` is a connection of its own whose
    /// commits do not wait for the disk (`synchronous = NORMAL`): [`SqlStore::sync_log`]
    /// makes them durable, after a recording, while the feed already works on its
    /// events. `None` where every commit waits for the disk itself.
    pub(super) database_file: Option<PathBuf>,
    /// Each stream user's number (`stream_users`), as far as known.
    pub(super) stream_users: super::streams::UserRefs,
}

impl<DB: Dialect> SqlStore<DB> {
    /// A store on a migrated pool.
    pub fn new(pool: Pool<DB>) -> Self {
        Self {
            writer: pool.clone(),
            pool,
            database_file: None,
            stream_users: Default::default(),
        }
    }

    /// A store whose events are recorded and fed on `writer`, a pool of its own, and
    /// the rest on `pool`. `database_file`: see [`SqlStore::database_file`].
    pub fn with_writer(pool: Pool<DB>, writer: Pool<DB>, database_file: Option<PathBuf>) -> Self {
        Self {
            pool,
            writer,
            database_file,
            stream_users: Default::default(),
        }
    }

    /// Begins a recording on `writer`, and takes the event log's lock
    /// ([`Dialect::LOCK_EVENT_LOG`]) in it: a recording dropped while it waits for the
    /// lock rolls back like any transaction, and leaves no lock behind. Its commit
    /// survives a crash of the daemon; a power loss too once [`SqlStore::sync_log`]
    /// returns (at once where the commit itself waited for the disk).
    pub(super) async fn begin_recording(&self) -> Result<Transaction<'static, DB>, StoreError>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let mut tx = self.writer.begin().await?;
        if let Some(lock) = DB::LOCK_EVENT_LOG {
            // Without its row the lock would be a gap lock, which does not keep
            // another recording out.
            if sqlx::query(lock).fetch_optional(&mut *tx).await?.is_none() {
                return Err(corrupt("event_log_writer", "its one row is missing"));
            }
        }
        Ok(tx)
    }

    /// Makes every commit on `writer` so far survive a power loss: one `fdatasync` of
    /// the write-ahead log, which holds them in order. Where the log is gone (the last
    /// connection closed, which checkpoints it into the database and syncs that), the
    /// database file is synced. The file is opened each time: a handle kept across a
    /// log deleted and made anew would sync a file nobody writes any more.
    ///
    /// A power loss keeps a prefix of the log's commits. What the feed wrote goes with
    /// its events' `mark_fed`, so those events are fed again (each entry and
    /// membership once); a recording not synced yet goes with what the feed wrote of
    /// it, and Synapse, which had no answer for it, sends it again.
    pub(super) async fn sync_log(&self) -> Result<(), StoreError> {
        let Some(database) = self.database_file.clone() else {
            return Ok(());
        };
        let synced = tokio::task::spawn_blocking(move || {
            let mut log = database.clone().into_os_string();
            log.push("-wal");
            let log = PathBuf::from(log);
            let (path, file) = match std::fs::File::open(&log) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let file = std::fs::File::open(&database);
                    (database, file)
                }
                file => (log, file),
            };
            file.and_then(|file| file.sync_data()).map_err(|e| {
                let what = format!("syncing {} to disk: {e}", path.display());
                std::io::Error::new(e.kind(), what)
            })
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|synced| synced);
        synced.map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
    }

    /// `INSERT OR IGNORE INTO …` or `INSERT IGNORE INTO …`, as an SQL string.
    pub(super) fn insert_ignore(rest: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(format!("{} {rest}", DB::INSERT_IGNORE))
    }
}

/// Rows per multi-row statement.
pub(super) const CHUNK: usize = 200;

/// What a multi-row `INSERT … IGNORE` added.
pub(super) enum Added<T> {
    /// Every row, numbered `first`, `first + 1`, … in the order given.
    All { first: i64 },
    /// Only these, with the columns asked for.
    These(Vec<T>),
    /// Some keys were there already, and the ignored rows may have used up ids, so which
    /// id went to which row is unknown: undo the transaction and run it again, reading
    /// the ids back.
    Unnumbered,
}

/// The ways to try a transaction of [`insert_numbered`]s in: SQLite first without
/// reading ids back, then (only if a key was there already) reading them back; MariaDB
/// always reading them back.
pub(super) fn numberings<DB: Dialect>() -> &'static [bool] {
    if DB::NUMBERS_INSERTS_IN_ORDER {
        &[true, false]
    } else {
        &[false]
    }
}

/// Runs `query`, an insert-or-ignore of `rows` rows, and tells what it added. With
/// `numbered` (SQLite: it numbers a statement's rows one after the other) nothing is
/// read back, which matters because sqlx-sqlite's worker thread hands each row over on
/// its own, at a cost above the insert's; otherwise `RETURNING` names the added rows
/// with the `returning` columns.
pub(super) async fn insert_numbered<DB, T>(
    conn: &mut DB::Connection,
    mut query: QueryBuilder<DB>,
    rows: usize,
    numbered: bool,
    returning: &str,
) -> Result<Added<T>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    T: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
{
    if !numbered {
        query.push(format!(" RETURNING {returning}"));
        return Ok(Added::These(query.build_query_as().fetch_all(conn).await?));
    }
    let done = query.build().execute(&mut *conn).await?;
    let (added, last) = (DB::rows_affected(&done), DB::last_insert_id(&done));
    if added != rows as u64 {
        return Ok(Added::Unnumbered);
    }
    let first = last - i64::try_from(added).unwrap_or(i64::MAX) + 1;
    Ok(Added::All { first })
}

/// A value read back that the database should never have held.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Parses an id column (user, room or event id).
pub(super) fn id<T: TryFrom<String>>(what: &str, value: String) -> Result<T, StoreError>
where
    T::Error: std::fmt::Display,
{
    T::try_from(value).map_err(|e| corrupt(what, e))
}

/// A 32-byte hash column.
pub(super) fn hash32(what: &str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| corrupt(what, format!("{} bytes, not 32", b.len())))
}
