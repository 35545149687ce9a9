-- A delivery to K members stored its payload K times, beside the user id and the dedup
-- key. Now the payload is stored once per (dedup key, kind) in `stream_payloads`, each
-- user once in `stream_users`, and an entry is three numbers and a time: a message to
-- 10,000 streams writes one payload and 10,000 small rows. Entries keep their ids and
-- the table its AUTO_INCREMENT counter.
CREATE TABLE stream_users (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL,
    UNIQUE KEY stream_users_by_id (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO stream_users (user_id) SELECT DISTINCT user_id FROM user_events ORDER BY user_id;

CREATE TABLE stream_payloads (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    dedup_key  VARCHAR(255) NOT NULL,
    kind       VARCHAR(32)  NOT NULL,
    payload    LONGTEXT     NOT NULL,
    created_at BIGINT       NOT NULL,
    UNIQUE KEY stream_payloads_dedup (dedup_key, kind)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT IGNORE INTO stream_payloads (dedup_key, kind, payload, created_at)
SELECT dedup_key, kind, payload, created_at FROM user_events ORDER BY id;

ALTER TABLE user_events
    ADD COLUMN user_ref BIGINT NULL,
    ADD COLUMN payload_id BIGINT NULL;
UPDATE user_events e
JOIN stream_users u ON u.user_id = e.user_id
JOIN stream_payloads p ON p.dedup_key = e.dedup_key AND p.kind = e.kind
SET e.user_ref = u.id, e.payload_id = p.id;
ALTER TABLE user_events
    DROP INDEX user_events_dedup,
    DROP INDEX user_events_by_user,
    DROP COLUMN user_id,
    DROP COLUMN dedup_key,
    DROP COLUMN kind,
    DROP COLUMN payload,
    MODIFY user_ref BIGINT NOT NULL,
    MODIFY payload_id BIGINT NOT NULL,
    ADD UNIQUE KEY user_events_dedup (payload_id, user_ref),
    ADD KEY user_events_by_user (user_ref, id);
