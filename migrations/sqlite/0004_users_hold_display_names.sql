-- The display name lives in `users` only: a puppet is a user with a registration time.
ALTER TABLE users ADD COLUMN registered_at INTEGER;
INSERT OR IGNORE INTO users (user_id, display_name, created_at)
    SELECT user_id, display_name, registered_at FROM puppets;
UPDATE users SET registered_at = (SELECT p.registered_at FROM puppets p WHERE p.user_id = users.user_id)
    WHERE user_id IN (SELECT user_id FROM puppets);
-- `puppets` is no longer read; it stays for daemons of the previous version still
-- running during a rolling upgrade, and goes in a later migration.

-- Each room's newest message, set by the feed (which decides what a message is). The
-- rooms indexed before this migration take theirs from the event log, once.
ALTER TABLE rooms ADD COLUMN last_event_id TEXT;
UPDATE rooms SET last_event_id = (
    SELECT e.event_id FROM room_events e
    WHERE e.room_id = rooms.room_id AND e.state_key IS NULL
      AND e.event_type IN ('m.room.message', 'm.room.encrypted', 'm.sticker')
    ORDER BY e.seq DESC LIMIT 1);
