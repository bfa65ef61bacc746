//! `fuzz::encode` is the exact inverse of `fuzz::decode`: generated sequences, sequences decoded
//! from random bytes, and every regression scenario come back unchanged.

use checker::fuzz::{MAX_STEPS, decode, encode, round_trips};
use checker::{Op, Step, parse_ops};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(steps in checker::strategy::steps(MAX_STEPS)) {
        prop_assert!(round_trips(&steps));
        prop_assert_eq!(decode(&encode(&steps)), steps);
    }

    /// Every value `decode` can produce (wild fields, every variant) encodes back.
    #[test]
    fn encode_inverts_decode(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let steps = decode(&bytes);
        prop_assert_eq!(decode(&encode(&steps)), steps);
    }
}

#[test]
fn a_sequence_without_the_leading_spawn_decodes_with_one() {
    let fork = Step {
        op: Op::Fork { s: 0 },
        refuse: Some(2),
    };
    let spawn = Step {
        op: Op::Spawn,
        refuse: None,
    };
    assert!(!round_trips(std::slice::from_ref(&fork)));
    assert_eq!(
        decode(&encode(std::slice::from_ref(&fork))),
        [spawn.clone(), fork]
    );
    // A refused spawn is not the implicit one: it is kept.
    let refused = Step {
        op: Op::Spawn,
        refuse: Some(0),
    };
    assert_eq!(
        decode(&encode(std::slice::from_ref(&refused))),
        [spawn, refused]
    );
    assert!(encode(&[]).is_empty());
}

#[test]
fn every_regression_scenario_round_trips() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "ops") {
            continue;
        }
        let steps = parse_ops(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(round_trips(&steps), "{}", path.display());
        assert_eq!(decode(&encode(&steps)), steps, "{}", path.display());
        n += 1;
    }
    assert!(n > 0, "no scenarios in {}", dir.display());
}

/// The committed seeds `corpus/ops/<name>` are the encodings of today's scenarios (run
/// `cargo xtask seeds` after changing a scenario or the op language).
#[test]
fn committed_ops_seeds_are_up_to_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    for entry in std::fs::read_dir(root.join("regressions")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "ops") {
            continue;
        }
        let steps = parse_ops(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let seed = root.join("ops").join(path.file_stem().unwrap());
        let bytes = std::fs::read(&seed).unwrap_or_default();
        assert!(
            bytes == encode(&steps),
            "{} is missing or stale: run `cargo xtask seeds`",
            seed.display()
        );
    }
}

/// `cargo xtask fuzz-speed` times 64-step inputs: each is a full sequence in its shortest
/// encoding, and the set is the same on every run.
#[test]
fn speed_inputs_are_canonical_64_step_sequences() {
    let inputs = checker::fuzz::speed_inputs(200).expect("every input decodes to 64 steps");
    assert_eq!(inputs.len(), 200);
    for bytes in &inputs {
        let steps = decode(bytes);
        assert_eq!(steps.len(), MAX_STEPS);
        assert_eq!(&encode(&steps), bytes);
    }
    assert_eq!(checker::fuzz::speed_inputs(200), Ok(inputs.clone()));
    let distinct: std::collections::BTreeSet<&Vec<u8>> = inputs.iter().collect();
    assert_eq!(distinct.len(), inputs.len());
}
