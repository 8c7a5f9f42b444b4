-- gate_mode = "validator" (DESIGN.md §7): each attempt records which mode judged it and, in
-- validator mode, the validator's score the worker predicted on its own renders with its
-- parts as the validation service names them. The submitter fills these from the attempt's
-- gate_metrics map (predicted_score, predicted_iqa, predicted_alignment, predicted_ssim,
-- predicted_lpips, alignment_assumed, and gate_mode_validator / gate_mode_geometry /
-- validity_only = 1 for the mode), so the calibration report compares predicted scores with
-- the validators' verdicts in plain columns. All nullable: older attempts, attempts that
-- never reached the gate, and geometry-mode attempts have no prediction.
ALTER TABLE attempts
    ADD COLUMN gate_mode text
        CHECK (gate_mode IN ('validator', 'geometry', 'validity_only')),
    ADD COLUMN predicted_score double precision,
    ADD COLUMN predicted_iqa double precision,
    ADD COLUMN predicted_alignment double precision,
    ADD COLUMN predicted_ssim double precision,
    ADD COLUMN predicted_lpips double precision,
    ADD COLUMN alignment_assumed boolean;
