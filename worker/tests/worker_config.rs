//! Bad-input suite, config: the worker binary refuses a config with a wrongly typed key, from
//! the file or from the environment, with exit status 78 and the key named.

#[test]
fn the_worker_binary_exits_78_naming_a_wrongly_typed_key() {
    splatfleet_tests::check_role_refuses_wrong_types(
        std::path::Path::new(env!("CARGO_BIN_EXE_splatfleet-worker")),
        &[
            (
                "[worker]\nslots = \"two\"\n",
                ("SPLATFLEET__WORKER__SLOTS", "two"),
                "worker.slots",
            ),
            (
                "[worker]\ngate_pass_threshold = \"high\"\n",
                ("SPLATFLEET__WORKER__GATE_PASS_THRESHOLD", "high"),
                "worker.gate_pass_threshold",
            ),
            (
                "[worker]\nmax_response_bytes = -1\n",
                ("SPLATFLEET__WORKER__MAX_RESPONSE_BYTES", "-1"),
                "worker.max_response_bytes",
            ),
        ],
    );
}
