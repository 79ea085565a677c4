-- A claim's lease writes no indexed column of deliveries (see the rule for a due delivery in
-- engine/src/store/rules.rs), so that the row's new version can stay on its page without a new
-- index entry (a HOT update) when the page has room. New pages are filled to 50 % by inserts,
-- leaving the rest for the versions leases write; pages written before keep what they hold.
ALTER TABLE deliveries SET (fillfactor = 50);
