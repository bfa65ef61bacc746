//! The `mmu`, `frames` and `text` fuzz targets' drivers, run here on random bytes and on their
//! seeds so that `cargo test` exercises exactly what the fuzzers run; their byte encoders are
//! exact; the committed seed corpora are up to date.

use std::path::Path;

use checker::{frames, fuzz, mmu};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mmu_driver_agrees_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..mmu::MAX_OPS * mmu::RECORD)) {
        mmu::run_sequence(&mmu::decode(&bytes)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn frames_driver_agrees_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let (start, total, ops) = frames::decode(&bytes);
        frames::run_frames(start, total, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mmu_encoding_is_exact(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let ops = mmu::decode(&bytes);
        let again = mmu::encode(&ops).map_err(TestCaseError::fail)?;
        prop_assert_eq!(mmu::decode(&again), ops);
    }

    #[test]
    fn frames_encoding_is_exact(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (start, total, ops) = frames::decode(&bytes);
        let again = frames::encode(start, total, &ops).map_err(TestCaseError::fail)?;
        prop_assert_eq!(frames::decode(&again), (start, total, ops));
    }

    #[test]
    fn text_driver_holds_on_random_and_printed_text(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        steps in checker::strategy::steps(20),
    ) {
        fuzz::text_round_trip(&bytes);
        fuzz::text_round_trip(checker::print_ops(&steps).as_bytes());
    }
}

#[test]
fn seeds_pass_and_the_committed_corpora_are_up_to_date() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let check = |dir: &str, name: &str, bytes: &[u8]| {
        let path = corpus.join(dir).join(name);
        assert!(
            std::fs::read(&path).is_ok_and(|b| b == bytes),
            "{} is missing or stale: run `cargo xtask seeds`",
            path.display()
        );
    };
    for (name, ops) in mmu::seeds() {
        let bytes = mmu::encode(&ops).unwrap();
        assert_eq!(mmu::decode(&bytes), ops, "{name}");
        mmu::run_mmu(&bytes);
        check("mmu", name, &bytes);
    }
    for (name, (start, total, ops)) in frames::seeds() {
        let bytes = frames::encode(start, total, &ops).unwrap();
        assert_eq!(
            frames::decode(&bytes),
            (start, total, ops.clone()),
            "{name}"
        );
        frames::run_frames_bytes(&bytes);
        check("frames", name, &bytes);
    }
    for entry in std::fs::read_dir(corpus.join("regressions")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "ops") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        checker::parse_sequence(&text).unwrap();
        fuzz::text_round_trip(text.as_bytes());
        check(
            "text",
            &path.file_stem().unwrap().to_string_lossy(),
            text.as_bytes(),
        );
    }
}
