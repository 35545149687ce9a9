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

use sqlx::{Database, Pool};

use super::StoreError;

/// How a backend's SQL differs.
pub trait Dialect: Database {
    /// `sqlite` or `mysql`, for logs and `/ready`.
    const BACKEND: &'static str;
    /// The start of an insert that skips rows whose key exists.
    const INSERT_IGNORE: &'static str;

    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl Dialect for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const INSERT_IGNORE: &'static str = "INSERT OR IGNORE";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Dialect for sqlx::MySql {
    const BACKEND: &'static str = "mysql";
    const INSERT_IGNORE: &'static str = "INSERT IGNORE";

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// The store on a pool of `DB`.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
}

impl<DB: Dialect> SqlStore<DB> {
    /// A store on a migrated pool.
    pub fn new(pool: Pool<DB>) -> Self {
        Self { pool }
    }

    /// `INSERT OR IGNORE INTO …` or `INSERT IGNORE INTO …`, as an SQL string.
    pub(super) fn insert_ignore(rest: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(format!("{} {rest}", DB::INSERT_IGNORE))
    }
}

/// Rows per multi-row statement.
pub(super) const CHUNK: usize = 200;

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
