-- Issue 21's selection leaves validators out for two more reasons: `below_top_n` (it passed
-- every filter but ranked below puller.top_validators by puller.rank_by) and
-- `protocol_version` (its axon announces an SDK version outside puller.axon_versions).
ALTER TABLE validator_exclusions DROP CONSTRAINT validator_exclusions_reason_check;
ALTER TABLE validator_exclusions ADD CONSTRAINT validator_exclusions_reason_check
    CHECK (reason IN (
        'not_serving', 'low_stake', 'no_permit', 'config_blacklist', 'auto_blacklist',
        'unauthorized', 'below_top_n', 'protocol_version'));
