//! The model-vs-vmm check driven by quickcheck (sequences from quickcheck's bytes, shrunk by
//! dropping steps), next to the proptest driver: one interpreter, several engines.

use checker::quick::Steps;
use quickcheck::{QuickCheck, TestResult};

fn agrees(steps: Steps) -> TestResult {
    match checker::run(&checker::Sequence::new(steps.0)) {
        Ok(_) => TestResult::passed(),
        Err(d) => TestResult::error(d.to_string()),
    }
}

#[test]
fn model_and_vmm_agree_under_quickcheck() {
    QuickCheck::new()
        .tests(300)
        .quickcheck(agrees as fn(Steps) -> TestResult);
}

#[test]
fn shrinking_drops_steps_but_keeps_the_spawn() {
    use checker::{Op, Step};
    let s = Steps(vec![
        Step {
            op: Op::Spawn,
            refuse: None,
        },
        Step {
            op: Op::Fork { s: 0 },
            refuse: Some(1),
        },
        Step {
            op: Op::Exit { s: 0 },
            refuse: None,
        },
    ]);
    let shrunk: Vec<Steps> = quickcheck::Arbitrary::shrink(&s).collect();
    assert_eq!(shrunk.len(), 3, "two drops and one refusal removed");
    assert!(shrunk.iter().all(|x| x.0[0].op == Op::Spawn));
}
