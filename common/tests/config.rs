//! Config loading: the example file, environment overrides, and a clear error for each way
//! a file can be wrong. Secrets never show in `Debug`.

use std::path::{Path, PathBuf};

use splatfleet_common::config::{Config, ConfigError, GateMode, ValidationUnavailable};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/splatfleet.example.toml")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, Path::new("test.toml"), std::iter::empty())
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn example_file_loads_and_documents_the_defaults() {
    let loaded = Config::load_with_env(&example(), std::iter::empty()).expect("example loads");
    let defaults = Config::default();
    assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::load_with_env(
        Path::new("/nonexistent/splatfleet.toml"),
        std::iter::empty(),
    )
    .expect_err("missing");
    assert!(matches!(err, ConfigError::Missing { .. }));
    assert!(
        err.to_string().contains("/nonexistent/splatfleet.toml"),
        "{err}"
    );
}

#[test]
fn bad_toml_is_a_syntax_error_with_its_line() {
    let err = parse("[broker]\nprefix = \"unterminated\n").expect_err("bad toml");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let err = parse("[broker]\nprefixx = \"a\"\n").expect_err("unknown key");
    let message = err.to_string();
    assert!(
        matches!(err, ConfigError::Invalid { ref key, .. } if key == "broker.prefixx"),
        "{err:?}"
    );
    assert!(message.contains("unknown field `prefixx`"), "{message}");
    let err = parse("[brokr]\n").expect_err("unknown section");
    assert!(err.to_string().contains("brokr"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let err = parse("[broker]\ndelivery_limit = \"lots\"\n").expect_err("wrong type");
    assert!(
        matches!(err, ConfigError::Invalid { ref key, .. } if key == "broker.delivery_limit"),
        "{err:?}"
    );
    let err = parse("[puller]\nmetrics_addr = \"not an address\"\n").expect_err("bad address");
    assert!(err.to_string().contains("puller.metrics_addr"), "{err}");
}

#[test]
fn out_of_range_values_name_the_key() {
    for (text, key) in [
        ("[broker]\ndelivery_limit = 0\n", "broker.delivery_limit"),
        ("[broker]\nprefix = \"has space\"\n", "broker.prefix"),
        ("[broker]\nurl = \"http://x\"\n", "broker.url"),
        ("[database]\npool_max_size = 0\n", "database.pool_max_size"),
        ("[log]\nlevel = \"info,[\"\n", "log.level"),
        ("[puller]\ntop_validators = 0\n", "puller.top_validators"),
        (
            "[puller]\naxon_versions = \"v45\"\n",
            "puller.axon_versions",
        ),
        ("[puller]\nrank_by = []\n", "puller.rank_by"),
        (
            "[puller]\nrank_by = [\"stake\", \"luck\"]\n",
            "puller.rank_by[1]",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            matches!(err, ConfigError::Invalid { key: ref k, .. } if k == key),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn environment_overrides_the_file() {
    let config = Config::from_toml_with_env(
        "[broker]\nprefix = \"from-file\"\ndelivery_limit = 4\n",
        Path::new("test.toml"),
        env(&[
            ("SPLATFLEET__BROKER__PREFIX", "from-env"),
            ("SPLATFLEET__DATABASE__PORT", "6543"),
            ("SPLATFLEET__DATABASE__PASSWORD", "123456"),
            ("SPLATFLEET__SHUTDOWN__DRAIN_TIMEOUT_SECS", "7"),
            ("UNRELATED", "x"),
        ]),
    )
    .expect("overrides apply");
    assert_eq!(config.broker.prefix, "from-env");
    assert_eq!(
        config.broker.delivery_limit, 4,
        "keys not overridden keep the file's value"
    );
    assert_eq!(config.database.port, 6543);
    assert_eq!(config.shutdown.drain_timeout_secs, 7);
    let password = config
        .database
        .password
        .as_ref()
        .map(|p| secrecy::ExposeSecret::expose_secret(p).to_owned());
    assert_eq!(
        password.as_deref(),
        Some("123456"),
        "numeric-looking secrets stay strings"
    );
}

#[test]
fn bad_environment_value_names_the_key() {
    let err = Config::from_toml_with_env(
        "",
        Path::new("t.toml"),
        env(&[("SPLATFLEET__DATABASE__PORT", "many")]),
    )
    .expect_err("bad env value");
    assert!(err.to_string().contains("database.port"), "{err}");
    let err = Config::from_toml_with_env(
        "",
        Path::new("t.toml"),
        env(&[("SPLATFLEET__BROKER__NOPE", "1")]),
    )
    .expect_err("unknown env key");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = Config::from_toml_with_env(
        "[broker]\nurl = \"amqp://fleet:hunter2-amqp@rabbit:5672/%2f\"\n\
         [database]\npassword = \"hunter2-db\"\n\
         [wallet]\npassword = \"hunter2-wallet\"\n",
        Path::new("t.toml"),
        std::iter::empty(),
    )
    .expect("loads");
    let debug = format!("{config:?}");
    for secret in ["hunter2-amqp", "hunter2-db", "hunter2-wallet"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(
        debug.contains("amqp://fleet:***@rabbit:5672"),
        "the URL stays readable: {debug}"
    );
    assert_eq!(
        config.broker.url.to_string(),
        "amqp://fleet:***@rabbit:5672/%2f"
    );
    assert_eq!(
        config.broker.url.expose(),
        "amqp://fleet:hunter2-amqp@rabbit:5672/%2f"
    );
}

#[test]
fn static_validators_come_from_the_config_and_are_checked() {
    let text = "[discovery]\n\
        [[discovery.validators]]\nuid = 3\nhotkey = \"5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi\"\nip = \"127.0.0.1\"\nport = 8091\nstake = 2000.0\n";
    let config = parse(text).expect("valid static list");
    let list = config.discovery.static_validators().expect("list");
    assert_eq!(list.validators.len(), 1);
    assert_eq!(list.validators[0].port, 8091);

    let bad = text.replace(
        "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi",
        "not-a-hotkey",
    );
    let err = parse(&bad).expect_err("bad hotkey");
    assert!(
        matches!(err, ConfigError::Invalid { ref key, .. } if key == "discovery.validators"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-a-hotkey"), "{err}");
    let err = parse("[dendrite]\nexternal_ip = \"nowhere\"\n").expect_err("bad ip");
    assert!(err.to_string().contains("dendrite.external_ip"), "{err}");
}

#[test]
fn tier2_settings_are_checked_and_pick_an_endpoint_per_gpu() {
    let defaults = Config::default().worker;
    assert!(defaults.validation_endpoints.is_empty(), "tier 2 off");
    assert_eq!(defaults.validation_endpoint(0), None);
    assert_eq!(defaults.validation_pass_threshold, 0.6);
    assert_eq!(
        defaults.validation_unavailable,
        ValidationUnavailable::Fail,
        "tier 2 fails closed by default"
    );

    let shared = parse("[worker]\nvalidation_endpoints = [\"http://127.0.0.1:8094\"]\nvalidation_unavailable = \"tier1\"\n")
        .expect("one shared URL");
    assert_eq!(
        shared.worker.validation_endpoint(3),
        Some("http://127.0.0.1:8094")
    );
    assert_eq!(
        shared.worker.validation_unavailable,
        ValidationUnavailable::Tier1
    );
    let per_gpu = parse(
        "[worker]\ngeneration_endpoints = [\"http://127.0.0.1:8093\", \"http://127.0.0.1:8193\"]\n\
         validation_endpoints = [\"http://127.0.0.1:8094\", \"http://127.0.0.1:8095\"]\n",
    )
    .expect("one URL per GPU");
    assert_eq!(
        per_gpu.worker.validation_endpoint(1),
        Some("http://127.0.0.1:8095")
    );
    assert_eq!(per_gpu.worker.validation_endpoint(2), None);

    for (text, key) in [
        (
            "[worker]\nvalidation_endpoints = [\"https://x\"]\n",
            "worker.validation_endpoints",
        ),
        (
            "[worker]\nvalidation_endpoints = [\"not a url\"]\n",
            "worker.validation_endpoints",
        ),
        (
            "[worker]\nvalidation_endpoints = [\"http://a:1\", \"http://b:1\"]\n",
            "worker.validation_endpoints",
        ),
        (
            "[worker]\nvalidation_timeout_ms = 0\n",
            "worker.validation_timeout_ms",
        ),
        (
            "[worker]\nvalidation_pass_threshold = 1.5\n",
            "worker.validation_pass_threshold",
        ),
        (
            "[worker]\nvalidation_unavailable = \"maybe\"\n",
            "worker.validation_unavailable",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            matches!(err, ConfigError::Invalid { key: ref k, .. } if k == key),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn numbers_and_booleans_of_the_wrong_kind_are_refused_not_converted() {
    // The layered config reader would round 2.5 to an integer and read true as 1.
    for (text, key) in [
        (
            "[submitter]\nmax_send_tries = 2.5\n",
            "submitter.max_send_tries",
        ),
        (
            "[object_store]\nmax_object_bytes = true\n",
            "object_store.max_object_bytes",
        ),
        (
            "[worker]\ngate_pass_threshold = true\n",
            "worker.gate_pass_threshold",
        ),
        ("[broker]\nprefix = 5\n", "broker.prefix"),
        ("[puller]\ntick_ms = -1\n", "puller.tick_ms"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            matches!(err, ConfigError::Invalid { key: ref k, .. } if k == key),
            "{text}: {err:?}"
        );
    }
    let err = Config::from_toml_with_env(
        "",
        Path::new("test.toml"),
        env(&[("SPLATFLEET__SUBMITTER__MAX_SEND_TRIES", "2.5")]),
    )
    .expect_err("2.5 tries from the environment");
    assert!(
        err.to_string().contains("submitter.max_send_tries"),
        "{err}"
    );
    let err = Config::from_toml_with_env(
        "",
        Path::new("test.toml"),
        env(&[("SPLATFLEET__PULLER__TICK_MS", "yes")]),
    )
    .expect_err("yes as a tick");
    assert!(err.to_string().contains("puller.tick_ms"), "{err}");
    // Text keys still take what looks like a number, and number keys numbers in text.
    let config = Config::from_toml_with_env(
        "",
        Path::new("test.toml"),
        env(&[
            ("SPLATFLEET__BROKER__PREFIX", "2024"),
            ("SPLATFLEET__DATABASE__PORT", "6543"),
            ("SPLATFLEET__PULLER__BACKLOG_FACTOR", "2"),
        ]),
    )
    .expect("overrides load");
    assert_eq!(config.broker.prefix, "2024");
    assert_eq!(config.database.port, 6543);
    assert_eq!(config.puller.backlog_factor, 2.0);
}

#[test]
fn gate_modes_parse_and_full_is_the_old_name_of_geometry() {
    assert_eq!(Config::default().worker.gate_mode, GateMode::Geometry);
    for (name, mode) in [
        ("validator", GateMode::Validator),
        ("geometry", GateMode::Geometry),
        ("full", GateMode::Geometry),
        ("validity_only", GateMode::ValidityOnly),
    ] {
        let config = parse(&format!("[worker]\ngate_mode = \"{name}\"\n")).expect(name);
        assert_eq!(config.worker.gate_mode, mode, "{name}");
    }
    let err = parse("[worker]\ngate_mode = \"fast\"\n").expect_err("unknown mode");
    assert!(err.to_string().contains("worker.gate_mode"), "{err}");
}

#[test]
fn scorer_settings_have_their_defaults_and_are_checked() {
    let defaults = Config::default().worker.scorer;
    assert_eq!(
        defaults.models_dir,
        PathBuf::from("/var/lib/splatfleet/models")
    );
    assert!(defaults.sha256.is_empty());
    assert_eq!(defaults.threshold, None, "the validator's own threshold");
    assert_eq!(defaults.threshold_or(0.6), 0.6);
    assert_eq!(defaults.margin, 0.05);
    assert_eq!(defaults.sparse_below_gaussians, 150_000);

    let digest = "ab".repeat(32);
    let config = parse(&format!(
        "[worker]\ngate_mode = \"validator\"\n[worker.scorer]\nmodels_dir = \"/m\"\n\
         threshold = 0.3\nmargin = 0.0\nsparse_below_gaussians = 10\n\
         sha256 = {{ \"quality_scorer.safetensors\" = \"{digest}\" }}\n"
    ))
    .expect("scorer table");
    let scorer = &config.worker.scorer;
    assert_eq!(scorer.models_dir, PathBuf::from("/m"));
    assert_eq!(scorer.threshold_or(0.6), 0.3);
    assert_eq!(scorer.margin, 0.0);
    assert_eq!(scorer.sparse_below_gaussians, 10);
    assert_eq!(
        scorer.sha256.get("quality_scorer.safetensors"),
        Some(&digest)
    );
    let from_env = Config::from_toml_with_env(
        "",
        Path::new("test.toml"),
        env(&[("SPLATFLEET__WORKER__SCORER__MARGIN", "0.1")]),
    )
    .expect("env override");
    assert_eq!(from_env.worker.scorer.margin, 0.1);

    for (text, key) in [
        (
            "[worker.scorer]\nthreshold = 3.0\n".to_owned(),
            "worker.scorer.threshold",
        ),
        (
            "[worker.scorer]\nmargin = inf\n".to_owned(),
            "worker.scorer.margin",
        ),
        (
            "[worker.scorer]\nmodels_dir = \"\"\n".to_owned(),
            "worker.scorer.models_dir",
        ),
        (
            "[worker.scorer]\nsparse_below_gaussians = -1\n".to_owned(),
            "worker.scorer.sparse_below_gaussians",
        ),
        (
            "[worker.scorer]\nmodelsdir = \"/m\"\n".to_owned(),
            "worker.scorer.modelsdir",
        ),
        (
            "[worker.scorer]\nsha256 = { \"a.safetensors\" = \"xyz\" }\n".to_owned(),
            "worker.scorer.sha256.\"a.safetensors\"",
        ),
        (
            format!("[worker.scorer]\nsha256 = {{ \"../a\" = \"{digest}\" }}\n"),
            "worker.scorer.sha256.\"../a\"",
        ),
    ] {
        let err = parse(&text).expect_err(&text);
        assert!(
            matches!(err, ConfigError::Invalid { key: ref k, .. } if k == key),
            "{text}: {err:?}"
        );
    }
    // Alignment is measured now: the old stand-in key is refused, named.
    let err = parse("[worker.scorer]\nassumed_alignment = 1.0\n").expect_err("refused");
    assert!(err.to_string().contains("assumed_alignment"), "{err}");
}

#[test]
fn the_accepted_axon_versions_default_to_what_v45_validators_announce() {
    let defaults = Config::default();
    assert_eq!(
        defaults.puller.axon_versions.to_string(),
        ">=9.9.0, <10.0.0",
        "the constant parses (Default would fall back to any version otherwise)"
    );
    let config = parse("[puller]\naxon_versions = \">=9.0.0, <11\"\n").expect("a range loads");
    assert_eq!(config.puller.axon_versions.to_string(), ">=9.0.0, <11");
}
