-- Sessions record their protocol and the server node that runs them; a
-- direct PSM session has no gatekeeper. Gatekeepers record the node that
-- holds their link while they are online. Rows from before this version ran
-- over the TCP tunnel and have no node.
ALTER TABLE sessions ALTER COLUMN gatekeeper_id DROP NOT NULL;
ALTER TABLE sessions ADD COLUMN protocol TEXT NOT NULL DEFAULT 'tcp';
ALTER TABLE sessions ADD COLUMN node_id TEXT;
CREATE INDEX sessions_node_open ON sessions (node_id, ended_at);

ALTER TABLE gatekeepers ADD COLUMN node_id TEXT;
