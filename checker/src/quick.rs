//! quickcheck support: op sequences decoded from quickcheck's random bytes (the same decoding
//! the fuzzers use), shrunk by dropping steps and simplifying them.

use arbitrary::{Arbitrary as _, Unstructured};
use quickcheck::{Arbitrary, Gen};

use crate::op::{Op, Step};

/// A sequence that starts with `spawn`.
#[derive(Clone, Debug)]
pub struct Steps(pub Vec<Step>);

impl Arbitrary for Steps {
    fn arbitrary(g: &mut Gen) -> Self {
        let bytes: Vec<u8> = (0..g.size() * 16)
            .map(|_| <u8 as Arbitrary>::arbitrary(g))
            .collect();
        let mut u = Unstructured::new(&bytes);
        let mut steps = vec![Step {
            op: Op::Spawn,
            refuse: None,
        }];
        while let Ok(s) = Step::arbitrary(&mut u) {
            if u.is_empty() {
                break;
            }
            steps.push(s);
        }
        Steps(steps)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let steps = self.0.clone();
        // Drop one step (never the first spawn), then drop refusals.
        let drops = (1..steps.len()).rev().map({
            let steps = steps.clone();
            move |i| {
                let mut s = steps.clone();
                s.remove(i);
                Steps(s)
            }
        });
        let refused: Vec<usize> = (1..steps.len())
            .filter(|&i| steps[i].refuse.is_some())
            .collect();
        let plain = refused.into_iter().map(move |i| {
            let mut s = steps.clone();
            s[i].refuse = None;
            Steps(s)
        });
        Box::new(drops.chain(plain))
    }
}
