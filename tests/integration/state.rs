//! The store and cache backends keep the same promises.

use std::time::Duration;

use chatsender::store::{
    EventRecord, IncomingTransaction, MembershipRecord, NewStreamEntry, RoomUpdate,
    TransactionOutcome,
};
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::{for_each_backend, on_backend};
use chatsender::config::DatabaseUrl;
use secrecy::ExposeSecret;

use crate::harness::{Backends, Provisioned, unique, wait_until};
use crate::provision::StoreKind;

for_each_backend!(
    store_records_each_transaction_and_event_once,
    store_keeps_users_rooms_and_streams,
    the_upgrade_to_one_display_name_keeps_what_was_there,
    the_feeds_progress_survives_the_upgrade,
    cache_keeps_its_promises
);

// SQLite's one writer does this by itself.
on_backend!(
    recordings_commit_in_the_order_of_their_places: mariadb_embedded(Mariadb, Embedded),
);

/// A message event `n` in `room`, from @carol.
pub fn event(room: &OwnedRoomId, n: u32) -> EventRecord {
    let json = format!(r#"{{"content":{{"body":"{n}"}}}}"#);
    EventRecord {
        event_id: OwnedEventId::try_from(format!("${}", unique(&format!("e{n}_"))))
            .expect("event id"),
        room_id: room.clone(),
        sender: OwnedUserId::try_from("@carol:localhost").expect("user id"),
        event_type: "m.room.message".into(),
        state_key: None,
        origin_server_ts: 1_700_000_000_000 + i64::from(n),
        json: Raw::from_json(serde_json::value::RawValue::from_string(json).expect("json")),
    }
}

/// A message entry of `user`'s stream under `key`, with an empty payload.
fn message_entry(user: &OwnedUserId, key: &str) -> NewStreamEntry {
    NewStreamEntry {
        user_id: user.clone(),
        dedup_key: key.into(),
        kind: "message".into(),
        payload: "{}".into(),
    }
}

fn ids(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

async fn store_records_each_transaction_and_event_once(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;
    stores.health.health().await.expect("healthy");
    let events = stores.events.clone();
    let room = OwnedRoomId::try_from(format!("!{}:localhost", unique("r"))).expect("room id");
    let (a, mut b, c) = (event(&room, 1), event(&room, 2), event(&room, 3));
    (b.event_type, b.state_key) = ("m.room.name".into(), Some(String::new()));
    let txn = |id: &str, hash: u8, events: Vec<EventRecord>| IncomingTransaction {
        txn_id: id.into(),
        body_sha256: [hash; 32],
        events,
    };

    let first = events
        .record_transaction(&txn("1", 1, vec![a.clone(), b.clone()]))
        .await
        .expect("record");
    assert_eq!(first.new_events(), 2);
    let again = events
        .record_transaction(&txn("1", 1, vec![a.clone(), b.clone()]))
        .await
        .expect("record");
    assert_eq!(again, TransactionOutcome::Duplicate);
    let restarted = events
        .record_transaction(&txn("1", 2, vec![b.clone(), c.clone()]))
        .await
        .expect("record");
    assert_eq!(restarted.new_events(), 1);
    let TransactionOutcome::Recorded { new: restarted_new } = restarted else {
        panic!("recorded")
    };
    assert_eq!(
        restarted_new[0].1, 1,
        "c is the second event of its transaction"
    );
    let recorded = events.room_events(&room).await.expect("events");
    assert_eq!(ids(&recorded), ids(&[a.clone(), b.clone(), c.clone()]));
    assert_eq!(
        recorded[0].json.json().get(),
        a.json.json().get(),
        "the event as it came"
    );

    // Concurrent deliveries of one transaction: exactly one records it.
    let d = event(&room, 4);
    let attempts = (0..8).map(|_| {
        let (events, t) = (events.clone(), txn("2", 9, vec![d.clone()]));
        tokio::spawn(async move { events.record_transaction(&t).await })
    });
    let mut recorded = 0;
    for attempt in attempts {
        if let Ok(Ok(TransactionOutcome::Recorded { .. })) = attempt.await {
            recorded += 1;
        }
    }
    assert_eq!(
        recorded, 1,
        "one of the concurrent deliveries records the transaction"
    );
    assert_eq!(events.room_events(&room).await.expect("events").len(), 4);

    // The feed's progress: pending until marked fed, oldest first, each event at its
    // place in the log.
    let pending = events.pending(100).await.expect("pending");
    let at = events.events_at(&pending).await.expect("events at");
    let pending_ids: Vec<&str> = at.iter().map(|(_, e)| e.event_id.as_str()).collect();
    assert_eq!(
        pending_ids,
        ids(&[a.clone(), b.clone(), c.clone(), d.clone()])
    );
    let seqs: Vec<i64> = at.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, pending, "events_at keeps the places asked for");
    let restarted_seqs: Vec<i64> = restarted_new.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        restarted_seqs,
        [pending[2]],
        "recording names c's place in the log"
    );
    events.mark_fed(&pending[..2]).await.expect("mark");
    assert_eq!(events.pending(100).await.expect("pending"), pending[2..]);

    // Unread: messages of others after the reader's receipt, which never moves back.
    // Messages are known at recording: a, c and d are; b is a name change.
    let reader = OwnedUserId::try_from("@reader:localhost").expect("user id");
    let receipts = stores.receipts.clone();
    let unread = || async { receipts.unread(&room, &reader).await.expect("unread") };
    assert_eq!(unread().await, 3);
    assert!(
        receipts
            .set_receipt(&room, &reader, &b.event_id)
            .await
            .expect("receipt")
    );
    assert_eq!(unread().await, 2, "c and d are after b");
    assert!(
        !receipts
            .set_receipt(&room, &reader, &a.event_id)
            .await
            .expect("receipt")
    );
    let again = receipts.set_receipt(&room, &reader, &b.event_id).await;
    assert!(again.expect("receipt"), "already there");
    assert_eq!(
        receipts.receipts(&room).await.expect("receipts"),
        [(reader.clone(), b.event_id.clone())],
        "a receipt never moves back"
    );
    let unknown = OwnedEventId::try_from("$not-recorded").expect("event id");
    assert!(
        receipts
            .set_receipt(&room, &reader, &unknown)
            .await
            .expect("receipt")
    );
    assert_eq!(
        unread().await,
        0,
        "an event not in the log counts as the newest"
    );
    assert_eq!(
        events
            .event(&a.event_id)
            .await
            .expect("event")
            .map(|e| e.event_id),
        Some(a.event_id.clone())
    );

    // More events than one statement takes: each new one named by its place, the one
    // given twice (in another statement) once.
    let other = OwnedRoomId::try_from(format!("!{}:localhost", unique("r"))).expect("room id");
    let many: Vec<EventRecord> = (10..460).map(|n| event(&other, n)).collect();
    let mut given = many.clone();
    given.insert(420, many[3].clone());
    let TransactionOutcome::Recorded { new } = events
        .record_transaction(&txn("3", 3, given))
        .await
        .expect("record")
    else {
        panic!("recorded")
    };
    let places: Vec<usize> = new.iter().map(|(_, at)| *at).collect();
    let expected: Vec<usize> = (0..420).chain(421..451).collect();
    assert_eq!(places, expected, "every event once, at its place");
    let recorded = events.room_events(&other).await.expect("events");
    assert_eq!(ids(&recorded), ids(&many));
    let seqs: Vec<i64> = new.iter().map(|(seq, _)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing seqs");

    // A transaction of no events (ephemeral data only) is recorded once too.
    let empty = txn("4", 4, Vec::new());
    let first = events.record_transaction(&empty).await.expect("record");
    assert_eq!(first, TransactionOutcome::Recorded { new: Vec::new() });
    let again = events.record_transaction(&empty).await.expect("record");
    assert_eq!(again, TransactionOutcome::Duplicate);

    // A redelivery records none of its events again, not even one gone from the log
    // since (on MariaDB the events' insert comes before it is known a redelivery).
    let gone = format!("DELETE FROM room_events WHERE event_id = '{}'", a.event_id);
    execute(&provisioned, gone).await;
    let again = events
        .record_transaction(&txn("1", 1, vec![a.clone(), b.clone()]))
        .await
        .expect("record");
    assert_eq!(again, TransactionOutcome::Duplicate);
    let left = events.room_events(&room).await.expect("events");
    assert_eq!(ids(&left), ids(&[b, c, d]), "a stays gone");
}

/// Runs one statement on the provisioned database.
async fn execute(provisioned: &Provisioned, statement: String) {
    use sqlx::Connection;
    let statement = sqlx::AssertSqlSafe(statement);
    match &provisioned.database {
        DatabaseUrl::Sqlite(url) => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .expect("execute");
        }
        DatabaseUrl::Mysql(url) => {
            let mut conn = sqlx::MySqlConnection::connect(url.expose_secret())
                .await
                .expect("connect");
            sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .expect("execute");
        }
    }
}

