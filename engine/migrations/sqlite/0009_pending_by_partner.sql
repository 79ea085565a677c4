-- Due deliveries are found partner by partner, so that a claim takes turns between partners
-- instead of draining the partner with the oldest backlog first: the index walks each
-- partner's pending deliveries in due order, and skips from one partner to the next. It
-- replaces the index of all pending deliveries in due order, so that a delivery costs no more
-- index writes than before; the earliest due time is now found partner by partner too.
CREATE INDEX deliveries_pending_by_partner ON deliveries (partner_id, next_at) WHERE status = 'pending';
DROP INDEX deliveries_due;
