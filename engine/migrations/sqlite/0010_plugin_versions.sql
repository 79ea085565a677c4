-- A plugin uploaded under a name it already has is a new version of it: versions count from 1
-- per partner and name. Plugins stored before are numbered in the order they were uploaded
-- (ids sort by creation).
ALTER TABLE plugins ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
UPDATE plugins SET version = (
    SELECT COUNT(*) FROM plugins AS earlier
     WHERE earlier.partner_id = plugins.partner_id AND earlier.name = plugins.name AND earlier.id <= plugins.id
);
CREATE UNIQUE INDEX plugins_by_name ON plugins (partner_id, name, version);

-- A partner's canary: a candidate plugin version serving a share of postbacks beside the
-- attached one, with each side's calls and failures over the current window. One row per
-- partner: the running canary, or the last one with how it ended.
CREATE TABLE canaries (
    partner_id          TEXT PRIMARY KEY REFERENCES partners(id),
    -- transform or classify
    slot                TEXT NOT NULL,
    plugin_id           TEXT NOT NULL,
    share_percent       INTEGER NOT NULL,
    window_ms           INTEGER NOT NULL,
    margin_percent      INTEGER NOT NULL,
    min_calls           INTEGER NOT NULL,
    -- running, detached, stopped or promoted
    state               TEXT NOT NULL,
    reason              TEXT,
    started_at          INTEGER NOT NULL,
    window_started_at   INTEGER NOT NULL,
    candidate_calls     INTEGER NOT NULL DEFAULT 0,
    candidate_failures  INTEGER NOT NULL DEFAULT 0,
    attached_calls      INTEGER NOT NULL DEFAULT 0,
    attached_failures   INTEGER NOT NULL DEFAULT 0,
    ended_at            INTEGER
);
