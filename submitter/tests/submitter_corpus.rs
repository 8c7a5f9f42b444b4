//! Bad-input suite, the submitter's SPZ path: every file of the regenerated fuzz corpus
//! (`splatfleet_tests::corpus`) goes through `load_spz` as the worker's stored SPZ (checked by
//! decoding) or as its PLY (encoded here): each ends in a model or a typed `LoadError`, never a
//! panic. Then, end to end, a result whose stored SPZ is corrupt (size and sha256 right, the
//! bytes broken) is recorded on its task with the decoder's reason and dead-lettered, while the
//! next result is submitted as usual.

mod support;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use splatfleet_common::{
    artifacts::ArtifactStore,
    config::ObjectStoreSettings,
    messages::{ArtifactRef, ResultOutcome},
};
use splatfleet_submitter::load_artifact::{load_spz, LoadError};
use splatfleet_tests::corpus::mutated_corpus;

const CAP: u64 = 64 * 1024 * 1024;

#[tokio::test]
async fn every_corpus_file_loads_or_is_a_typed_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let store = ArtifactStore::open(&ObjectStoreSettings {
        root: root.path().to_owned(),
        ..ObjectStoreSettings::default()
    })
    .expect("store");
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let corpus = mutated_corpus();
    for file in &corpus {
        let is_spz = file.name.ends_with(".spz");
        let kind = if is_spz { "spz" } else { "ply" };
        let stored = store
            .put(kind, kind, Bytes::from(file.bytes.clone()))
            .await
            .expect("store corpus file");
        let loaded = if is_spz {
            // The PLY reference is not read when an SPZ is given.
            load_spz(&store, &stored, Some(&stored), CAP).await
        } else {
            load_spz(&store, &stored, None, CAP).await
        };
        let label = match &loaded {
            Ok(_) => "loaded",
            Err(LoadError::Spz { .. }) => "spz_refused",
            Err(LoadError::Ply { .. }) => "ply_refused",
            Err(LoadError::Encode { .. }) => "encode_refused",
            Err(LoadError::Join(reason)) => panic!("{}: the decoder panicked: {reason}", file.name),
            Err(other) => panic!("{}: unexpected {other}", file.name),
        };
        if file.name.contains("intact") {
            assert!(loaded.is_ok(), "{}: {loaded:?}", file.name);
        }
        if let Err(err) = &loaded {
            assert!(
                err.to_string().contains(&stored.key),
                "{}: the error does not name the artifact: {err}",
                file.name
            );
        }
        *outcomes.entry(label.to_owned()).or_default() += 1;
    }
    assert_eq!(outcomes.values().sum::<usize>(), corpus.len());
    assert!(
        outcomes.get("spz_refused").copied().unwrap_or(0) >= 30,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("ply_refused").copied().unwrap_or(0) >= 50,
        "{outcomes:?}"
    );
    eprintln!("{} files: {outcomes:?}", corpus.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_spz_is_recorded_and_dead_lettered_and_the_next_result_is_submitted() {
    let world = support::start(2).await;
    let broken_task = world.pull(0).await;
    let good_task = world.pull(1).await;
    let corrupt = mutated_corpus()
        .into_iter()
        .find(|f| f.name == "spz_sh0_points_u32_max.spz")
        .expect("corpus file");
    let spz: ArtifactRef = world
        .store
        .put("spz", "spz", Bytes::from(corrupt.bytes))
        .await
        .expect("store corrupt SPZ");
    let mut broken = world.ready_result(&broken_task, false, 7).await;
    if let ResultOutcome::Ready { spz: slot, .. } = &mut broken.outcome {
        *slot = Some(spz);
    }
    world.publish(&broken).await;
    world
        .publish(&world.ready_result(&good_task, true, 8).await)
        .await;

    world
        .wait_count(
            "SELECT count(*) FROM tasks WHERE status = 'generated'
                 AND status_reason LIKE 'submitter could not load the result: SPZ%does not decode%'",
            1,
            Duration::from_secs(30),
        )
        .await;
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed' AND http_status = 200",
            1,
            Duration::from_secs(30),
        )
        .await;
    assert!(world
        .events_about("submit", &broken_task.task_id)
        .is_empty());
    assert_eq!(world.events_about("submit", &good_task.task_id).len(), 1);
    world.wait_dead_letters(1).await;
    world.finish().await;
}
