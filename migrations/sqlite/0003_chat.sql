-- Room events not yet fed to the room index and the live streams (set once done, so
-- a crash between recording and feeding is finished at the next start).
ALTER TABLE room_events ADD COLUMN ingested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX room_events_pending ON room_events (ingested, seq);

-- Rooms the appservice has seen, with what the API shows of them.
CREATE TABLE rooms (
    room_id    TEXT    NOT NULL PRIMARY KEY,
    name       TEXT,
    is_direct  INTEGER NOT NULL DEFAULT 0,
    encrypted  INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);

-- The latest membership of every user in every room the appservice sees.
CREATE TABLE memberships (
    room_id      TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    membership   TEXT    NOT NULL,
    display_name TEXT,
    sender       TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, membership);

-- Messages sent through the API: the same (user, txn_id) gives the same event.
CREATE TABLE sent_messages (
    user_id  TEXT    NOT NULL,
    txn_id   TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, txn_id)
);

-- Each user's live stream in embedded mode (Redis streams in production).
CREATE TABLE user_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL,
    dedup_key  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, dedup_key)
);
CREATE INDEX user_events_by_user ON user_events (user_id, id);

-- Expired sessions are dropped by their absolute end.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
