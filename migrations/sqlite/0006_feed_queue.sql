-- The events the feed has still to handle, by their place in the event log. Recording
-- adds them and feeding removes them, so an event's row (with its JSON) is written
-- once; before, marking it fed rewrote it.
CREATE TABLE feed_queue (
    seq INTEGER NOT NULL PRIMARY KEY
);
INSERT INTO feed_queue (seq) SELECT seq FROM room_events WHERE ingested = 0;
-- Whether an event is a message is read from its type at recording now.
UPDATE room_events SET is_message = 1
WHERE ingested = 0 AND state_key IS NULL
  AND event_type IN ('m.room.message', 'm.room.encrypted', 'm.sticker');
DROP INDEX room_events_pending;
ALTER TABLE room_events DROP COLUMN ingested;
