-- ChatSender users: one per person (a puppet on the homeserver).
CREATE TABLE users (
    user_id      VARCHAR(255)  NOT NULL PRIMARY KEY,
    display_name VARCHAR(1024),
    created_at   BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Registered public keys; several may belong to one user (one per device).
CREATE TABLE login_keys (
    key_id        CHAR(16)      NOT NULL PRIMARY KEY,
    fingerprint   CHAR(64)      NOT NULL,
    public_key    BINARY(32)    NOT NULL,
    user_id       VARCHAR(255)  NOT NULL,
    name          VARCHAR(255),
    created_at    BIGINT        NOT NULL,
    last_login_at BIGINT,
    revoked_at    BIGINT,
    UNIQUE KEY login_keys_fingerprint (fingerprint),
    KEY login_keys_by_user (user_id),
    CONSTRAINT login_keys_user FOREIGN KEY (user_id) REFERENCES users (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Sessions of embedded mode (Redis keeps them in production). Tokens are stored only
-- as their SHA-256.
CREATE TABLE sessions (
    token_hash   BINARY(32)   NOT NULL PRIMARY KEY,
    key_id       CHAR(16)     NOT NULL,
    user_id      VARCHAR(255) NOT NULL,
    created_at   BIGINT       NOT NULL,
    last_seen_at BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    KEY sessions_by_key (key_id),
    CONSTRAINT sessions_key FOREIGN KEY (key_id) REFERENCES login_keys (key_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Logins, key creation and revocation. Never tokens or nonces.
CREATE TABLE audit_log (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at      BIGINT       NOT NULL,
    event   VARCHAR(64)  NOT NULL,
    key_id  CHAR(16),
    user_id VARCHAR(255),
    ip      VARCHAR(64),
    detail  TEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
