//! The `[puller]` section: defaults load, and each bad value is refused naming its key.

use std::path::Path;

use splatfleet_common::config::{Config, ConfigError};

fn key_of(text: &str) -> String {
    match Config::from_toml_with_env(text, Path::new("test.toml"), std::iter::empty()) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn bad_puller_values_name_their_key() {
    assert_eq!(
        key_of("[puller]\nbacklog_factor = 0.5\n"),
        "puller.backlog_factor"
    );
    assert_eq!(key_of("[puller]\ntick_ms = 0\n"), "puller.tick_ms");
    assert_eq!(
        key_of("[puller]\nbackoff_initial_ms = 10\nbackoff_max_ms = 5\n"),
        "puller.backoff_max_ms"
    );
    assert_eq!(
        key_of("[puller]\nblacklist_hotkeys = [\"not-a-hotkey\"]\n"),
        "puller.blacklist_hotkeys"
    );
    assert_eq!(
        key_of("[puller]\nauto_blacklist_min_acceptance = 1.5\n"),
        "puller.auto_blacklist_min_acceptance"
    );
    assert_eq!(
        key_of("[puller]\nmax_concurrent_pulls = 0\n"),
        "puller.max_concurrent_pulls"
    );
    assert!(key_of("[puller]\nnot_a_key = 1\n").starts_with("puller"));
    assert_eq!(key_of("[puller]\ntick_ms = \"fast\"\n"), "puller.tick_ms");
}

#[test]
fn environment_overrides_puller_keys() {
    let config = Config::from_toml_with_env(
        "[puller]\ntick_ms = 100\n",
        Path::new("test.toml"),
        [(
            "SPLATFLEET__PULLER__BACKLOG_FACTOR".to_owned(),
            "2.5".to_owned(),
        )],
    )
    .expect("loads");
    assert_eq!(config.puller.tick_ms, 100);
    assert_eq!(config.puller.backlog_factor, 2.5);
}

#[test]
fn the_puller_binary_exits_78_naming_a_wrongly_typed_key() {
    splatfleet_tests::check_role_refuses_wrong_types(
        std::path::Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")),
        &[
            (
                "[puller]\ntick_ms = \"fast\"\n",
                ("SPLATFLEET__PULLER__TICK_MS", "fast"),
                "puller.tick_ms",
            ),
            (
                "[dendrite]\nmax_response_bytes = \"8 MB\"\n",
                ("SPLATFLEET__DENDRITE__MAX_RESPONSE_BYTES", "lots"),
                "dendrite.max_response_bytes",
            ),
            (
                "[discovery]\nmin_stake = \"much\"\n",
                ("SPLATFLEET__DISCOVERY__MIN_STAKE", "much"),
                "discovery.min_stake",
            ),
            (
                "[broker]\ndelivery_limit = [1, 2]\n",
                ("SPLATFLEET__BROKER__DELIVERY_LIMIT", "lots"),
                "broker.delivery_limit",
            ),
        ],
    );
}
