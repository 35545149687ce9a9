-- A message sent through the API is keyed by (user, room, txn_id), as Matrix keys a
-- send by its path: the same txn_id in another room is another message. Rows from
-- before take their room from the event log; one whose event never arrived keeps an
-- empty room and matches no send.
CREATE TABLE sent_messages_by_room (
    user_id  TEXT    NOT NULL,
    room_id  TEXT    NOT NULL,
    txn_id   TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, txn_id)
);
INSERT INTO sent_messages_by_room (user_id, room_id, txn_id, event_id, sent_at)
SELECT s.user_id, COALESCE(e.room_id, ''), s.txn_id, s.event_id, s.sent_at
FROM sent_messages s LEFT JOIN room_events e ON e.event_id = s.event_id;
DROP TABLE sent_messages;
ALTER TABLE sent_messages_by_room RENAME TO sent_messages;
