-- A live delivery to K members writes K stream entries with one dedup key. Keyed by
-- (dedup_key, user_id), the K entries of the dedup index sit side by side, where keyed
-- by (user_id, dedup_key) each went into a page of its own.
ALTER TABLE user_events
    DROP INDEX user_events_dedup,
    ADD UNIQUE KEY user_events_dedup (dedup_key, user_id);
