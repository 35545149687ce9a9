//! What only this module can see: which of SQLite's commits wait for the disk.

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
async fn a_recording_commits_synced_after_the_feed_deferred_its_syncs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cs.db").display());
    let store = open_sqlite(&url, 4).await.expect("open");
    assert_eq!(
        writer_sync(&store).await,
        2,
        "a new connection syncs each commit"
    );

    // A round of the feed starts by reading what is pending.
    store.pending(10).await.expect("pending");
    assert_eq!(
        writer_sync(&store).await,
        1,
        "the feed's writes defer their sync"
    );

    let outcome = store.record_transaction(&transaction("1")).await;
    assert!(matches!(outcome, Ok(TransactionOutcome::Recorded { .. })));
    assert_eq!(
        writer_sync(&store).await,
        2,
        "the recording's commit, which the 200 to Synapse promises, was synced"
    );

    // The round ends by marking its events fed, after that recording came in.
    store.mark_fed(&[1]).await.expect("mark fed");
    assert_eq!(
        writer_sync(&store).await,
        1,
        "marking the round fed defers its sync too"
    );
}

#[tokio::test]
async fn one_connection_for_everything_syncs_every_commit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cs.db").display());
    // Sessions and keys are written on that connection too.
    let store = open_sqlite(&url, 1).await.expect("open");
    store.pending(10).await.expect("pending");
    assert_eq!(writer_sync(&store).await, 2);
}
