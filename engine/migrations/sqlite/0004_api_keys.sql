-- Credentials of API callers. Only a token's SHA-256 is kept: tokens are 32+ random bytes, so a
-- plain hash cannot be reversed, and a copied database file holds no usable credential.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    -- operator, partner or ingest
    kind          TEXT NOT NULL,
    -- The partner a partner key acts for; NULL for the other kinds.
    partner_id    TEXT REFERENCES partners(id),
    -- The partners an ingest key may post events for, as a JSON array; NULL for all.
    partners      TEXT,
    -- The first characters after pw_live_, to tell keys apart in listings.
    prefix        TEXT NOT NULL,
    -- Lowercase hex SHA-256 of the whole token.
    hash          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    last_used_at  INTEGER
);

CREATE INDEX api_keys_by_partner ON api_keys (partner_id, id);
