//! An event that keeps failing: fed again through an outage, skipped only after the
//! window.

use super::*;

#[tokio::test]
async fn a_failing_event_waits_through_an_outage_and_is_skipped_only_after_the_window() {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let patient = ingest(&store, log.clone(), HOUR);
    patient
        .record("1", [1; 32], &[join("$j", "cs_alice")], NONE)
        .await
        .expect("record");
    patient.run_pending().await.expect("feed");

    store.fail("streams", true);
    patient
        .record("2", [2; 32], &[text("$m1", "carol", "one")], NONE)
        .await
        .expect("record");
    assert!(
        patient.run_pending().await.is_err(),
        "the outage stops the feed"
    );
    assert_eq!(store.pending_events_now(), ["$m1"], "nothing lost");
    store.fail("streams", false);
    assert_eq!(patient.run_pending().await.expect("feed"), 1);

    // An event whose delivery keeps failing past the window is skipped, and only
    // then; the feed goes on.
    store.fail("streams", true);
    let window = Duration::from_millis(300);
    let impatient = ingest(&store, log, window);
    impatient
        .record("3", [3; 32], &[text("$m2", "carol", "two")], NONE)
        .await
        .expect("record");
    let first_failure = std::time::Instant::now();
    assert!(impatient.run_pending().await.is_err(), "in the window");
    let skipped = loop {
        match impatient.run_pending().await {
            Ok(fed) => break fed,
            Err(_) => {
                assert!(first_failure.elapsed() < 30 * window, "never skipped");
                tokio::time::sleep(window / 10).await;
            }
        }
    };
    assert_eq!(skipped, 1);
    assert!(
        first_failure.elapsed() >= window,
        "skipped only after the window"
    );
    store.fail("streams", false);
    assert!(store.pending_events_now().is_empty());
    impatient
        .record("4", [4; 32], &[text("$m3", "carol", "three")], NONE)
        .await
        .expect("record");
    impatient.run_pending().await.expect("feed");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $m1", "message $m3"]
    );
}
