//! The `mmu` fuzz target's driver: fuzzer bytes -> `ArchMmu` map/unmap/protect/move/query/replace/move-replacing ops ->
//! [`run_sequence`] (the vmm's `ArchMmu` against a `BTreeMap` model, shared with vmm's
//! `arch_mmu_model` proptest).
//!
//! The byte format is fixed-width, so that seeds are easy to write and every mutation lands in
//! one field: 8 bytes per op, at most [`MAX_OPS`] ops, a short last record padded with zeros.
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | bits 0-2: the op (map, unmap, protect, move, query, replace, move replacing, then 7 protect again); bit 6: refuse an allocation, bits 3-4: which one (0-3) |
//! | 1-2 | `va` (or `from`), little-endian: below [`AREA_PAGES`] a page of the 8 MiB area at [`AREA_BASE`], the next four the window's edges (0, last page, first page past it, page 0xF_FFFF), above that `AREA_BASE + v % AREA_PAGES` |
//! | 3-4 | `pages`, modulo 1101 |
//! | 5-6 | map, replace: `frame` = [`PHYS_BASE`] + the value (0xFFFF: frame 0xF_FF00, whose range overflows); move, move replacing: `to`, as bytes 1-2 |
//! | 7 | `flags` (bits 0-3: read, write, execute, user), bits 4-5 the memory type |

#[path = "mmu_model.rs"]
mod model;

pub use model::{
    AREA_BASE, AREA_PAGES, Op, PHYS_BASE, POOL_FRAMES, USER_WINDOW_PAGES, run_sequence,
};

/// Ops, each with the index of the frame allocation to refuse, if any.
pub type Sequence = Vec<(Op, Option<u8>)>;

/// Longest op sequence an input decodes to.
pub const MAX_OPS: usize = 64;
/// Bytes per op.
pub const RECORD: usize = 8;
/// Page counts are taken modulo this.
const PAGES_MODULO: u32 = 1101;
/// The special page numbers that follow the area's in the `va` encoding.
const EDGES: [u32; 4] = [0, USER_WINDOW_PAGES - 1, USER_WINDOW_PAGES, 0xF_FFFF];
/// The frame whose range overflows 32 bits.
const WILD_FRAME: u32 = 0xF_FF00;

fn page_of(v: u16) -> u32 {
    let v = u32::from(v);
    if v < AREA_PAGES {
        AREA_BASE + v
    } else if let Some(&e) = EDGES.get((v - AREA_PAGES) as usize) {
        e
    } else {
        AREA_BASE + v % AREA_PAGES
    }
}

fn page_code(page: u32) -> Option<u16> {
    if (AREA_BASE..AREA_BASE + AREA_PAGES).contains(&page) {
        return u16::try_from(page - AREA_BASE).ok();
    }
    let i = EDGES.iter().position(|&e| e == page)?;
    u16::try_from(AREA_PAGES as usize + i).ok()
}

fn frame_of(v: u16) -> u32 {
    if v == u16::MAX {
        WILD_FRAME
    } else {
        PHYS_BASE + u32::from(v)
    }
}

fn frame_code(frame: u32) -> Option<u16> {
    if frame == WILD_FRAME {
        return Some(u16::MAX);
    }
    u16::try_from(frame.checked_sub(PHYS_BASE)?)
        .ok()
        .filter(|&v| v != u16::MAX)
}

/// Decodes fuzzer bytes into ops with their refusals.
#[must_use]
pub fn decode(data: &[u8]) -> Sequence {
    data.chunks(RECORD)
        .take(MAX_OPS)
        .map(|chunk| {
            let mut r = [0u8; RECORD];
            r[..chunk.len()].copy_from_slice(chunk);
            let word = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
            let va = page_of(word(1));
            let pages = u32::from(word(3)) % PAGES_MODULO;
            let op = match r[0] & 7 {
                0 => Op::Map {
                    va,
                    pages,
                    frame: frame_of(word(5)),
                    flags: r[7] & 0xF,
                    memory: (r[7] >> 4) & 3,
                },
                5 => Op::Replace {
                    va,
                    pages,
                    frame: frame_of(word(5)),
                    flags: r[7] & 0xF,
                    memory: (r[7] >> 4) & 3,
                },
                1 => Op::Unmap { va, pages },
                6 => Op::MoveReplacing {
                    from: va,
                    pages,
                    to: page_of(word(5)),
                },
                2 => Op::Protect {
                    va,
                    pages,
                    flags: r[7] & 0xF,
                },
                7 => Op::ProtectMany {
                    va,
                    pages,
                    flags: r[7] & 0xF,
                },
                3 => Op::Move {
                    from: va,
                    pages,
                    to: page_of(word(5)),
                },
                _ => Op::Query { va },
            };
            let refuse = (r[0] & 0x40 != 0).then_some((r[0] >> 3) & 3);
            (op, refuse)
        })
        .collect()
}

