-- How many leases a delivery was given: every claim and the lease at accept add one, and a
-- lease's number is its fencing token. An outcome moves its delivery only while the number is
-- still its lease's, so a worker whose lease lapsed (the delivery claimed again meanwhile)
-- cannot overwrite what the newer claim records.
ALTER TABLE deliveries ADD COLUMN lease_seq INTEGER NOT NULL DEFAULT 0;

-- 1 for an attempt recorded after a newer claim had taken its delivery over: the receiver saw
-- it, so the log keeps it, but it did not move the delivery.
ALTER TABLE attempts ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
