-- Times are Unix milliseconds (UTC) so both backends store them the same way.

CREATE TABLE partners (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One row per partner and event family; `version` grows on every save so that workers can tell
-- their compiled copy is stale.
CREATE TABLE settings (
    partner_id      TEXT NOT NULL REFERENCES partners(id),
    family          TEXT NOT NULL,
    body            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    disabled_reason TEXT,
    disabled_at     INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (partner_id, family)
);

CREATE TABLE events (
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    id           TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL,
    body         TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (partner_id, id)
);

-- status: pending (due at next_at; a claim pushes next_at forward by the lease), blocked (waits
-- for the created postback of its inquiry), held (endpoint disabled), delivered, failed.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    partner_id   TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    inquiry_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    next_at      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    blocked_by   TEXT,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    FOREIGN KEY (partner_id, event_id) REFERENCES events(partner_id, id)
);

CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_partner ON deliveries (partner_id, id);
CREATE INDEX deliveries_by_event ON deliveries (partner_id, event_id);
CREATE INDEX deliveries_by_inquiry ON deliveries (partner_id, inquiry_id);
CREATE INDEX deliveries_blocked ON deliveries (blocked_by) WHERE blocked_by IS NOT NULL;

CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES deliveries(id),
    number           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    request          TEXT NOT NULL,
    response_status  INTEGER,
    response_headers TEXT,
    response_body    TEXT,
    verdict          TEXT NOT NULL,
    error            TEXT
);

CREATE INDEX attempts_by_delivery ON attempts (delivery_id, number);
