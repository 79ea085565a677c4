-- A resent event finds its deliveries through its inquiry (deliveries_by_inquiry): an index on
-- the event cost every accepted event a B-tree insert to serve resends alone.
DROP INDEX IF EXISTS deliveries_by_event;
