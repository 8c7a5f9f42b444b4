//! `[submitter]` and `[object_store]` values out of range are refused with the key named.

use std::path::Path;

use splatfleet_common::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, Path::new("test.toml"), std::iter::empty())
}

#[test]
fn bad_submitter_and_object_store_values_name_their_key() {
    for (text, key) in [
        ("[submitter]\nconcurrency = 0\n", "submitter.concurrency"),
        (
            "[submitter]\nsubmit_timeout_secs = 0\n",
            "submitter.submit_timeout_secs",
        ),
        (
            "[submitter]\nmax_send_tries = 0\n",
            "submitter.max_send_tries",
        ),
        (
            "[submitter]\nretry_initial_ms = 10\nretry_max_ms = 5\n",
            "submitter.retry_max_ms",
        ),
        (
            "[submitter]\ndb_retry_initial_ms = 10\ndb_retry_max_ms = 5\n",
            "submitter.db_retry_max_ms",
        ),
        (
            "[submitter]\nmax_artifact_bytes = 0\n",
            "submitter.max_artifact_bytes",
        ),
        (
            "[submitter]\nretry_max_ms = \"soon\"\n",
            "submitter.retry_max_ms",
        ),
        (
            "[submitter]\nsubmit_timeout = 3\n",
            "submitter.submit_timeout",
        ),
        ("[object_store]\nroot = \"\"\n", "object_store.root"),
        (
            "[object_store]\nmax_object_bytes = 0\n",
            "object_store.max_object_bytes",
        ),
        (
            "[object_store]\ns3_bucket = \"Bad_Bucket\"\n",
            "object_store.s3_bucket",
        ),
        (
            "[object_store]\ns3_endpoint = \"http://minio:9000\"\n",
            "object_store.s3_endpoint",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn submitter_keys_can_be_overridden_from_the_environment() {
    let config = Config::from_toml_with_env(
        "",
        Path::new("test.toml"),
        [
            (
                "SPLATFLEET__SUBMITTER__SUBMIT_TIMEOUT_SECS".to_owned(),
                "30".to_owned(),
            ),
            (
                "SPLATFLEET__OBJECT_STORE__ROOT".to_owned(),
                "/srv/artifacts".to_owned(),
            ),
        ],
    )
    .expect("config");
    assert_eq!(config.submitter.submit_timeout_secs, 30);
    assert_eq!(config.object_store.root, Path::new("/srv/artifacts"));
    assert_eq!(config.submitter.max_send_tries, 100, "the default");
}

#[test]
fn the_submitter_binary_exits_78_naming_a_wrongly_typed_key() {
    splatfleet_tests::check_role_refuses_wrong_types(
        Path::new(env!("CARGO_BIN_EXE_splatfleet-submitter")),
        &[
            (
                "[submitter]\nmax_send_tries = 2.5\n",
                ("SPLATFLEET__SUBMITTER__MAX_SEND_TRIES", "2.5"),
                "submitter.max_send_tries",
            ),
            (
                "[object_store]\nmax_object_bytes = true\n",
                ("SPLATFLEET__OBJECT_STORE__MAX_OBJECT_BYTES", "yes"),
                "object_store.max_object_bytes",
            ),
            (
                "[database]\nport = \"five\"\n",
                ("SPLATFLEET__DATABASE__PORT", "five"),
                "database.port",
            ),
        ],
    );
}
