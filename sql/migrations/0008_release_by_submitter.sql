-- Sign once: the submitter is the only role that signs and sends. The puller no longer sends
-- the empty submission that releases a task the fleet lost; it records the request (a
-- `sending` submission row whose `claimed_by` is NULL, as its own releases were before) and a
-- submitter's release loop takes it, signs, sends and records it (common/src/ledger/release.rs).
--   released_by  the submitter instance sending the release now; NULL while it waits;
--   lease_until  (existing column) while released_by is set, when that sender's hold runs
--                out (a sender that died is taken over); while it waits, the earliest time of
--                the next try after a failed one (NULL: at once).
ALTER TABLE submissions ADD COLUMN released_by text;

-- The release loop's poll: only waiting or held releases are in it.
CREATE INDEX submissions_release_requests_idx ON submissions (lease_until)
    WHERE state = 'sending' AND claimed_by IS NULL;
