-- The feed's progress is one number: the place in the event log up to which every
-- event has been fed. A recording first locks `event_log_writer`'s one row and holds
-- it until its commit is visible, so the log's rows commit in the order of their
-- places and no event can appear later below that number (without the lock, two
-- writers could commit a lower place after a higher one). Recording then writes no
-- queue row per event, and feeding updates one row instead of deleting one per event.
-- `feed_queue` stays, as a view of the same rows.
CREATE TABLE feed_progress (
    only_row    TINYINT NOT NULL PRIMARY KEY CHECK (only_row = 0),
    fed_through BIGINT NOT NULL
) ENGINE = InnoDB;
-- Up to the oldest queued event; with none queued, every event is fed. An event fed
-- out of order above it is fed again, which delivers nothing twice.
INSERT INTO feed_progress (only_row, fed_through)
SELECT 0, COALESCE((SELECT MIN(seq) FROM feed_queue) - 1, (SELECT MAX(seq) FROM room_events), 0);
CREATE TABLE event_log_writer (
    only_row TINYINT NOT NULL PRIMARY KEY CHECK (only_row = 0)
) ENGINE = InnoDB;
INSERT INTO event_log_writer (only_row) VALUES (0);
DROP TABLE feed_queue;
CREATE VIEW feed_queue AS
SELECT seq FROM room_events WHERE seq > (SELECT fed_through FROM feed_progress);
