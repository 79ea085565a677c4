-- Plugins partners upload. The binary is kept here (the source of truth); compiled artifacts
-- live in a cache folder named by sha256.
CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL REFERENCES partners(id),
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    exports     TEXT NOT NULL,
    wasm        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX plugins_by_partner ON plugins (partner_id, id);

-- What plugins did during an attempt: fuel, memory, time, logs, errors.
ALTER TABLE attempts ADD COLUMN plugins TEXT;

-- Until when a worker holds a delivery it claimed; NULL when no worker does. A manual retry of a
-- pending delivery is refused while it is held, so it is never sent twice at once.
ALTER TABLE deliveries ADD COLUMN leased_until INTEGER;
