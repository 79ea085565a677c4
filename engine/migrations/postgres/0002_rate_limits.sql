-- The rate limits every worker process shares: per partner, GCRA's theoretical arrival time
-- (the next free send slot), in microseconds of the database's clock, so that workers need not
-- agree on the time. A row is written only when a slot is taken, so at most at its partner's
-- rate; a partner's row is never in the way of another's. Free space on each page lets those
-- updates stay on their page (tat is in no index). Ids are in the "C" collation, as everywhere.
CREATE TABLE rate_limits (
    partner_id TEXT COLLATE "C" PRIMARY KEY,
    tat        BIGINT NOT NULL
) WITH (fillfactor = 50);
