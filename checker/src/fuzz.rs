//! The fuzzers' byte encoding: bytes decode to a sequence of at most [`MAX_STEPS`] steps after an
//! initial `spawn`, with `arbitrary` (pinned), so the same bytes always give the same steps.

use arbitrary::{Arbitrary, Unstructured};

use crate::op::{Op, Step};

/// Longest sequence a fuzz input decodes to.
pub const MAX_STEPS: usize = 64;

/// Decodes fuzzer bytes: `spawn`, then steps while bytes last (at most [`MAX_STEPS`] in all).
#[must_use]
pub fn decode(data: &[u8]) -> Vec<Step> {
    let mut u = Unstructured::new(data);
    let mut steps = vec![Step {
        op: Op::Spawn,
        refuse: None,
    }];
    while steps.len() < MAX_STEPS && !u.is_empty() {
        match Step::arbitrary(&mut u) {
            Ok(s) => steps.push(s),
            Err(_) => break,
        }
    }
    steps
}