/// Users, the room index and the user streams keep what the core relies on.
async fn store_keeps_users_rooms_and_streams(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;

    // One display name per user, kept by its user.
    let user = OwnedUserId::try_from(format!("@{}:localhost", unique("p"))).expect("user id");
    assert_eq!(stores.users.user(&user).await.expect("user"), None);
    stores
        .users
        .create_user(&user, Some("Ann"))
        .await
        .expect("create");
    stores
        .users
        .create_user(&user, Some("Other"))
        .await
        .expect("create again");
    stores
        .users
        .set_display_name(&user, "Anne")
        .await
        .expect("rename");
    stores
        .users
        .mark_registered(&user, 5)
        .await
        .expect("registered");
    let record = stores
        .users
        .user(&user)
        .await
        .expect("user")
        .expect("a user");
    assert_eq!(
        (record.display_name.as_deref(), record.registered_at),
        (Some("Anne"), Some(5))
    );

    // A room's name can be set and cleared; other fields stay.
    let room = OwnedRoomId::try_from(format!("!{}:localhost", unique("r"))).expect("room id");
    let set = |name: Option<&str>| RoomUpdate {
        name: Some(name.map(str::to_owned)),
        ..RoomUpdate::default()
    };
    stores
        .rooms
        .update_room(
            &room,
            &RoomUpdate {
                is_direct: Some(true),
                ..set(Some("Tea"))
            },
        )
        .await
        .expect("update");
    let record = stores
        .rooms
        .room(&room)
        .await
        .expect("room")
        .expect("a room");
    assert_eq!(
        (record.name.as_deref(), record.is_direct),
        (Some("Tea"), true)
    );
    stores
        .rooms
        .update_room(&room, &set(None))
        .await
        .expect("clear");
    stores
        .rooms
        .update_room(&room, &RoomUpdate::default())
        .await
        .expect("touch");
    let record = stores
        .rooms
        .room(&room)
        .await
        .expect("room")
        .expect("a room");
    assert_eq!((record.name, record.is_direct), (None, true));

    // Memberships: replaced only from the state they were read in.
    let member = MembershipRecord {
        room_id: room.clone(),
        user_id: user.clone(),
        membership: MembershipState::Invite,
        display_name: None,
        sender: user.clone(),
    };
    assert!(
        stores
            .rooms
            .add_membership_if_absent(&member)
            .await
            .expect("add")
    );
    let joined = MembershipRecord {
        membership: MembershipState::Join,
        ..member.clone()
    };
    assert!(
        !stores
            .rooms
            .add_membership_if_absent(&joined)
            .await
            .expect("add again")
    );
    assert!(
        !stores
            .rooms
            .replace_membership(&joined, &MembershipState::Leave)
            .await
            .expect("stale")
    );
    assert!(
        stores
            .rooms
            .replace_membership(&joined, &MembershipState::Invite)
            .await
            .expect("replace")
    );
    let members = stores
        .rooms
        .members(&room, &MembershipState::Join)
        .await
        .expect("members");
    assert_eq!(members, vec![joined]);

    // A user's stream: one entry per dedup key, increasing ids.
    let entry = |key: &str| message_entry(&user, key);
    let first = stores
        .streams
        .append(&[entry("$a"), entry("$b")])
        .await
        .expect("append");
    let again = stores
        .streams
        .append(&[entry("$b"), entry("$c")])
        .await
        .expect("append");
    assert!(first.iter().all(Option::is_some));
    assert_eq!(again[0], None, "$b is there already");
    let (a, c) = (first[0].expect("id"), again[1].expect("id"));
    let after = stores
        .streams
        .entries_after(&user, a, 10)
        .await
        .expect("entries");
    assert_eq!(after.len(), 2);
    assert_eq!(
        stores.streams.latest_entry(&user).await.expect("latest"),
        Some(c)
    );
    assert_eq!(
        stores.streams.oldest_entry(&user).await.expect("oldest"),
        Some(a)
    );

    // More entries than one statement takes, one of them given twice: the first
    // gets the id, and each id names its own entry.
    let numbered = |n: usize| NewStreamEntry {
        payload: n.to_string().into(),
        ..entry(&format!("$m{n}"))
    };
    let mut many: Vec<NewStreamEntry> = (0..450).map(numbered).collect();
    many.insert(
        300,
        NewStreamEntry {
            payload: "again".into(),
            ..numbered(5)
        },
    );
    let ids = stores.streams.append(&many).await.expect("append");
    assert_eq!(ids[300], None, "$m5 went in earlier in the same call");
    let stored = stores
        .streams
        .entries_after(&user, c, 1000)
        .await
        .expect("entries");
    assert_eq!(stored.len(), 450);
    let given: Vec<(i64, String)> = ids
        .iter()
        .zip(&many)
        .filter_map(|(id, e)| Some((((*id)?), e.payload.to_string())))
        .collect();
    let stored: Vec<(i64, String)> = stored.into_iter().map(|e| (e.id, e.payload)).collect();
    assert_eq!(given, stored);
}

