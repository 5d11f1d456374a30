-- The credential vault, checkouts and master passwords.
--
-- vault_keys: the data keys, each stored only wrapped (XChaCha20-Poly1305)
-- by the key-encryption key derived from the server's unseal secret
-- (`kek` names which: `key_file` or `passphrase`; `salt` is the passphrase's
-- Argon2id salt). A retired version has its wrapped key erased.
-- vault_credentials: one credential per service, encrypted under the data
-- key `key_version` (hex of nonce and ciphertext; never plaintext).
CREATE TABLE vault_keys (
    version BIGINT PRIMARY KEY,
    kek TEXT NOT NULL,
    salt TEXT,
    wrapped TEXT,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE vault_credentials (
    service_id TEXT PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    kind TEXT NOT NULL,
    key_version BIGINT NOT NULL REFERENCES vault_keys (version),
    ciphertext TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE INDEX vault_credentials_version ON vault_credentials (key_version);
-- The longest checkout a service allows (absent: the default).
CREATE TABLE checkout_limits (
    service_id TEXT PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    max_secs BIGINT NOT NULL
);
-- Checkouts stay as history when their service goes (names are copied).
CREATE TABLE checkouts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    ended_by TEXT
);
CREATE INDEX checkouts_user_service ON checkouts (user_id, service_id, ended_at);
CREATE INDEX checkouts_started ON checkouts (started_at);
-- Master passwords: Argon2id PHC strings, apart from the login password.
CREATE TABLE master_passwords (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
