-- A live delivery to K members writes K stream entries with one dedup key. Keyed by
-- (dedup_key, user_id), the K entries of the dedup index sit side by side, where keyed
-- by (user_id, dedup_key) each went into a page of its own. SQLite cannot change a
-- table's UNIQUE constraint, so the table is rebuilt; its AUTOINCREMENT counter is
-- carried over, so no id a client holds as a cursor is ever given again.
CREATE TABLE user_events_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL,
    dedup_key  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (dedup_key, user_id)
);
INSERT INTO user_events_new (id, user_id, dedup_key, kind, payload, created_at)
SELECT id, user_id, dedup_key, kind, payload, created_at FROM user_events;
DELETE FROM sqlite_sequence WHERE name = 'user_events_new';
UPDATE sqlite_sequence SET name = 'user_events_new' WHERE name = 'user_events';
DROP TABLE user_events;
ALTER TABLE user_events_new RENAME TO user_events;
CREATE INDEX user_events_by_user ON user_events (user_id, id);