async fn cache_keeps_its_promises(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let cache = provisioned.backends().await.cache;
    cache.health().await.expect("healthy");
    let long = Duration::from_secs(60);

    assert!(cache.put_if_absent("k", b"v1", long).await.expect("put"));
    assert!(
        !cache.put_if_absent("k", b"v2", long).await.expect("put"),
        "an existing key is kept"
    );
    assert_eq!(
        cache.get("k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        cache.take("k").await.expect("take").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(cache.take("k").await.expect("take"), None, "taken once");

    // Many keys at once, in order, more than one round trip holds, missing ones too.
    let keys: Vec<String> = (0..1200).map(|i| format!("many{i}")).collect();
    for key in keys.iter().step_by(3) {
        cache.put(key, key.as_bytes(), long).await.expect("put");
    }
    let got = cache.get_many(&keys).await.expect("get_many");
    assert_eq!(got.len(), keys.len());
    for (i, (key, value)) in keys.iter().zip(&got).enumerate() {
        let expected = (i % 3 == 0).then(|| key.as_bytes().to_vec());
        assert_eq!(value, &expected, "{key}");
    }

    // Of many concurrent takers exactly one gets the value.
    cache.put_if_absent("once", b"x", long).await.expect("put");
    let takers = (0..32).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.take("once").await })
    });
    let mut winners = 0;
    for taker in takers {
        if taker.await.expect("join").expect("take").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);

    cache
        .put_if_absent("short", b"x", Duration::from_millis(150))
        .await
        .expect("put");
    runs_out(&*cache, "short", "a short-lived entry expires").await;
    assert!(
        cache.put_if_absent("short", b"y", long).await.expect("put"),
        "an expired key is free again"
    );

    // A lease: only its holder renews or deletes it.
    cache.put("lease", b"me", long).await.expect("put");
    for (what, done) in [
        ("renew", cache.expire_if("lease", b"other", long).await),
        ("delete", cache.delete_if("lease", b"other").await),
        (
            "renew a missing key",
            cache.expire_if("none", b"me", long).await,
        ),
    ] {
        assert!(!done.expect(what), "{what}: refused");
    }
    assert_eq!(
        cache.get("lease").await.expect("get").as_deref(),
        Some(&b"me"[..])
    );
    let short = Duration::from_millis(150);
    assert!(cache.expire_if("lease", b"me", short).await.expect("renew"));
    runs_out(&*cache, "lease", "the renewed lease runs out").await;
    cache.put("lease", b"me", long).await.expect("put");
    assert!(cache.delete_if("lease", b"me").await.expect("delete"));
    assert_eq!(cache.get("lease").await.expect("get"), None);

    for expected in 1..=3 {
        let (count, left) = cache.hit("hits", long).await.expect("hit");
        assert_eq!(count, expected);
        assert!(left > Duration::ZERO && left <= long);
    }
    cache.delete("hits").await.expect("delete");
    assert_eq!(
        cache.hit("hits", long).await.expect("hit").0,
        1,
        "deleting resets the counter"
    );
}

