-- A partner the operator disabled: its keys stop working and its postbacks are held (events
-- are still accepted) until it is enabled again. NULL while enabled.
ALTER TABLE partners ADD COLUMN disabled_at INTEGER;

-- The event's OrderId, copied at accept so that a partner's deliveries can be found by order
-- without reading events. NULL when the event has none.
ALTER TABLE deliveries ADD COLUMN order_id TEXT;

-- Finding a partner's deliveries by order; partial, so that events without an order id cost
-- nothing, and the filtered listing walks only the order's rows.
CREATE INDEX deliveries_by_order ON deliveries (partner_id, order_id) WHERE order_id IS NOT NULL;
