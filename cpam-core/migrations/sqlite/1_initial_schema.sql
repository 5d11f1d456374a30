
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE gatekeepers (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL UNIQUE,
    public_key TEXT,
    fingerprint TEXT UNIQUE,
    registered_at BIGINT,
    created_at BIGINT NOT NULL,
    last_contact BIGINT,
    online BIGINT NOT NULL DEFAULT 0,
    customer_disabled BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gatekeepers_customer ON gatekeepers (customer_id);

CREATE TABLE registration_codes (
    code_hash TEXT PRIMARY KEY,
    gatekeeper_id TEXT NOT NULL REFERENCES gatekeepers (id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX registration_codes_gatekeeper ON registration_codes (gatekeeper_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE user_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    gatekeeper_id TEXT REFERENCES gatekeepers (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX user_keys_user ON user_keys (user_id);

CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    builtin BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE role_permissions (
    role_name TEXT NOT NULL REFERENCES roles (name),
    permission TEXT NOT NULL,
    PRIMARY KEY (role_name, permission)
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id),
    role_name TEXT NOT NULL REFERENCES roles (name),
    PRIMARY KEY (user_id, role_name)
);

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    target_host TEXT NOT NULL,
    target_port BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (customer_id, name)
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    service_id TEXT NOT NULL REFERENCES services (id),
    not_before BIGINT NOT NULL,
    not_after BIGINT,
    schedule_days BIGINT,
    schedule_start_minute BIGINT,
    schedule_end_minute BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX grants_user_service ON grants (user_id, service_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    gatekeeper_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    target_host TEXT NOT NULL,
    target_port BIGINT NOT NULL,
    grant_id TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    bytes_up BIGINT NOT NULL DEFAULT 0,
    bytes_down BIGINT NOT NULL DEFAULT 0,
    end_reason TEXT,
    end_detail TEXT
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_ended ON sessions (ended_at);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    customer_id TEXT,
    session_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
