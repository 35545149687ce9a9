-- ChatSender users: one per person (a puppet on the homeserver).
CREATE TABLE users (
    user_id      TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT,
    created_at   INTEGER NOT NULL
);

-- Registered public keys; several may belong to one user (one per device).
CREATE TABLE login_keys (
    key_id        TEXT    NOT NULL PRIMARY KEY,
    fingerprint   TEXT    NOT NULL UNIQUE,
    public_key    BLOB    NOT NULL,
    user_id       TEXT    NOT NULL REFERENCES users (user_id),
    name          TEXT,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX login_keys_by_user ON login_keys (user_id);

-- Sessions of embedded mode (Redis keeps them in production). Tokens are stored only
-- as their SHA-256.
CREATE TABLE sessions (
    token_hash   BLOB    NOT NULL PRIMARY KEY,
    key_id       TEXT    NOT NULL REFERENCES login_keys (key_id),
    user_id      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_key ON sessions (key_id);

-- Logins, key creation and revocation. Never tokens or nonces.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    key_id  TEXT,
    user_id TEXT,
    ip      TEXT,
    detail  TEXT
);