/// Waits until `key` is gone from `cache` (its time to live ran out).
async fn runs_out(cache: &dyn chatsender::cache::Cache, key: &str, what: &str) {
    let gone = || async { cache.get(key).await.expect("get").is_none().then_some(()) };
    wait_until(what, Duration::from_secs(5), gone).await;
}

/// A database of `backends` migrated to `version` only, holding `rows` (SQL said on
/// it): as an earlier release left it. The stores migrate it the rest of the way.
async fn provisioned_at(backends: Backends, version: i64, rows: &[&'static str]) -> Provisioned {
    use sqlx::Connection;
    let provisioned = Provisioned::new(backends).await;
    let dialect = match backends.store {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Mariadb => "mysql",
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let migrator = sqlx::migrate::Migrator::new(dir).await.expect("migrations");
    match &provisioned.database {
        DatabaseUrl::Sqlite(url) => {
            let options = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .expect("url");
            let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
                .await
                .expect("connect");
            migrator
                .run_to(version, &mut conn)
                .await
                .unwrap_or_else(|e| panic!("migrate to {version}: {e}"));
            for sql in rows {
                sqlx::raw_sql(*sql)
                    .execute(&mut conn)
                    .await
                    .expect("insert");
            }
        }
        DatabaseUrl::Mysql(url) => {
            let mut conn = sqlx::MySqlConnection::connect(url.expose_secret())
                .await
                .expect("connect");
            migrator
                .run_to(version, &mut conn)
                .await
                .unwrap_or_else(|e| panic!("migrate to {version}: {e}"));
            for sql in rows {
                sqlx::raw_sql(*sql)
                    .execute(&mut conn)
                    .await
                    .expect("insert");
            }
        }
    }
    provisioned
}

/// The log of the previous release: four events, of which the feed had handled the
/// first two (the queue holds the other two).
const BEFORE_0013: &[&str] = &[
    "INSERT INTO room_events (seq, event_id, room_id, sender, event_type, state_key, \
     origin_server_ts, json, received_at, is_message) VALUES \
     (1, '$1', '!r:localhost', '@c:x', 'm.room.message', NULL, 1, '{}', 1, 1), \
     (2, '$2', '!r:localhost', '@c:x', 'm.room.message', NULL, 2, '{}', 1, 1), \
     (3, '$3', '!r:localhost', '@c:x', 'm.room.message', NULL, 3, '{}', 1, 1), \
     (4, '$4', '!r:localhost', '@c:x', 'm.room.message', NULL, 4, '{}', 1, 1)",
    "INSERT INTO feed_queue (seq) VALUES (3), (4)",
];

/// Over the upgrade (0013: the feed's progress becomes one number) the
/// events the feed had not handled are still to feed, and only they; with an empty
/// queue, none is. New events queue after them, and marking the oldest fed leaves the
/// rest.
async fn the_feeds_progress_survives_the_upgrade(backends: Backends) {
    let provisioned = provisioned_at(backends, 12, BEFORE_0013).await;
    let stores = provisioned.stores().await;
    let events = stores.events.clone();
    assert_eq!(events.pending(10).await.expect("pending"), [3, 4]);
    let room = OwnedRoomId::try_from("!r:localhost").expect("room id");
    let recorded = events
        .record_transaction(&IncomingTransaction {
            txn_id: "1".into(),
            body_sha256: [1; 32],
            events: vec![event(&room, 5)],
        })
        .await
        .expect("record");
    let TransactionOutcome::Recorded { new } = recorded else {
        panic!("a new transaction: {recorded:?}");
    };
    assert_eq!(new.len(), 1);
    let fifth = new[0].0;
    assert!(fifth > 4, "a new place in the log: {fifth}");
    assert_eq!(events.pending(10).await.expect("pending"), [3, 4, fifth]);
    events.mark_fed(&[3]).await.expect("mark");
    assert_eq!(events.pending(10).await.expect("pending"), [4, fifth]);
    let rows = stores.retention.table_rows().await.expect("rows");
    assert!(rows.contains(&("feed_queue", 2)), "{rows:?}");
    events.mark_fed(&[4, fifth]).await.expect("mark");
    assert_eq!(events.pending(10).await.expect("pending"), [] as [i64; 0]);

    let provisioned = provisioned_at(backends, 12, &BEFORE_0013[..1]).await;
    let stores = provisioned.stores().await;
    assert_eq!(
        stores.events.pending(10).await.expect("pending"),
        [] as [i64; 0],
        "with nothing queued, every event was fed"
    );
}

/// A recording waits for the one in progress (another daemon's) before it takes a
/// place in the log, so the log's rows commit in the order of their places: the feed's
/// progress, one number, can pass none of them by. One dropped while it waits leaves
/// no lock behind, and without the lock's row recording stops.
async fn recordings_commit_in_the_order_of_their_places(backends: Backends) {
    use sqlx::Connection;
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;
    let DatabaseUrl::Mysql(url) = &provisioned.database else {
        panic!("a test of MariaDB");
    };
    let connect = || sqlx::MySqlConnection::connect(url.expose_secret());
    let room = OwnedRoomId::try_from("!r:localhost").expect("room id");
    // The event log's lock: its one row, which every recording locks first.
    const LOCK: &str = "SELECT only_row FROM event_log_writer WHERE only_row = 0 FOR UPDATE";
    let lock = format!("BEGIN; {LOCK}");
    let txn = |n: u8| IncomingTransaction {
        txn_id: format!("t{n}"),
        body_sha256: [n; 32],
        events: vec![event(&room, n.into())],
    };
    // The recording in progress: the lock, then its event's place in the log, not
    // committed yet.
    let mut first = connect().await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock.clone()))
        .execute(&mut first)
        .await
        .expect("lock");
    sqlx::query(
        "INSERT INTO room_events (event_id, room_id, sender, event_type, state_key, \
         origin_server_ts, json, received_at, is_message) \
         VALUES ('$first', '!r:localhost', '@c:x', 'm.room.message', NULL, 1, '{}', 1, 1)",
    )
    .execute(&mut first)
    .await
    .expect("insert");
    let (first_seq,): (i64,) = sqlx::query_as("SELECT CAST(LAST_INSERT_ID() AS SIGNED)")
        .fetch_one(&mut first)
        .await
        .expect("its place");
    let events = stores.events.clone();
    let second_txn = txn(2);
    let second = tokio::spawn(async move { events.record_transaction(&second_txn).await });
    let watcher = sqlx::MySqlPool::connect(url.expose_secret())
        .await
        .expect("connect");
    let watcher = &watcher;
    let waiting = move || async move {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()",
        )
        .fetch_one(watcher)
        .await
        .expect("transactions");
        (waiting == 1).then_some(())
    };
    let long = Duration::from_secs(30);
    wait_until("the second recording waits for the lock", long, waiting).await;
    assert!(!second.is_finished(), "the second recording waits");
    assert_eq!(
        stores.events.pending(10).await.expect("pending"),
        [] as [i64; 0],
        "nothing is committed yet"
    );
    sqlx::query("COMMIT")
        .execute(&mut first)
        .await
        .expect("commit");
    let recorded = second.await.expect("join").expect("record");
    let TransactionOutcome::Recorded { new } = recorded else {
        panic!("a new transaction: {recorded:?}");
    };
    let second_seq = new[0].0;
    assert_eq!(
        stores.events.pending(10).await.expect("pending"),
        [first_seq, second_seq]
    );

    // A recording dropped while it waits for the lock (its client went away) rolls
    // back and leaves no lock behind.
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut first)
        .await
        .expect("lock");
    let third = txn(3);
    let events = stores.events.clone();
    let dropped = {
        let third = third.clone();
        tokio::spawn(async move { events.record_transaction(&third).await })
    };
    wait_until("the third recording waits for the lock", long, waiting).await;
    dropped.abort();
    sqlx::query("COMMIT")
        .execute(&mut first)
        .await
        .expect("commit");
    let free = move || async move {
        let mut tx = watcher.begin().await.expect("begin");
        let now_or_never = sqlx::AssertSqlSafe(format!("{LOCK} NOWAIT"));
        let got = sqlx::query(now_or_never).fetch_optional(&mut *tx).await;
        tx.rollback().await.expect("rollback");
        got.is_ok().then_some(())
    };
    wait_until("the lock is free again", long, free).await;
    let recorded = stores.events.record_transaction(&third).await;
    assert!(
        matches!(&recorded, Ok(TransactionOutcome::Recorded { new }) if new.len() == 1),
        "the dropped recording left nothing: {recorded:?}"
    );

    // Without the lock's row, recording stops rather than go on unordered.
    sqlx::query("DELETE FROM event_log_writer")
        .execute(&mut first)
        .await
        .expect("delete");
    let error = stores
        .events
        .record_transaction(&txn(4))
        .await
        .expect_err("no lock");
    assert!(error.to_string().contains("event_log_writer"), "{error}");
}

