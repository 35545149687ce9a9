-- Names and display names are set by anyone in a room, at any length.
ALTER TABLE users MODIFY display_name TEXT;
ALTER TABLE puppets MODIFY display_name TEXT;

-- Room events not yet fed to the room index and the live streams (set once done, so
-- a crash between recording and feeding is finished at the next start).
ALTER TABLE room_events ADD COLUMN ingested BIGINT NOT NULL DEFAULT 0;
CREATE INDEX room_events_pending ON room_events (ingested, seq);

-- Rooms the appservice has seen, with what the API shows of them.
CREATE TABLE rooms (
    room_id    VARCHAR(255)  NOT NULL PRIMARY KEY,
    name       TEXT,
    is_direct  BIGINT        NOT NULL DEFAULT 0,
    encrypted  BIGINT        NOT NULL DEFAULT 0,
    updated_at BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The latest membership of every user in every room the appservice sees.
CREATE TABLE memberships (
    room_id      VARCHAR(255)  NOT NULL,
    user_id      VARCHAR(255)  NOT NULL,
    membership   VARCHAR(32)   NOT NULL,
    display_name TEXT,
    sender       VARCHAR(255)  NOT NULL,
    updated_at   BIGINT        NOT NULL,
    PRIMARY KEY (room_id, user_id),
    KEY memberships_by_user (user_id, membership)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Messages sent through the API: the same (user, txn_id) gives the same event.
CREATE TABLE sent_messages (
    user_id  VARCHAR(255) NOT NULL,
    txn_id   VARCHAR(255) NOT NULL,
    event_id VARCHAR(255) NOT NULL,
    sent_at  BIGINT       NOT NULL,
    PRIMARY KEY (user_id, txn_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Each user's live stream in embedded mode (Redis streams in production).
CREATE TABLE user_events (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id    VARCHAR(255) NOT NULL,
    dedup_key  VARCHAR(255) NOT NULL,
    kind       VARCHAR(32)  NOT NULL,
    payload    LONGTEXT     NOT NULL,
    created_at BIGINT       NOT NULL,
    UNIQUE KEY user_events_dedup (user_id, dedup_key),
    KEY user_events_by_user (user_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Expired sessions are dropped by their absolute end.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