/// Encodes ops as fuzzer bytes (the inverse of [`decode`]), or says which op has a value the
/// format cannot express (a page outside the area and the edges, `pages` above 1100, flags
/// above 0xF, a memory type above 3, a refusal above 3, more than [`MAX_OPS`] ops).
pub fn encode(ops: &[(Op, Option<u8>)]) -> Result<Vec<u8>, String> {
    if ops.len() > MAX_OPS {
        return Err(format!("{} ops (at most {MAX_OPS})", ops.len()));
    }
    let mut out = Vec::with_capacity(ops.len() * RECORD);
    for (i, (op, refuse)) in ops.iter().enumerate() {
        let bad = || format!("op {}: {op:?} refuse={refuse:?} has no encoding", i + 1);
        let mut r = [0u8; RECORD];
        let pages = |p: u32| {
            u16::try_from(p)
                .ok()
                .filter(|&p| u32::from(p) < PAGES_MODULO)
        };
        let (kind, va, n, extra, flags) = match *op {
            Op::Map {
                va,
                pages: p,
                frame,
                flags,
                memory,
            } => (
                0,
                va,
                p,
                frame_code(frame),
                (memory < 4 && flags < 16).then_some(flags | memory << 4),
            ),
            Op::Unmap { va, pages: p } => (1, va, p, Some(0), Some(0)),
            Op::Protect {
                va,
                pages: p,
                flags,
            } => (2, va, p, Some(0), (flags < 16).then_some(flags)),
            Op::ProtectMany {
                va,
                pages: p,
                flags,
            } => (7, va, p, Some(0), (flags < 16).then_some(flags)),
            Op::Move { from, pages: p, to } => (3, from, p, page_code(to), Some(0)),
            Op::MoveReplacing { from, pages: p, to } => (6, from, p, page_code(to), Some(0)),
            Op::Query { va } => (4, va, 0, Some(0), Some(0)),
            Op::Replace {
                va,
                pages: p,
                frame,
                flags,
                memory,
            } => (
                5,
                va,
                p,
                frame_code(frame),
                (memory < 4 && flags < 16).then_some(flags | memory << 4),
            ),
        };
        let va = page_code(va).ok_or_else(bad)?;
        let n = pages(n).ok_or_else(bad)?;
        let extra = extra.ok_or_else(bad)?;
        let flags = flags.ok_or_else(bad)?;
        r[0] = kind;
        if let Some(k) = *refuse {
            if k > 3 {
                return Err(bad());
            }
            r[0] |= 0x40 | k << 3;
        }
        r[1..3].copy_from_slice(&va.to_le_bytes());
        r[3..5].copy_from_slice(&n.to_le_bytes());
        r[5..7].copy_from_slice(&extra.to_le_bytes());
        r[7] = flags;
        out.extend_from_slice(&r);
    }
    Ok(out)
}

/// Runs fuzzer bytes; panics with the numbered op listing and what differed on a divergence.
#[inline]
pub fn run_mmu(data: &[u8]) {
    let ops = decode(data);
    if let Err(why) = run_sequence(&ops) {
        let listing: String = ops
            .iter()
            .enumerate()
            .map(|(i, (op, refuse))| format!("{:>4}  {op:?} refuse={refuse:?}\n", i + 1))
            .collect();
        panic!("mmu: ArchMmu diverged from the map model\n{listing}{why}");
    }
}