/// Rows as the previous release left them: a user with a key's name, two puppets (one
/// renamed since, one with no user row), a room with messages.
const BEFORE_0004: &[&str] = &[
    "INSERT INTO users (user_id, display_name, created_at) VALUES ('@cs_bob:localhost', 'bob', 1)",
    "INSERT INTO puppets (user_id, display_name, registered_at) VALUES \
     ('@cs_bob:localhost', 'Bobby', 123), ('@cs_pea:localhost', 'Pea', 456)",
    "INSERT INTO rooms (room_id, name, is_direct, encrypted, updated_at) \
     VALUES ('!r:localhost', 'Tea', 0, 0, 1)",
    "INSERT INTO room_events (event_id, room_id, sender, event_type, state_key, \
     origin_server_ts, json, received_at, ingested) VALUES \
     ('$1', '!r:localhost', '@c:x', 'm.room.message', NULL, 1, '{}', 1, 1), \
     ('$2', '!r:localhost', '@c:x', 'm.room.message', NULL, 2, '{}', 1, 1), \
     ('$3', '!r:localhost', '@c:x', 'm.room.topic', '', 3, '{}', 1, 1)",
    // Bob's stream: three entries, the newest since gone (its id stays given out).
    "INSERT INTO user_events (user_id, dedup_key, kind, payload, created_at) VALUES \
     ('@cs_bob:localhost', '$1', 'message', '{}', 1), \
     ('@cs_bob:localhost', '$2', 'message', '{}', 1), \
     ('@cs_bob:localhost', '$3', 'message', '{}', 1)",
    "DELETE FROM user_events WHERE dedup_key = '$3'",
];

