-- Transactions pushed by the homeserver, keyed by id and body hash: Synapse restarts
-- its txnIds at 1, so the id alone cannot identify a transaction.
CREATE TABLE appservice_transactions (
    txn_id       TEXT    NOT NULL,
    body_sha256  BLOB    NOT NULL,
    received_at  INTEGER NOT NULL,
    event_count  INTEGER NOT NULL,
    PRIMARY KEY (txn_id, body_sha256)
);

-- Every room event received, once per event_id.
CREATE TABLE room_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT    NOT NULL UNIQUE,
    room_id          TEXT    NOT NULL,
    sender           TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    state_key        TEXT,
    origin_server_ts INTEGER NOT NULL,
    json             TEXT    NOT NULL,
    received_at      INTEGER NOT NULL
);
CREATE INDEX room_events_by_room ON room_events (room_id, seq);

-- Puppet users registered on the homeserver.
CREATE TABLE puppets (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    display_name  TEXT,
    registered_at INTEGER NOT NULL
);
