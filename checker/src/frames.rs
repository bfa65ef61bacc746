//! The `frames` fuzz target's driver: fuzzer bytes -> a pool and alloc/free/retain/release ops
//! -> [`run_frames`] (vmm's buddy `FrameAllocator` against a set model, shared with vmm's
//! `buddy_props` proptest).
//!
//! Byte format (fixed-width; a short input is padded with zeros):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0-1 | pool start: frame `0x40000 + v % 0x400` (little-endian) |
//! | 2-3 | pool size: `1 + v % 1500` frames |
//! | then 3 per op, at most [`MAX_OPS`] | byte 0 modulo 6: alloc, free, retain, release, free of any frame, refuse the next allocation; bytes 1-2 `v`: alloc `1 + v % 600` frames, the index of a live allocation, or frame `0x3FF00 + v` |

#[path = "frames_model.rs"]
mod model;

pub use model::{Op, run_frames};

/// Longest op sequence an input decodes to.
pub const MAX_OPS: usize = 64;
const HEADER: usize = 4;
const RECORD: usize = 3;
const START: u32 = 0x40000;
const START_MODULO: u32 = 0x400;
const TOTAL_MODULO: u32 = 1500;
const ALLOC_MODULO: u32 = 600;
const WILD_BASE: u32 = 0x3FF00;

/// A decoded input: pool start frame, pool size, ops.
pub type Input = (u32, u32, Vec<Op>);

/// Decodes fuzzer bytes.
#[must_use]
pub fn decode(data: &[u8]) -> Input {
    let mut h = [0u8; HEADER];
    let n = data.len().min(HEADER);
    h[..n].copy_from_slice(&data[..n]);
    let start = START + u32::from(u16::from_le_bytes([h[0], h[1]])) % START_MODULO;
    let total = 1 + u32::from(u16::from_le_bytes([h[2], h[3]])) % TOTAL_MODULO;
    let ops = data
        .get(HEADER..)
        .unwrap_or_default()
        .chunks(RECORD)
        .take(MAX_OPS)
        .map(|chunk| {
            let mut r = [0u8; RECORD];
            r[..chunk.len()].copy_from_slice(chunk);
            let v = u16::from_le_bytes([r[1], r[2]]);
            match r[0] % 6 {
                0 => Op::Alloc(1 + u32::from(v) % ALLOC_MODULO),
                1 => Op::Free(usize::from(v)),
                2 => Op::Retain(usize::from(v)),
                3 => Op::Release(usize::from(v)),
                4 => Op::FreeWild(WILD_BASE + u32::from(v)),
                _ => Op::FailNext,
            }
        })
        .collect();
    (start, total, ops)
}

/// Encodes an input (the inverse of [`decode`]), or says what the format cannot express.
pub fn encode(start: u32, total: u32, ops: &[Op]) -> Result<Vec<u8>, String> {
    let header = |v: u32, base: u32, modulo: u32| {
        v.checked_sub(base)
            .filter(|&d| d < modulo)
            .and_then(|d| u16::try_from(d).ok())
    };
    let s = header(start, START, START_MODULO).ok_or(format!("pool start {start:#x}"))?;
    let t = header(total, 1, TOTAL_MODULO).ok_or(format!("pool size {total}"))?;
    if ops.len() > MAX_OPS {
        return Err(format!("{} ops (at most {MAX_OPS})", ops.len()));
    }
    let mut out = Vec::with_capacity(HEADER + ops.len() * RECORD);
    out.extend_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&t.to_le_bytes());
    for op in ops {
        let index = |i: usize| u16::try_from(i).ok();
        let (kind, v) = match *op {
            Op::Alloc(n) => (0, header(n, 1, ALLOC_MODULO)),
            Op::Free(i) => (1, index(i)),
            Op::Retain(i) => (2, index(i)),
            Op::Release(i) => (3, index(i)),
            Op::FreeWild(f) => (
                4,
                f.checked_sub(WILD_BASE).and_then(|d| u16::try_from(d).ok()),
            ),
            Op::FailNext => (5, Some(0)),
        };
        let v = v.ok_or_else(|| format!("{op:?} has no encoding"))?;
        out.push(kind);
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Runs fuzzer bytes; panics with the pool, the op listing and what differed on a divergence.
#[inline]
pub fn run_frames_bytes(data: &[u8]) {
    let (start, total, ops) = decode(data);
    if let Err(why) = run_frames(start, total, &ops) {
        let listing: String = ops
            .iter()
            .enumerate()
            .map(|(i, op)| format!("{:>4}  {op:?}\n", i + 1))
            .collect();
        panic!(
            "frames: FrameAllocator diverged from the set model (pool of {total} frames at frame {start:#x})\n{listing}{why}"
        );
    }
}

/// A few small hand-picked inputs for the seed corpus: (name, input).
#[must_use]
pub fn seeds() -> Vec<(&'static str, Input)> {
    use Op::{Alloc, FailNext, Free, FreeWild, Release, Retain};
    vec![
        (
            "alloc_free_coalesce",
            (
                START,
                1024,
                vec![
                    Alloc(1),
                    Alloc(3),
                    Alloc(64),
                    Free(1),
                    Free(0),
                    Alloc(256),
                    Free(0),
                ],
            ),
        ),
        (
            "odd_pool_shared_frames",
            (
                START + 3,
                700,
                vec![
                    Alloc(1),
                    Retain(0),
                    Retain(0),
                    Free(0),
                    Release(0),
                    Release(0),
                    Release(0),
                ],
            ),
        ),
        (
            "refusals_and_wild_frees",
            (
                START + 0x100,
                37,
                vec![
                    FailNext,
                    Alloc(2),
                    Alloc(40),
                    Alloc(32),
                    FreeWild(0x40101),
                    FreeWild(0x3FF00),
                    FreeWild(0x40100),
                ],
            ),
        ),
    ]
}
