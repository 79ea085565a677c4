-- A rotated partner's previous signing secret (stored as the current one is, encrypted), kept
-- while postbacks still carry its signature beside the new one, until previous_secret_until
-- (Unix ms); both are NULL outside a rotation's grace period.
ALTER TABLE partners ADD COLUMN previous_secret TEXT;
ALTER TABLE partners ADD COLUMN previous_secret_until INTEGER;
