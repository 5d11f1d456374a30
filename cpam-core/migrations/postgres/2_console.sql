
ALTER TABLE users ADD COLUMN ip_connect_mode TEXT NOT NULL DEFAULT 'global';

CREATE TABLE user_customers (
    user_id TEXT NOT NULL REFERENCES users (id),
    customer_id TEXT NOT NULL REFERENCES customers (id),
    PRIMARY KEY (user_id, customer_id)
);
CREATE INDEX user_customers_customer ON user_customers (customer_id);

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
