//! What only this module can see: which of SQLite's commits wait for the disk, and how
//! much each connection caches.

use super::*;

/// `PRAGMA synchronous` on the connection the events are recorded and fed on: 2 is
/// FULL (each commit synced), 1 NORMAL.
async fn writer_sync(store: &SqlStore<sqlx::Sqlite>) -> i64 {
    let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(&store.writer)
        .await
        .expect("PRAGMA synchronous");
    level
}

fn transaction(txn_id: &str) -> IncomingTransaction {
    IncomingTransaction {
        txn_id: txn_id.to_owned(),
        body_sha256: [txn_id.len() as u8; 32],
        events: Vec::new(),
    }
}

#[tokio::test]
async fn the_events_connection_commits_without_waiting_and_syncs_its_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = dir.path().join("cs.db");
    let url = format!("sqlite://{}", database.display());
    let store = open_sqlite(&url, 4).await.expect("open");
    assert_eq!(writer_sync(&store).await, 1, "the events' connection");

    let outcome = store.record_transaction(&transaction("1")).await;
    assert!(matches!(outcome, Ok(TransactionOutcome::Recorded { .. })));
    assert_eq!(
        store.database_file.as_deref(),
        Some(database.as_path()),
        "the recording is made durable by syncing this database's log"
    );
    assert!(
        dir.path().join("cs.db-wal").is_file(),
        "the log the recording went to is the one synced"
    );
    store.sync().await.expect("sync the log");
    store.mark_fed(&[1]).await.expect("mark fed");
    assert_eq!(writer_sync(&store).await, 1, "still, after a recording");

    // The sessions' and keys' connections wait for the disk at each commit.
    let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await
        .expect("PRAGMA synchronous");
    assert_eq!(level, 2);
}

#[tokio::test]
async fn one_connection_for_everything_syncs_every_commit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cs.db").display());
    // Sessions and keys are written on that connection too.
    let store = open_sqlite(&url, 1).await.expect("open");
    let outcome = store.record_transaction(&transaction("1")).await;
    assert!(matches!(outcome, Ok(TransactionOutcome::Recorded { .. })));
    store.pending(10).await.expect("pending");
    assert_eq!(writer_sync(&store).await, 2);
    assert_eq!(store.database_file, None, "its commits sync themselves");
}

#[tokio::test]
async fn every_sqlite_connection_keeps_a_small_page_cache() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cs.db").display());
    let store = open_sqlite(&url, 4).await.expect("open");
    for (pool, which) in [(&store.writer, "the events'"), (&store.pool, "the others'")] {
        let (kib,): (i64,) = sqlx::query_as("PRAGMA cache_size")
            .fetch_one(pool)
            .await
            .expect("PRAGMA cache_size");
        // Negative: in KiB rather than pages.
        assert_eq!(kib, -SQLITE_CACHE_KIB, "{which} connection");
    }
}