/// A few small hand-picked sequences for the seed corpus: (name, ops).
#[must_use]
pub fn seeds() -> Vec<(&'static str, Sequence)> {
    let rw = 8 | 1 | 2;
    let map = |va, pages, frame| Op::Map {
        va,
        pages,
        frame,
        flags: rw,
        memory: 0,
    };
    vec![
        (
            "map_unmap_small_pages",
            vec![
                (map(AREA_BASE + 3, 4, PHYS_BASE + 9), None),
                (Op::Query { va: AREA_BASE + 4 }, None),
                (
                    Op::Unmap {
                        va: AREA_BASE + 4,
                        pages: 2,
                    },
                    None,
                ),
            ],
        ),
        (
            "section_split_by_protect",
            vec![
                (map(AREA_BASE, 256, PHYS_BASE + 256), None),
                (
                    Op::Protect {
                        va: AREA_BASE + 10,
                        pages: 1,
                        flags: 8 | 1,
                    },
                    Some(0),
                ),
                (
                    Op::Protect {
                        va: AREA_BASE + 10,
                        pages: 1,
                        flags: 8 | 1,
                    },
                    None,
                ),
            ],
        ),
        (
            "protect_many_across_a_section_edge",
            vec![
                (map(AREA_BASE, 256, PHYS_BASE + 256), None),
                (map(AREA_BASE + 300, 8, PHYS_BASE + 9), None),
                (
                    Op::ProtectMany {
                        va: AREA_BASE + 128,
                        pages: 200,
                        flags: 8 | 1,
                    },
                    Some(0),
                ),
                (
                    Op::ProtectMany {
                        va: AREA_BASE + 128,
                        pages: 200,
                        flags: 8 | 1,
                    },
                    None,
                ),
            ],
        ),
        (
            "move_across_groups",
            vec![
                (map(AREA_BASE + 250, 300, PHYS_BASE + 6), None),
                (
                    Op::Move {
                        from: AREA_BASE + 250,
                        pages: 300,
                        to: AREA_BASE + 1030,
                    },
                    None,
                ),
                (map(AREA_BASE + 1536, 512, PHYS_BASE + 1024), Some(1)),
            ],
        ),
        (
            "replace_over_a_section_and_pages",
            vec![
                // A section (both starts 1 MiB aligned) and small pages after it.
                (map(AREA_BASE + 256, 300, PHYS_BASE + 256), None),
                // Replaced from inside the section to past its pages: the section splits, the
                // range becomes small pages of the new frames, with a refusal first.
                (
                    Op::Replace {
                        va: AREA_BASE + 300,
                        pages: 280,
                        frame: PHYS_BASE + 4096,
                        flags: 8 | 1 | 2,
                        memory: 0,
                    },
                    Some(0),
                ),
                (
                    Op::Replace {
                        va: AREA_BASE + 300,
                        pages: 280,
                        frame: PHYS_BASE + 4096,
                        flags: 8 | 1 | 2,
                        memory: 0,
                    },
                    None,
                ),
            ],
        ),
        (
            "move_replacing_a_section_over_pages",
            vec![
                // A section, and small pages where it is going.
                (map(AREA_BASE + 256, 256, PHYS_BASE + 256), None),
                (map(AREA_BASE + 1024, 10, PHYS_BASE + 2048), None),
                // The target's pages go, the section lands on the entry whose table they
                // emptied (unlinked, its page freed), first with a refusal.
                (
                    Op::MoveReplacing {
                        from: AREA_BASE + 256,
                        pages: 256,
                        to: AREA_BASE + 1024,
                    },
                    Some(0),
                ),
                (
                    Op::MoveReplacing {
                        from: AREA_BASE + 256,
                        pages: 256,
                        to: AREA_BASE + 1024,
                    },
                    None,
                ),
                (
                    Op::Query {
                        va: AREA_BASE + 1030,
                    },
                    None,
                ),
            ],
        ),
        (
            // Found by the mmu target: a whole section moved to a target that is not 1 MiB
            // aligned lands as small pages beside a table that stays; the plan reserved a page
            // as if the table were unlinked, so a refused allocation failed the move.
            "move_replacing_a_section_to_an_unaligned_target",
            vec![
                (map(AREA_BASE + 256, 256, PHYS_BASE + 256), None),
                (map(AREA_BASE + 1024, 10, PHYS_BASE + 2048), None),
                (
                    Op::MoveReplacing {
                        from: AREA_BASE + 256,
                        pages: 256,
                        to: AREA_BASE + 1032,
                    },
                    Some(0),
                ),
            ],
        ),
        (
            "window_edge",
            vec![
                (map(USER_WINDOW_PAGES - 1, 2, PHYS_BASE), None),
                (map(USER_WINDOW_PAGES - 1, 1, PHYS_BASE), None),
                (
                    Op::Unmap {
                        va: 0xF_FFFF,
                        pages: 1,
                    },
                    None,
                ),
            ],
        ),
    ]
}
