//! `fuzz::encode` is the exact inverse of `fuzz::decode`: generated sequences (in generated
//! worlds), sequences decoded from random bytes, and every regression scenario come back
//! unchanged.

use checker::fuzz::{CONFIG_TAG, MAX_STEPS, decode, encode, round_trips};
use checker::{Config, Op, Sequence, Step, parse_sequence};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(sequence in checker::strategy::sequences(MAX_STEPS)) {
        prop_assert!(round_trips(&sequence));
        prop_assert_eq!(decode(&encode(&sequence)), sequence);
    }

    /// Every value `decode` can produce (wild fields, every variant, any world) encodes back.
    #[test]
    fn encode_inverts_decode(bytes in prop::collection::vec(any::<u8>(), 0..1200), tagged: bool) {
        let bytes = if tagged { [&[CONFIG_TAG][..], &bytes].concat() } else { bytes };
        let sequence = decode(&bytes);
        prop_assert!(sequence.config.is_valid());
        prop_assert_eq!(decode(&encode(&sequence)), sequence);
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
    let alone = |step: &Step| Sequence::new(vec![step.clone()]);
    assert!(!round_trips(&alone(&fork)));
    assert_eq!(decode(&encode(&alone(&fork))).steps, [spawn.clone(), fork]);
    // A refused spawn is not the implicit one: it is kept.
    let refused = Step {
        op: Op::Spawn,
        refuse: Some(0),
    };
    assert_eq!(decode(&encode(&alone(&refused))).steps, [spawn, refused]);
    assert!(encode(&Sequence::default()).is_empty());
}

/// An invalid world is never written: it is encoded as the default one.
#[test]
fn an_invalid_world_encodes_as_the_default() {
    let bad = Sequence {
        config: Config {
            pool_frames: 1,
            asids: 0,
            cpus: 1,
        },
        steps: Vec::new(),
    };
    assert!(!round_trips(&bad));
    assert_eq!(decode(&encode(&bad)).config, Config::DEFAULT);
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
        let sequence = parse_sequence(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(round_trips(&sequence), "{}", path.display());
        assert_eq!(decode(&encode(&sequence)), sequence, "{}", path.display());
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
        let sequence = parse_sequence(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let seed = root.join("ops").join(path.file_stem().unwrap());
        let bytes = std::fs::read(&seed).unwrap_or_default();
        assert!(
            bytes == encode(&sequence),
            "{} is missing or stale: run `cargo xtask seeds`",
            seed.display()
        );
    }
}

/// `cargo xtask fuzz-speed` times 64-step inputs: each is a full sequence in the default
/// world in its shortest encoding, and the set is the same on every run.
#[test]
fn speed_inputs_are_canonical_64_step_sequences() {
    let inputs = checker::fuzz::speed_inputs(200).expect("every input decodes to 64 steps");
    assert_eq!(inputs.len(), 200);
    for bytes in &inputs {
        let sequence = decode(bytes);
        assert_eq!(sequence.steps.len(), MAX_STEPS);
        assert_eq!(sequence.config, Config::DEFAULT);
        assert_eq!(&encode(&sequence), bytes);
    }
    assert_eq!(checker::fuzz::speed_inputs(200), Ok(inputs.clone()));
    let distinct: std::collections::BTreeSet<&Vec<u8>> = inputs.iter().collect();
    assert_eq!(distinct.len(), inputs.len());
}
