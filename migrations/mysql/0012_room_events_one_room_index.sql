-- Every recorded event went into two indexes by room: (room_id, seq) and
-- (room_id, is_message, seq). Only the second is read in the daemon's work (a room's
-- last message, unread counts, the newest event when a read marker names an unknown
-- one), so the first goes: one index fewer to write for every event recorded.
ALTER TABLE room_events DROP INDEX room_events_by_room;
