-- The event log's identity, random, made with the database. Live streams in Redis
-- number their entries by the places of this log's events, and a new database numbers
-- its events from 1 again: the streams' keys carry this identity, so a new log never
-- meets the entries of an old one.
ALTER TABLE feed_progress ADD COLUMN log_id TEXT NOT NULL DEFAULT '';
UPDATE feed_progress SET log_id = lower(hex(randomblob(16)));
