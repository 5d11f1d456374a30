-- Each node's key for the links between nodes (the peer relay): the public
-- half of a key the node makes at every start, in OpenSSH form. A node
-- accepts a peer link only from a live node presenting the key of its row.
-- Empty for a node that registered before this version.
ALTER TABLE nodes ADD COLUMN node_key TEXT NOT NULL DEFAULT '';
