//! Op-level minimization of a diverging sequence: repeatedly drop steps (halves first, then one
//! at a time), drop refusals, replace ops by simpler ones (a write or fetch by a read, an
//! mremap by a munmap), zero or halve numeric fields and simplify addresses; a change is kept
//! only when [`run_both_with_defect`] still diverges with the same [`DivergenceKind`]. Every kept
//! change makes the sequence strictly smaller (fewer steps, or smaller numbers, or a simpler
//! op), so it ends; a budget of runs bounds it too.

use crate::machine::Defect;
use crate::op::{Addr, Op, Step};
use crate::run::{Config, Divergence, DivergenceKind, Sequence, run_both_with_defect};

/// Upper bound on the `run` calls one minimization makes.
pub const MAX_RUNS: usize = 20_000;

/// The result of [`minimize`].
#[derive(Debug)]
pub struct Minimized {
    /// The world it diverges in (the default one when that diverges too).
    pub config: Config,
    /// The smallest sequence found that still diverges with the same kind.
    pub steps: Vec<Step>,
    /// Its divergence.
    pub divergence: Box<Divergence>,
    /// Steps in the input.
    pub original_len: usize,
    /// `run` calls made.
    pub runs: usize,
}

struct Search {
    kind: DivergenceKind,
    defect: Option<Defect>,
    config: Config,
    best: Vec<Step>,
    divergence: Box<Divergence>,
    runs: usize,
}

impl Search {
    /// Keeps `candidate` when it still diverges with the same kind.
    fn try_keep(&mut self, candidate: Vec<Step>) -> bool {
        if self.runs >= MAX_RUNS || candidate == self.best {
            return false;
        }
        self.runs += 1;
        let candidate = Sequence {
            config: self.config,
            steps: candidate,
        };
        match run_both_with_defect(&candidate, self.defect) {
            Err(d) if d.kind == self.kind => {
                // Nothing after the diverging step matters (the teardown is at `len`).
                let mut candidate = candidate;
                candidate.steps.truncate(d.at + 1);
                self.best = candidate.steps;
                self.divergence = d;
                true
            }
            _ => false,
        }
    }

