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

use sqlx::pool::PoolConnection;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Type};

use super::{IncomingTransaction, StoreError};

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

    /// The one command that begins a recording, or `None` for `BEGIN` and then the
    /// transaction's row in a statement of its own (SQLite: its first write takes its
    /// one write lock, and no other recording can take a place in the log until this
    /// one has committed).
    ///
    /// MariaDB's, in one round trip where three were (on a network each costs about as
    /// much as a statement's work): it begins the transaction; takes the event log's
    /// lock, the one row of `event_log_writer` (InnoDB releases it once the commit is
    /// visible), so that the log's rows commit in the order of their places (see
    /// [`Dialect::MARK_FED_THROUGH`]); adds the transaction's row; and leaves what it
    /// found in `@chatsender_recording` ([`recording_state`]). The values go in as
    /// hexadecimal and decimal literals, which nothing can escape.
    fn begin_recording(
        txn_id: &str,
        body_sha256: &[u8; 32],
        received_at: i64,
        events: i64,
    ) -> Option<String>;
    /// What a recording's insert of events returns besides each new event's place and
    /// id, for [`recording_state`]: MariaDB's `@chatsender_recording`; on SQLite, which
    /// knows it from the transaction's row, [`RECORDING_NEW`].
    const RECORDING_STATE: &'static str;
    /// Raises the feed's progress (`feed_progress.fed_through`: every event up to that
    /// place in the log is fed) to the place bound. Recordings commit the log's rows in
    /// the order of their places ([`Dialect::begin_recording`]), so no event commits
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
    const RECORDING_STATE: &'static str = "3";
    const MARK_FED_THROUGH: &'static str =
        "UPDATE feed_progress SET fed_through = MAX(fed_through, ?)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult) -> i64 {
        result.last_insert_rowid()
    }

    fn begin_recording(_: &str, _: &[u8; 32], _: i64, _: i64) -> Option<String> {
        None
    }
}

impl Dialect for sqlx::MySql {
    const BACKEND: &'static str = "mysql";
    const INSERT_IGNORE: &'static str = "INSERT IGNORE";
    const NUMBERS_INSERTS_IN_ORDER: bool = false;
    const RECORDING_STATE: &'static str = "CAST(@chatsender_recording AS SIGNED)";
    const MARK_FED_THROUGH: &'static str =
        "UPDATE feed_progress SET fed_through = GREATEST(fed_through, ?)";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn last_insert_id(result: &Self::QueryResult) -> i64 {
        // Ids stay far below 2^63.
        i64::try_from(result.last_insert_id()).unwrap_or(i64::MAX)
    }

    fn begin_recording(
        txn_id: &str,
        body_sha256: &[u8; 32],
        received_at: i64,
        events: i64,
    ) -> Option<String> {
        Some(format!(
            "BEGIN; \
             SET @chatsender_recording = 0; \
             SELECT 2 INTO @chatsender_recording FROM event_log_writer \
             WHERE only_row = 0 FOR UPDATE; \
             INSERT IGNORE INTO appservice_transactions \
             (txn_id, body_sha256, received_at, event_count) \
             VALUES (X'{}', X'{}', {received_at}, {events}); \
             SET @chatsender_recording = @chatsender_recording + ROW_COUNT()",
            hex::encode(txn_id),
            hex::encode(body_sha256),
        ))
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

    /// Begins a recording of `txn` on `writer`, with the event log's lock and the
    /// transaction's row: whether the transaction is new, or `None` where the events'
    /// insert tells ([`Dialect::RECORDING_STATE`]). Its commit survives a crash of the
    /// daemon; a power loss too once [`SqlStore::sync_log`] returns (at once where the
    /// commit itself waited for the disk).
    pub(super) async fn begin_recording(
        &self,
        txn: &IncomingTransaction,
        received_at: i64,
    ) -> Result<(Recording<DB>, Option<bool>), StoreError>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
    {
        let events = i64::try_from(txn.events.len()).unwrap_or(i64::MAX);
        let (txn_id, hash) = (txn.txn_id.as_str(), &txn.body_sha256);
        if let Some(begin) = DB::begin_recording(txn_id, hash, received_at, events) {
            return Ok((Recording::begin(&self.writer, begin).await?, None));
        }
        let mut recording = Recording::begin(&self.writer, "BEGIN".to_owned()).await?;
        let inserted = sqlx::query(Self::insert_ignore(
            "INTO appservice_transactions (txn_id, body_sha256, received_at, event_count) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(txn_id)
        .bind(&hash[..])
        .bind(received_at)
        .bind(events)
        .execute(recording.conn())
        .await?;
        Ok((recording, Some(DB::rows_affected(&inserted) > 0)))
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

/// A recording's transaction on a connection of its own, begun and ended by hand (on
/// MariaDB one command begins it and does more). Dropped before it ends (an error, or
/// its future dropped), its connection is closed rather than given back to the pool:
/// closing rolls the transaction back and frees its lock, where the pool would hand
/// both to whoever asks next.
pub(super) struct Recording<DB: Database> {
    conn: PoolConnection<DB>,
    ended: bool,
}

impl<DB: Database> Recording<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    async fn begin(pool: &Pool<DB>, begin: String) -> Result<Self, StoreError> {
        let mut recording = Self {
            conn: pool.acquire().await?,
            ended: false,
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
            .execute(recording.conn())
            .await?;
        Ok(recording)
    }

    pub(super) fn conn(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.end("COMMIT").await
    }

    pub(super) async fn rollback(self) -> Result<(), StoreError> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), StoreError> {
        sqlx::raw_sql(statement).execute(self.conn()).await?;
        self.ended = true;
        Ok(())
    }
}

impl<DB: Database> Drop for Recording<DB> {
    fn drop(&mut self) {
        if !self.ended {
            self.conn.close_on_drop();
        }
    }
}

/// [`Dialect::RECORDING_STATE`] of a new transaction's recording.
pub(super) const RECORDING_NEW: i64 = 3;

/// Whether a recording's transaction is new, from its [`Dialect::RECORDING_STATE`]: 2
/// for the event log's lock, plus 1 for a new transaction's row. Without the lock's
/// row (whose absence makes the lock a gap lock, which keeps no other recording out)
/// recording stops rather than go on unordered.
pub(super) fn recording_state(state: i64) -> Result<bool, StoreError> {
    match state {
        RECORDING_NEW => Ok(true),
        2 => Ok(false),
        _ => Err(corrupt("event_log_writer", "its one row is missing")),
    }
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
