-- A delivery to K members stored its payload K times, beside the user id and the dedup
-- key. Now the payload is stored once per (dedup key, kind) in `stream_payloads`, each
-- user once in `stream_users`, and an entry is three numbers and a time: a message to
-- 10,000 streams writes one payload and 10,000 small rows. An entry's id, its user's
-- dedup and the AUTOINCREMENT counter carry over, so no id a client holds as a cursor
-- is ever given again.
CREATE TABLE stream_users (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT    NOT NULL UNIQUE
);
INSERT INTO stream_users (user_id) SELECT DISTINCT user_id FROM user_events ORDER BY user_id;

CREATE TABLE stream_payloads (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (dedup_key, kind)
);
INSERT OR IGNORE INTO stream_payloads (dedup_key, kind, payload, created_at)
SELECT dedup_key, kind, payload, created_at FROM user_events ORDER BY id;

CREATE TABLE user_events_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_ref   INTEGER NOT NULL,
    payload_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (payload_id, user_ref)
);
INSERT INTO user_events_new (id, user_ref, payload_id, created_at)
SELECT e.id, u.id, p.id, e.created_at
FROM user_events e
JOIN stream_users u ON u.user_id = e.user_id
JOIN stream_payloads p ON p.dedup_key = e.dedup_key AND p.kind = e.kind;
DELETE FROM sqlite_sequence WHERE name = 'user_events_new';
UPDATE sqlite_sequence SET name = 'user_events_new' WHERE name = 'user_events';
DROP TABLE user_events;
ALTER TABLE user_events_new RENAME TO user_events;
CREATE INDEX user_events_by_user ON user_events (user_ref, id);
