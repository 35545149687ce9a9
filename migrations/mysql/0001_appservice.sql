-- Transactions pushed by the homeserver, keyed by id and body hash: Synapse restarts
-- its txnIds at 1, so the id alone cannot identify a transaction.
CREATE TABLE appservice_transactions (
    txn_id       VARCHAR(255) NOT NULL,
    body_sha256  BINARY(32)   NOT NULL,
    received_at  BIGINT       NOT NULL,
    event_count  INT          NOT NULL,
    PRIMARY KEY (txn_id, body_sha256)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every room event received, once per event_id.
CREATE TABLE room_events (
    seq              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id         VARCHAR(255) NOT NULL,
    room_id          VARCHAR(255) NOT NULL,
    sender           VARCHAR(255) NOT NULL,
    event_type       VARCHAR(255) NOT NULL,
    state_key        TEXT,
    origin_server_ts BIGINT       NOT NULL,
    json             LONGTEXT     NOT NULL,
    received_at      BIGINT       NOT NULL,
    UNIQUE KEY room_events_event_id (event_id),
    KEY room_events_by_room (room_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Puppet users registered on the homeserver.
CREATE TABLE puppets (
    user_id       VARCHAR(255) NOT NULL PRIMARY KEY,
    display_name  VARCHAR(1024),
    registered_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
