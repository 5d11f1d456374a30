-- Sessions record their protocol and the server node that runs them; a
-- direct PSM session has no gatekeeper. Gatekeepers record the node that
-- holds their link while they are online.
--
-- SQLite cannot drop NOT NULL in place: the sessions table is rebuilt
-- (nothing references it). Rows from before this version ran over the TCP
-- tunnel and have no node.
CREATE TABLE sessions_v4 (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    gatekeeper_id TEXT,
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
    end_detail TEXT,
    protocol TEXT NOT NULL DEFAULT 'tcp',
    node_id TEXT
);
INSERT INTO sessions_v4 (id, user_id, user_name, customer_id, gatekeeper_id, service_id,
    service_name, target_host, target_port, grant_id, started_at, ended_at, bytes_up,
    bytes_down, end_reason, end_detail)
SELECT id, user_id, user_name, customer_id, gatekeeper_id, service_id,
    service_name, target_host, target_port, grant_id, started_at, ended_at, bytes_up,
    bytes_down, end_reason, end_detail
FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v4 RENAME TO sessions;
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_ended ON sessions (ended_at);
CREATE INDEX sessions_node_open ON sessions (node_id, ended_at);

ALTER TABLE gatekeepers ADD COLUMN node_id TEXT;
