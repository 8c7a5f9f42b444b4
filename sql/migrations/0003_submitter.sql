-- The submitter's records: who is sending a submission right now (a lease, so a redelivered
-- result whose sender died is taken over once the lease runs out, while one still being sent
-- is left alone), and the final task outcome per validator for the reports.
--
-- A 'sending' row with claimed_by NULL belongs to the puller (an empty release of a lost task).

ALTER TABLE submissions
    ADD COLUMN claimed_by  text,
    ADD COLUMN lease_until timestamptz,
    -- Which worker's result this was, and the local score it was submitted with.
    ADD COLUMN worker      text,
    ADD COLUMN local_score real;

CREATE INDEX submissions_state_idx ON submissions (state) WHERE state <> 'completed';
CREATE INDEX submissions_task_fidelity_idx ON submissions (task_fidelity_score)
    WHERE state = 'completed' AND NOT empty;
