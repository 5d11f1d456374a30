-- Server nodes sharing the database: each registers at start and writes a
-- heartbeat every few seconds. A node whose heartbeat is older than the
-- timeout is lost: a survivor removes its row, releases the gatekeeper links
-- it held and ends its live sessions. A second process cannot register an id
-- whose heartbeat is fresh.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    peer_address TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
