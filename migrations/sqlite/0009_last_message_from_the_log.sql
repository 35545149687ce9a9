-- A room's last message is read from the event log's message index, where it is from
-- its recording on; the feed no longer keeps it in a column of its own. Messages fed
-- before migration 0005 are not marked as messages (so old messages do not all count
-- as unread); each room's last one is marked now, so the room list keeps showing it.
UPDATE room_events SET is_message = 1
WHERE event_id IN (SELECT last_event_id FROM rooms WHERE last_event_id IS NOT NULL);
ALTER TABLE rooms DROP COLUMN last_event_id;
