//! The fault suite (issue 10): the whole fleet as processes around a private RabbitMQ node and
//! PostgreSQL cluster, faults injected at seeded random points, then the checks of
//! `splatfleet_tests::fault_suite::checks`. The fast variant runs in `cargo test`; the long
//! one (10 kills of each role) is `--ignored`:
//!
//! ```sh
//! cargo build --workspace --bins
//! cargo test -p splatfleet-tests --test fault_suite -- --ignored --nocapture
//! ```
//!
//! `SPLATFLEET_FAULT_SEED=<n>` replays a run's plan; `SPLATFLEET_FAULT_KEEP=1` keeps the run
//! directory (logs of every process, the validators' event log, the report) after a pass.

use std::path::Path;

use splatfleet_tests::{
    fault_suite::{self, SuiteSettings},
    fleet::FleetBinaries,
};

async fn run_suite(settings: SuiteSettings) {
    let binaries = FleetBinaries::locate(Path::new(env!("CARGO_BIN_EXE_splatfleet-sim")))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::Builder::new()
        .prefix("splatfleet-fault-")
        .tempdir()
        .expect("temp dir");
    // PostgreSQL, run as its own user when we are root, must be able to reach its directory.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod run dir");
    }
    let run = fault_suite::run(&settings, &binaries, dir.path())
        .await
        .unwrap_or_else(|e| panic!("the fault run could not be carried out: {e}"));
    let report = run.markdown();
    eprintln!("{report}");
    let _ = std::fs::write(dir.path().join("report.md"), &report);
    let failures = run.failures();
    if !failures.is_empty() || std::env::var_os("SPLATFLEET_FAULT_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("fault-suite: run directory kept in {}", kept.display());
    }
    assert!(
        failures.is_empty(),
        "fault suite failed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_survives_every_kind_of_fault_fast() {
    run_suite(SuiteSettings::fast(fault_suite::seed_from_env())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run (10 kills of each role, about 15 minutes); see the module doc"]
async fn fleet_survives_every_kind_of_fault_long() {
    run_suite(SuiteSettings::long(fault_suite::seed_from_env())).await;
}
