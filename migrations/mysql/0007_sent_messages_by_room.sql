-- A message sent through the API is keyed by (user, room, txn_id), as Matrix keys a
-- send by its path: the same txn_id in another room is another message. Rows from
-- before take their room from the event log; one whose event never arrived keeps an
-- empty room and matches no send.
ALTER TABLE sent_messages ADD COLUMN room_id VARCHAR(255) NOT NULL DEFAULT '' AFTER user_id;
UPDATE sent_messages s JOIN room_events e ON e.event_id = s.event_id SET s.room_id = e.room_id;
ALTER TABLE sent_messages DROP PRIMARY KEY, ADD PRIMARY KEY (user_id, room_id, txn_id);