    /// Drops chunks of steps, halves first, then smaller ones down to single steps.
    fn drop_steps(&mut self) -> bool {
        let mut changed = false;
        let mut chunk = self.best.len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < self.best.len() {
                let mut c = self.best.clone();
                let end = (i + chunk).min(c.len());
                c.drain(i..end);
                if self.try_keep(c) {
                    changed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                return changed;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    /// Tries every simpler version of every step, one change at a time.
    fn simplify_steps(&mut self) -> bool {
        let mut changed = false;
        let mut i = 0;
        while i < self.best.len() {
            let mut progress = true;
            while progress {
                progress = false;
                let Some(step) = self.best.get(i).cloned() else {
                    break;
                };
                for simpler in simpler_steps(&step) {
                    let mut c = self.best.clone();
                    c[i] = simpler;
                    if self.try_keep(c) {
                        changed = true;
                        progress = true;
                        break;
                    }
                }
            }
            i += 1;
        }
        changed
    }
}

/// Minimizes `sequence`, which must diverge on a machine with `defect` (`None`: a sound
/// machine); `None` when it does not diverge. A sequence in another world than the default is
/// moved to the default one first (its accesses to CPU 0) when it diverges the same way there.
#[must_use]
pub fn minimize(sequence: &Sequence, defect: Option<Defect>) -> Option<Minimized> {
    let mut divergence = run_both_with_defect(sequence, defect).err()?;
    let mut config = sequence.config;
    let mut best = sequence.steps.to_vec();
    let mut runs = 1;
    if config != Config::DEFAULT {
        runs += 1;
        // The default world has one CPU: every access moves to CPU 0.
        let mut plain = sequence.steps.clone();
        crate::fold_accesses_onto(&mut plain, 1);
        if let Err(d) = run_both_with_defect(&Sequence::new(plain.clone()), defect)
            && d.kind == divergence.kind
        {
            (config, divergence, best) = (Config::DEFAULT, d, plain);
        }
    }
    best.truncate(divergence.at + 1);
    let mut s = Search {
        kind: divergence.kind,
        defect,
        config,
        best,
        divergence,
        runs,
    };
    loop {
        let dropped = s.drop_steps();
        let simplified = s.simplify_steps();
        if !(dropped || simplified) || s.runs >= MAX_RUNS {
            break;
        }
    }
    // Written in its canonical form (indices as they resolve, no step that does not run), so
    // the file passes the strict rules of hand-written `.ops`; it runs the same steps.
    let canonical = crate::run::canonical(&Sequence {
        config: s.config,
        steps: s.best.clone(),
    });
    s.runs += 1;
    if let Err(d) = run_both_with_defect(&canonical, defect)
        && d.kind == s.kind
    {
        s.best = canonical.steps;
        s.divergence = d;
    }
    Some(Minimized {
        config: s.config,
        steps: s.best,
        divergence: s.divergence,
        original_len: sequence.steps.len(),
        runs: s.runs,
    })
}

/// Smaller values of a number: 0, then half.
fn smaller_u32(v: u32) -> Vec<u32> {
    match v {
        0 => vec![],
        1 => vec![0],
        _ => vec![0, v / 2],
    }
}

fn smaller_u8(v: u8) -> Vec<u8> {
    smaller_u32(u32::from(v))
        .into_iter()
        .map(|x| u8::try_from(x).unwrap_or(0))
        .collect()
}

fn smaller_u16(v: u16) -> Vec<u16> {
    smaller_u32(u32::from(v))
        .into_iter()
        .map(|x| u16::try_from(x).unwrap_or(0))
        .collect()
}

fn smaller_i32(v: i32) -> Vec<i32> {
    if v == 0 { vec![] } else { vec![0, v / 2] }
}

/// Simpler addresses: fields zeroed or halved (never a different kind of address: a raw address
/// is not simpler than a region-relative one for a reader).
fn simpler_addrs(a: &Addr) -> Vec<Addr> {
    match *a {
        Addr::InRegion { region, page, word } => {
            let mut v: Vec<Addr> = smaller_u8(region)
                .into_iter()
                .map(|region| Addr::InRegion { region, page, word })
                .collect();
            v.extend(smaller_u8(page).into_iter().map(|page| Addr::InRegion {
                region,
                page,
                word,
            }));
            v.extend(smaller_u8(word).into_iter().map(|word| Addr::InRegion {
                region,
                page,
                word,
            }));
            v
        }
        Addr::Heap(p) => smaller_u8(p).into_iter().map(Addr::Heap).collect(),
        Addr::Mmap(p) => smaller_u16(p).into_iter().map(Addr::Mmap).collect(),
        // Halving a raw address jumps far; clearing low bits (page, then word) reads better.
        Addr::Raw(x) => {
            let mut v = Vec::new();
            for cleared in [x & !0xFFF, x & !3] {
                if cleared != x && !v.contains(&Addr::Raw(cleared)) {
                    v.push(Addr::Raw(cleared));
                }
            }
            v
        }
        Addr::Vmalloc { alloc, page } => {
            let mut v: Vec<Addr> = smaller_u8(alloc)
                .into_iter()
                .map(|alloc| Addr::Vmalloc { alloc, page })
                .collect();
            v.extend(
                smaller_u8(page)
                    .into_iter()
                    .map(|page| Addr::Vmalloc { alloc, page }),
            );
            v
        }
    }
}

/// Every op one simplification away from `op`: a simpler op, or one field smaller.
#[allow(clippy::too_many_lines)]
fn simpler_ops(op: &Op) -> Vec<Op> {
    let mut out = Vec::new();
    // One field at a time: `$field` over `$values`, everything else as it is.
    macro_rules! vary {
        ($values:expr, |$x:ident| $make:expr) => {
            for $x in $values {
                out.push($make);
            }
        };
    }
    match op.clone() {
        Op::Spawn => {}
        Op::Fork { s } => vary!(smaller_u8(s), |s| Op::Fork { s }),
        Op::Exit { s } => vary!(smaller_u8(s), |s| Op::Exit { s }),
        Op::Mmap {
            s,
            addr,
            len,
            prot,
            flags,
        } => {
            let m = |s, addr, len, prot, flags| Op::Mmap {
                s,
                addr,
                len,
                prot,
                flags,
            };
            vary!(smaller_u8(s), |x| m(x, addr.clone(), len, prot, flags));
            vary!(simpler_addrs(&addr), |x| m(s, x, len, prot, flags));
            vary!(smaller_u32(len), |x| m(s, addr.clone(), x, prot, flags));
            vary!(smaller_u32(prot), |x| m(s, addr.clone(), len, x, flags));
            vary!(smaller_u32(flags), |x| m(s, addr.clone(), len, prot, x));
        }
        Op::Munmap { s, addr, len } => {
            vary!(smaller_u8(s), |x| Op::Munmap {
                s: x,
                addr: addr.clone(),
                len
            });
            vary!(simpler_addrs(&addr), |x| Op::Munmap { s, addr: x, len });
            vary!(smaller_u32(len), |x| Op::Munmap {
                s,
                addr: addr.clone(),
                len: x
            });
        }
        Op::Mprotect { s, addr, len, prot } => {
            let m = |s, addr, len, prot| Op::Mprotect { s, addr, len, prot };
            vary!(smaller_u8(s), |x| m(x, addr.clone(), len, prot));
            vary!(simpler_addrs(&addr), |x| m(s, x, len, prot));
            vary!(smaller_u32(len), |x| m(s, addr.clone(), x, prot));
            vary!(smaller_u32(prot), |x| m(s, addr.clone(), len, x));
        }
        Op::Brk { s, addr } => {
            vary!(smaller_u8(s), |x| Op::Brk {
                s: x,
                addr: addr.clone()
            });
            vary!(simpler_addrs(&addr), |x| Op::Brk { s, addr: x });
        }
        Op::Mremap {
            s,
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => {
            out.push(Op::Munmap {
                s,
                addr: addr.clone(),
                len: old_len,
            });
            let m = |s, addr, old_len, new_len, flags, new_addr| Op::Mremap {
                s,
                addr,
                old_len,
                new_len,
                flags,
                new_addr,
            };
            vary!(smaller_u8(s), |x| m(
                x,
                addr.clone(),
                old_len,
                new_len,
                flags,
                new_addr.clone()
            ));
            vary!(simpler_addrs(&addr), |x| m(
                s,
                x,
                old_len,
                new_len,
                flags,
                new_addr.clone()
            ));
            vary!(smaller_u32(old_len), |x| m(
                s,
                addr.clone(),
                x,
                new_len,
                flags,
                new_addr.clone()
            ));
            vary!(smaller_u32(new_len), |x| m(
                s,
                addr.clone(),
                old_len,
                x,
                flags,
                new_addr.clone()
            ));
            vary!(smaller_u32(flags), |x| m(
                s,
                addr.clone(),
                old_len,
                new_len,
                x,
                new_addr.clone()
            ));
            vary!(simpler_addrs(&new_addr), |x| m(
                s,
                addr.clone(),
                old_len,
                new_len,
                flags,
                x
            ));
        }
        Op::ShmGet { key, size, flags } => {
            vary!(smaller_i32(key), |x| Op::ShmGet {
                key: x,
                size,
                flags
            });
            vary!(smaller_u32(size), |x| Op::ShmGet {
                key,
                size: x,
                flags
            });
            vary!(smaller_u32(flags), |x| Op::ShmGet {
                key,
                size,
                flags: x
            });
        }
        Op::ShmAt { s, id, addr, flags } => {
            let m = |s, id, addr, flags| Op::ShmAt { s, id, addr, flags };
            vary!(smaller_u8(s), |x| m(x, id, addr.clone(), flags));
            vary!(smaller_u32(id), |x| m(s, x, addr.clone(), flags));
            if let Some(a) = &addr {
                out.push(m(s, id, None, flags));
                vary!(simpler_addrs(a), |x| m(s, id, Some(x), flags));
            }
            vary!(smaller_u32(flags), |x| m(s, id, addr.clone(), x));
        }
        Op::ShmDt { s, addr } => {
            vary!(smaller_u8(s), |x| Op::ShmDt {
                s: x,
                addr: addr.clone()
            });
            vary!(simpler_addrs(&addr), |x| Op::ShmDt { s, addr: x });
        }
        Op::ShmCtl { id, cmd } => {
            vary!(smaller_u32(id), |x| Op::ShmCtl { id: x, cmd });
            vary!(smaller_u32(cmd), |x| Op::ShmCtl { id, cmd: x });
        }
        Op::MapDevice {
            s,
            addr,
            page,
            len,
            prot,
        } => {
            let m = |s, addr, page, len, prot| Op::MapDevice {
                s,
                addr,
                page,
                len,
                prot,
            };
            vary!(smaller_u8(s), |x| m(x, addr.clone(), page, len, prot));
            vary!(simpler_addrs(&addr), |x| m(s, x, page, len, prot));
            vary!(smaller_u16(page), |x| m(s, addr.clone(), x, len, prot));
            vary!(smaller_u32(len), |x| m(s, addr.clone(), page, x, prot));
            vary!(smaller_u32(prot), |x| m(s, addr.clone(), page, len, x));
        }
        Op::Vmalloc { len } => vary!(smaller_u32(len), |len| Op::Vmalloc { len }),
        Op::Vfree { addr } => vary!(simpler_addrs(&addr), |addr| Op::Vfree { addr }),
        Op::Read {
            s,
            addr,
            kernel,
            cpu,
        } => {
            let m = |s, addr, kernel, cpu| Op::Read {
                s,
                addr,
                kernel,
                cpu,
            };
            if kernel {
                out.push(m(s, addr.clone(), false, cpu));
            }
            if cpu > 0 {
                out.push(m(s, addr.clone(), kernel, 0));
            }
            vary!(smaller_u8(s), |x| m(x, addr.clone(), kernel, cpu));
            vary!(simpler_addrs(&addr), |x| m(s, x, kernel, cpu));
        }
        Op::Write {
            s,
            addr,
            value,
            kernel,
            cpu,
        } => {
            out.push(Op::Read {
                s,
                addr: addr.clone(),
                kernel,
                cpu,
            });
            let m = |s, addr, value, kernel, cpu| Op::Write {
                s,
                addr,
                value,
                kernel,
                cpu,
            };
            if kernel {
                out.push(m(s, addr.clone(), value, false, cpu));
            }
            if cpu > 0 {
                out.push(m(s, addr.clone(), value, kernel, 0));
            }
            vary!(smaller_u8(s), |x| m(x, addr.clone(), value, kernel, cpu));
            vary!(simpler_addrs(&addr), |x| m(s, x, value, kernel, cpu));
            // A written value stays non-zero (zero is what a fresh page reads): 1 is simplest.
            if value > 1 {
                out.push(m(s, addr.clone(), 1, kernel, cpu));
            }
        }
        Op::Exec {
            s,
            addr,
            kernel,
            cpu,
        } => {
            out.push(Op::Read {
                s,
                addr: addr.clone(),
                kernel,
                cpu,
            });
            let m = |s, addr, kernel, cpu| Op::Exec {
                s,
                addr,
                kernel,
                cpu,
            };
            if kernel {
                out.push(m(s, addr.clone(), false, cpu));
            }
            if cpu > 0 {
                out.push(m(s, addr.clone(), kernel, 0));
            }
            vary!(smaller_u8(s), |x| m(x, addr.clone(), kernel, cpu));
            vary!(simpler_addrs(&addr), |x| m(s, x, kernel, cpu));
        }
    }
    out
}

/// Every step one simplification away: the refusal dropped or lowered, or a simpler op.
fn simpler_steps(step: &Step) -> Vec<Step> {
    let mut out = Vec::new();
    if let Some(k) = step.refuse {
        out.push(Step {
            op: step.op.clone(),
            refuse: None,
        });
        out.extend(smaller_u8(k).into_iter().map(|k| Step {
            op: step.op.clone(),
            refuse: Some(k),
        }));
    }
    out.extend(simpler_ops(&step.op).into_iter().map(|op| Step {
        op,
        refuse: step.refuse,
    }));
    out
}

/// A civil date (year, month, day) from days since 1970-01-01 (proleptic Gregorian).
#[must_use]
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `StaleTlb` -> `stale_tlb`.
fn snake(kind: DivergenceKind) -> String {
    let mut out = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The regression file for a minimized finding: its name (`<kind>_<date>_<hash>.ops`) and text
/// (a header comment saying what diverged, where it came from and when it was found, then the
/// steps).
#[must_use]
pub fn regression_file(m: &Minimized, source: &str, found: (i64, u32, u32)) -> (String, String) {
    let (y, mo, d) = found;
    let date = format!("{y:04}-{mo:02}-{d:02}");
    let steps = op_lang::print_sequence(&Sequence {
        config: m.config,
        steps: m.steps.clone(),
    });
    // FNV-1a of the steps (and the world): the same finding gets the same name.
    let hash = steps.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let d = &m.divergence;
    let at = if d.at < m.steps.len() {
        format!("step {} (`{}`)", d.at + 1, m.steps[d.at])
    } else {
        "the teardown".to_string()
    };
    let name = format!("{}_{date}_{hash:08x}.ops", snake(d.kind));
    let text = format!(
        "# Diverged: {:?} at {at}.\n# Found {date} by fuzzing ({source}); minimized from {} to {} steps.\n# Fails `cargo test` until the bug is fixed: then say here what it was.\n{steps}",
        d.kind,
        m.original_len,
        m.steps.len()
    );
    (name, text)
}
