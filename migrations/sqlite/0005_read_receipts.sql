-- Which recorded events are messages (decided by the feed), for unread counts. Events
-- fed before this migration stay unmarked: no receipts existed then, so counting them
-- would show every old message as unread.
ALTER TABLE room_events ADD COLUMN is_message INTEGER NOT NULL DEFAULT 0;
CREATE INDEX room_events_messages ON room_events (room_id, is_message, seq);

-- How far each user has read in each room (`m.read` receipts, ChatSender's users' own
-- and others'), by the position of the event in the event log; it only moves forward.
CREATE TABLE receipts (
    room_id    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
