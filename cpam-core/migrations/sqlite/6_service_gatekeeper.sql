-- A service belongs to a gatekeeper (the network its target lives in), not
-- only to the customer: a profile of another gatekeeper of the same
-- customer cannot reach it. NULL: any gatekeeper of the customer (services
-- made before this version whose customer had several gatekeepers).
-- A customer with exactly one gatekeeper has its services bound to it.
ALTER TABLE services ADD COLUMN gatekeeper_id TEXT;

UPDATE services SET gatekeeper_id = (
    SELECT g.id FROM gatekeepers g WHERE g.customer_id = services.customer_id
)
WHERE (SELECT COUNT(*) FROM gatekeepers g WHERE g.customer_id = services.customer_id) = 1;