/// Migrations 0004 onward over a database of the previous release: each user keeps the
/// display name it had, puppets become registered users, rooms keep their newest
/// message, and a stream keeps its entries, its dedup keys and its ids (0010 rebuilds
/// the SQLite table).
async fn the_upgrade_to_one_display_name_keeps_what_was_there(backends: Backends) {
    let provisioned = provisioned_at(backends, 3, BEFORE_0004).await;
    let stores = provisioned.stores().await;
    let user = |id: &str| {
        let stores = stores.clone();
        let id = OwnedUserId::try_from(id).expect("user id");
        async move { stores.users.user(&id).await.expect("user").expect("a user") }
    };
    let bob = user("@cs_bob:localhost").await;
    assert_eq!(
        (bob.display_name.as_deref(), bob.registered_at),
        (Some("bob"), Some(123)),
        "the user's own name wins over the puppet's stale copy"
    );
    let pea = user("@cs_pea:localhost").await;
    assert_eq!(
        (pea.display_name.as_deref(), pea.registered_at),
        (Some("Pea"), Some(456))
    );
    let room = OwnedRoomId::try_from("!r:localhost").expect("room id");
    let last = stores
        .events
        .last_message(&room)
        .await
        .expect("last message");
    assert_eq!(
        last.map(|e| e.event_id.to_string()).as_deref(),
        Some("$2"),
        "the room's newest message, kept through migration 0009"
    );
    let entry = |key: &str| message_entry(&bob.user_id, key);
    let appended = stores
        .streams
        .append(&[entry("$2"), entry("$4")])
        .await
        .expect("append");
    assert_eq!(appended[0], None, "a dedup key kept");
    let new = appended[1].expect("a new entry");
    assert!(new > 3, "no id given out before is given again: {new}");
    let kept = stores
        .streams
        .entries_after(&bob.user_id, 0, 10)
        .await
        .expect("entries");
    assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, new]);
}
