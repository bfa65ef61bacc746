//! The wire form of concrete steps: little-endian 32-bit words, a header word per step (tag,
//! refusal) and the op's fields in declaration order. Simple enough to decode in the guest
//! without a serialization crate, and exact: every step round-trips.

use alloc::vec::Vec;

use crate::{AccessOp, ConcreteOp, Step};

/// Why bytes are not a step sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The byte count is not a multiple of 4.
    Unaligned,
    /// The words end inside the step starting at this word.
    Truncated(usize),
    /// An unknown tag in the step starting at this word.
    UnknownTag(usize),
}

const HAS_REFUSE: u32 = 1 << 8;

fn fields(op: &ConcreteOp) -> (u32, Vec<u32>) {
    use ConcreteOp as C;
    let v = alloc::vec![];
    match *op {
        C::Skip => (0, v),
        C::Spawn => (1, v),
        C::Fork { s } => (2, alloc::vec![s]),
        C::Exit { s } => (3, alloc::vec![s]),
        C::Mmap {
            s,
            addr,
            len,
            prot,
            flags,
        } => (4, alloc::vec![s, addr, len, prot, flags]),
        C::Munmap { s, addr, len } => (5, alloc::vec![s, addr, len]),
        C::Mprotect { s, addr, len, prot } => (6, alloc::vec![s, addr, len, prot]),
        C::Brk { s, addr } => (7, alloc::vec![s, addr]),
        C::Mremap {
            s,
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => (8, alloc::vec![s, addr, old_len, new_len, flags, new_addr]),
        C::ShmGet { key, size, flags } => (9, alloc::vec![key as u32, size, flags]),
        C::ShmAt { s, id, addr, flags } => (10, alloc::vec![s, id, addr, flags]),
        C::ShmDt { s, addr } => (11, alloc::vec![s, addr]),
        C::ShmCtl { id, cmd } => (12, alloc::vec![id, cmd]),
        C::MapDevice {
            s,
            addr,
            pa,
            len,
            prot,
        } => (13, alloc::vec![s, addr, pa, len, prot]),
        C::Vmalloc { len } => (14, alloc::vec![len]),
        C::Vfree { addr } => (15, alloc::vec![addr]),
        C::Access {
            s,
            addr,
            access,
            kernel,
            cpu,
        } => {
            let (kind, value) = match access {
                AccessOp::Read => (0, 0),
                AccessOp::Write(v) => (1, v),
                AccessOp::Exec => (2, 0),
            };
            (
                16,
                alloc::vec![
                    s,
                    addr,
                    kind | (u32::from(kernel) << 8) | (u32::from(cpu) << 16),
                    value
                ],
            )
        }
    }
}

const ARITY: [usize; 17] = [0, 0, 1, 1, 5, 3, 4, 2, 6, 3, 4, 2, 2, 5, 1, 1, 4];

/// Encodes steps as little-endian words.
#[must_use]
pub fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let mut words = Vec::new();
    for step in steps {
        encode_step_words(step, &mut words);
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Appends the words of one step.
pub fn encode_step_words(step: &Step, out: &mut Vec<u32>) {
    let (tag, f) = fields(&step.op);
    out.push(tag | step.refuse.map_or(0, |k| HAS_REFUSE | (u32::from(k) << 16)));
    out.extend(f);
}

/// Decodes what [`encode_steps`] wrote.
pub fn decode_steps(bytes: &[u8]) -> Result<Vec<Step>, DecodeError> {
    if bytes.len() % 4 != 0 {
        return Err(DecodeError::Unaligned);
    }
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (step, used) = decode_step_words(&words[i..]).map_err(|e| match e {
            DecodeError::Truncated(_) => DecodeError::Truncated(i),
            _ => DecodeError::UnknownTag(i),
        })?;
        steps.push(step);
        i += used;
    }
    Ok(steps)
}

/// Decodes the step at the start of `words`; returns it and the words it used.
pub fn decode_step_words(words: &[u32]) -> Result<(Step, usize), DecodeError> {
    let i = 0;
    let header = *words.first().ok_or(DecodeError::Truncated(0))?;
    let tag = (header & 0xFF) as usize;
    let arity = *ARITY.get(tag).ok_or(DecodeError::UnknownTag(i))?;
    let f = words
        .get(i + 1..i + 1 + arity)
        .ok_or(DecodeError::Truncated(i))?;
    use ConcreteOp as C;
    let op = match tag {
        0 => C::Skip,
        1 => C::Spawn,
        2 => C::Fork { s: f[0] },
        3 => C::Exit { s: f[0] },
        4 => C::Mmap {
            s: f[0],
            addr: f[1],
            len: f[2],
            prot: f[3],
            flags: f[4],
        },
        5 => C::Munmap {
            s: f[0],
            addr: f[1],
            len: f[2],
        },
        6 => C::Mprotect {
            s: f[0],
            addr: f[1],
            len: f[2],
            prot: f[3],
        },
        7 => C::Brk {
            s: f[0],
            addr: f[1],
        },
        8 => C::Mremap {
            s: f[0],
            addr: f[1],
            old_len: f[2],
            new_len: f[3],
            flags: f[4],
            new_addr: f[5],
        },
        9 => C::ShmGet {
            key: f[0] as i32,
            size: f[1],
            flags: f[2],
        },
        10 => C::ShmAt {
            s: f[0],
            id: f[1],
            addr: f[2],
            flags: f[3],
        },
        11 => C::ShmDt {
            s: f[0],
            addr: f[1],
        },
        12 => C::ShmCtl {
            id: f[0],
            cmd: f[1],
        },
        13 => C::MapDevice {
            s: f[0],
            addr: f[1],
            pa: f[2],
            len: f[3],
            prot: f[4],
        },
        14 => C::Vmalloc { len: f[0] },
        15 => C::Vfree { addr: f[0] },
        _ => C::Access {
            s: f[0],
            addr: f[1],
            access: match f[2] & 0xFF {
                0 => AccessOp::Read,
                1 => AccessOp::Write(f[3]),
                2 => AccessOp::Exec,
                _ => return Err(DecodeError::UnknownTag(i)),
            },
            kernel: f[2] & 0x100 != 0,
            cpu: (f[2] >> 16) as u8,
        },
    };
    let refuse = (header & HAS_REFUSE != 0).then_some((header >> 16) as u16);
    Ok((Step { op, refuse }, 1 + arity))
}
