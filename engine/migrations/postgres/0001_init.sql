-- The schema of the SQLite backend's migrations, as one: the same tables, columns and meanings
-- (see engine/migrations/sqlite). Times are Unix milliseconds (UTC), ids are text.
--
-- Ids are text in the "C" collation: cursors and listings walk them in byte order, as SQLite
-- compares text, whatever the database's own collation (a linguistic one such as en_US would
-- order some ids differently, and its indexes could not serve a bytewise ORDER BY).

CREATE TABLE partners (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    name                  TEXT NOT NULL,
    -- Stored sealed (encrypted) by the engine; never plain.
    secret                TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until BIGINT,
    disabled_at           BIGINT
);

-- One row per partner and event family; `version` grows on every save so that workers can tell
-- their compiled copy is stale.
CREATE TABLE settings (
    partner_id      TEXT COLLATE "C" NOT NULL REFERENCES partners(id),
    family          TEXT NOT NULL,
    body            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    disabled_reason TEXT,
    disabled_at     BIGINT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (partner_id, family)
);

CREATE TABLE events (
    partner_id   TEXT COLLATE "C" NOT NULL REFERENCES partners(id),
    id           TEXT COLLATE "C" NOT NULL,
    event_type   TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    body         TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (partner_id, id)
);

-- status: pending (due at next_at; a claim pushes next_at forward by the lease), blocked (waits
-- for the created postback of its inquiry), held (endpoint disabled), delivered, failed.
CREATE TABLE deliveries (
    id           TEXT COLLATE "C" PRIMARY KEY,
    partner_id   TEXT COLLATE "C" NOT NULL,
    event_id     TEXT COLLATE "C" NOT NULL,
    event_type   TEXT NOT NULL,
    inquiry_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    next_at      BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    blocked_by   TEXT COLLATE "C",
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- Until when a worker holds the delivery it claimed; NULL when no worker does.
    leased_until BIGINT,
    -- The event's OrderId, copied at accept; NULL when the event has none.
    order_id     TEXT,
    -- The number of the delivery's latest lease, its fencing token (see the SQLite migration
    -- 0008_lease_fencing.sql).
    lease_seq    BIGINT NOT NULL DEFAULT 0,
    -- The order deliveries were recorded in (SQLite's rowid): it breaks ties between deliveries
    -- due at the same time, so that a partner's postbacks due together go in the order they came.
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    FOREIGN KEY (partner_id, event_id) REFERENCES events(partner_id, id)
);

-- Due deliveries are found partner by partner, so that a claim takes turns between partners.
CREATE INDEX deliveries_pending_by_partner ON deliveries (partner_id, next_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_by_partner ON deliveries (partner_id, id);
CREATE INDEX deliveries_by_inquiry ON deliveries (partner_id, inquiry_id);
CREATE INDEX deliveries_blocked ON deliveries (blocked_by) WHERE blocked_by IS NOT NULL;
CREATE INDEX deliveries_by_order ON deliveries (partner_id, order_id) WHERE order_id IS NOT NULL;

CREATE TABLE attempts (
    id               TEXT COLLATE "C" PRIMARY KEY,
    delivery_id      TEXT COLLATE "C" NOT NULL REFERENCES deliveries(id),
    number           BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    request          TEXT NOT NULL,
    response_status  BIGINT,
    response_headers TEXT,
    response_body    TEXT,
    verdict          TEXT NOT NULL,
    error            TEXT,
    -- What plugins did during the attempt: fuel, memory, time, logs, errors.
    plugins          TEXT,
    -- 1 for an attempt recorded after a newer claim had taken its delivery over.
    superseded       BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX attempts_by_delivery ON attempts (delivery_id, number);

-- Plugins partners upload; the binary is the source of truth, compiled artifacts are cached
-- by each worker, named by sha256.
CREATE TABLE plugins (
    id          TEXT COLLATE "C" PRIMARY KEY,
    partner_id  TEXT COLLATE "C" NOT NULL REFERENCES partners(id),
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    exports     TEXT NOT NULL,
    wasm        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX plugins_by_partner ON plugins (partner_id, id);

-- Credentials of API callers; only a token's SHA-256 is kept.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    -- operator, partner or ingest
    kind          TEXT NOT NULL,
    partner_id    TEXT COLLATE "C" REFERENCES partners(id),
    -- The partners an ingest key may post events for, as a JSON array; NULL for all.
    partners      TEXT,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);

CREATE INDEX api_keys_by_partner ON api_keys (partner_id, id);
