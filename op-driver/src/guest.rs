//! The QEMU suite's protocol between the host runner and the bare-metal guest, both directions
//! as little-endian 32-bit words.
//!
//! **Ops in** (`ops.bin`, read by the guest through semihosting): `[BLOB_MAGIC, defect,
//! defect_arg, sequences]`, then per sequence `[pool_frames, asids, cpus, steps]` (the world it
//! runs in, [`GuestSequence`]), then per step `[groups]`, each group `[space, cpu, primed,
//! va..., ranges, (first, pages)...]` ([`ProbeGroup`]), followed by the step's words
//! ([`crate::encode_step_words`]). A group's `space` is a live-space index ([`NO_SPACE`]:
//! kernel pages only) and `cpu` the core that primes and probes it; ranges list pages, not
//! page lists, so that a step may probe millions of pages in a small blob.
//!
//! **Reports out** (`report.bin`, written by the guest as it goes): records `[REC_SEQUENCE,
//! seq, start_free]`, `[REC_STEP, step, outcome, value, free, probes]` followed by `probes`
//! times [`PROBE_WORDS`] words ([`Probe`], the groups' pages in order), and `[REC_END, seq,
//! free_after_teardown, 0]`.

use alloc::vec::Vec;

use crate::{DecodeError, Outcome, Step, decode_step_words, encode_step_words};

/// First word of an ops blob.
pub const BLOB_MAGIC: u32 = u32::from_le_bytes(*b"VMQ4");
/// `probe_space` when no user space is probed.
pub const NO_SPACE: u32 = u32::MAX;
/// A sequence starts: `[REC_SEQUENCE, seq, start_free]`.
pub const REC_SEQUENCE: u32 = 1;
/// A step ran: `[REC_STEP, step, outcome, value, free, probes]` + probes.
pub const REC_STEP: u32 = 2;
/// A sequence ended after teardown: `[REC_END, seq, free, 0]`.
pub const REC_END: u32 = 3;
/// Words per probe record.
pub const PROBE_WORDS: usize = 11;

/// A defect the guest's machine injects (the QEMU side of the checker's broken machines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestDefect {
    /// A sound machine.
    None,
    /// Every TLB invalidate is dropped.
    DropEveryInvalidate,
    /// The k-th TLB page invalidate (`TLBIMVA` or `TLBIMVAA`) of each sequence (0-based) is
    /// dropped.
    DropNthInvalidate(u32),
    /// Read-only user page descriptors are written read/write (APX cleared).
    MakeReadOnlyUserPagesWritable,
    /// User page descriptors are written executable (XN cleared).
    MakeUserPagesExecutable,
    /// A defect of the guest, not of its machine: the record of step k (0-based) of each
    /// sequence is not written (the runner must not lose it silently).
    DropStepRecord(u32),
    /// A defect of the guest: after its last record it exits with status 3 instead of 0.
    FailAfterLastRecord,
    /// Every broadcast TLB invalidate is issued in its local form (a missing shootdown: the
    /// other core keeps its entries).
    LocalInvalidates,
}

impl GuestDefect {
    fn words(self) -> [u32; 2] {
        match self {
            Self::None => [0, 0],
            Self::DropEveryInvalidate => [1, 0],
            Self::DropNthInvalidate(k) => [2, k],
            Self::MakeReadOnlyUserPagesWritable => [3, 0],
            Self::DropStepRecord(k) => [4, k],
            Self::FailAfterLastRecord => [5, 0],
            Self::MakeUserPagesExecutable => [6, 0],
            Self::LocalInvalidates => [7, 0],
        }
    }
    fn from_words(kind: u32, arg: u32) -> Option<Self> {
        Some(match kind {
            0 => Self::None,
            1 => Self::DropEveryInvalidate,
            2 => Self::DropNthInvalidate(arg),
            3 => Self::MakeReadOnlyUserPagesWritable,
            4 => Self::DropStepRecord(arg),
            5 => Self::FailAfterLastRecord,
            6 => Self::MakeUserPagesExecutable,
            7 => Self::LocalInvalidates,
            _ => return None,
        })
    }
}

/// Whether the guest may place an instruction in the frame at `pa` to fetch it: frames of the
/// pool and the device window, up to the end of RAM (never the guest's own image below the
/// pool, never MMIO). The runner plans fetches only where this holds.
#[must_use]
pub fn fetchable_frame(pa: u32) -> bool {
    let layout = vmm::Layout::ARM_VIRT;
    (u64::from(layout.pool_base)..u64::from(layout.ram_base) + u64::from(layout.ram_size))
        .contains(&u64::from(pa))
}

/// Whether an instruction fetch at `va` is one the guest runs: user addresses (below the TTBR0
/// limit) and the vmalloc window, whose frames the vmm hands out. Elsewhere the kernel half is
/// the guest's own linear map, whose words it never replaces.
#[must_use]
pub fn fetchable_address(va: u32) -> bool {
    let layout = vmm::Layout::ARM_VIRT;
    va < 0x4000_0000 || (layout.vmalloc_base..layout.vmalloc_end).contains(&va)
}

/// Pages probed in one space after a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeGroup {
    /// Index of the live space the pages are probed in, if any (kernel pages are probed in it
    /// too, or in no space). The first group's space is the step's, entered before the step
    /// (an index before it); the others' are indices after it, but for a group of core 1,
    /// which is the step's own space too.
    pub space: Option<u32>,
    /// The core that primes and probes the pages: 0, or 1 for the step's own space on the
    /// second core (planned only while that space is current there, so that the core keeps
    /// what it primed: QEMU flushes a core's TLB when its CONTEXTIDR changes).
    pub cpu: u32,
    /// Pages primed before the step (the first group and core 1's only; each is also in
    /// `ranges`).
    pub primed: Vec<u32>,
    /// `(first page, pages)`: the pages probed after the step, in this order.
    pub ranges: Vec<(u32, u32)>,
}

impl ProbeGroup {
    /// The pages probed, in order.
    pub fn pages(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges
            .iter()
            .flat_map(|&(first, n)| (0..n).map(move |i| first.wrapping_add(i << 12)))
    }

    /// How many pages are probed.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.ranges.iter().map(|r| r.1).sum()
    }

    /// Ranges from ascending page addresses (consecutive pages join one range).
    #[must_use]
    pub fn ranges_of(pages: &[u32]) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for &va in pages {
            match out.last_mut() {
                Some((first, n)) if u64::from(*first) + (u64::from(*n) << 12) == u64::from(va) => {
                    *n += 1;
                }
                _ => out.push((va, 1)),
            }
        }
        out
    }
}

/// A step and the pages probed around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbedStep {
    /// The probe groups: the step's own space first, then (when every live space is probed)
    /// the others.
    pub groups: Vec<ProbeGroup>,
    /// The step.
    pub step: Step,
}

/// A sequence and the world it runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSequence {
    /// Frames in the vmm's pool.
    pub pool_frames: u32,
    /// The highest user ASID the vmm hands out.
    pub asids: u8,
    /// CPUs (1 or 2: the guest's second core runs CPU 1's accesses and probes).
    pub cpus: u8,
    /// The steps.
    pub steps: Vec<ProbedStep>,
}

/// Encodes a blob of sequences.
#[must_use]
pub fn encode_blob(defect: GuestDefect, sequences: &[GuestSequence]) -> Vec<u8> {
    let [kind, arg] = defect.words();
    let mut w = alloc::vec![BLOB_MAGIC, kind, arg, sequences.len() as u32];
    for seq in sequences {
        w.push(seq.pool_frames);
        w.push(u32::from(seq.asids));
        w.push(u32::from(seq.cpus));
        w.push(seq.steps.len() as u32);
        for p in &seq.steps {
            w.push(p.groups.len() as u32);
            for g in &p.groups {
                w.push(g.space.unwrap_or(NO_SPACE));
                w.push(g.cpu);
                w.push(g.primed.len() as u32);
                w.extend(&g.primed);
                w.push(g.ranges.len() as u32);
                for &(first, n) in &g.ranges {
                    w.extend([first, n]);
                }
            }
            encode_step_words(&p.step, &mut w);
        }
    }
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads a blob one sequence at a time (the guest never holds it all decoded).
pub struct BlobReader<'a> {
    words: &'a [u32],
    at: usize,
    /// The defect to inject.
    pub defect: GuestDefect,
    /// Sequences left.
    pub remaining: u32,
}

impl<'a> BlobReader<'a> {
    /// Checks the header.
    pub fn new(words: &'a [u32]) -> Result<Self, DecodeError> {
        match words {
            [BLOB_MAGIC, kind, arg, n, ..] => Ok(Self {
                words,
                at: 4,
                defect: GuestDefect::from_words(*kind, *arg).ok_or(DecodeError::UnknownTag(1))?,
                remaining: *n,
            }),
            _ => Err(DecodeError::UnknownTag(0)),
        }
    }

    fn word(&mut self) -> Result<u32, DecodeError> {
        let w = *self
            .words
            .get(self.at)
            .ok_or(DecodeError::Truncated(self.at))?;
        self.at += 1;
        Ok(w)
    }

    /// A count, then that many items of `width` words.
    fn words(&mut self, width: usize) -> Result<Vec<u32>, DecodeError> {
        let count = self.word()? as usize * width;
        let items = self
            .words
            .get(self.at..self.at + count)
            .ok_or(DecodeError::Truncated(self.at))?
            .to_vec();
        self.at += count;
        Ok(items)
    }

    /// The next sequence, or `None` after the last.
    pub fn next_sequence(&mut self) -> Option<Result<GuestSequence, DecodeError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.sequence())
    }

    fn sequence(&mut self) -> Result<GuestSequence, DecodeError> {
        let pool_frames = self.word()?;
        let asids = u8::try_from(self.word()?).map_err(|_| DecodeError::UnknownTag(self.at))?;
        let cpus = u8::try_from(self.word()?).map_err(|_| DecodeError::UnknownTag(self.at))?;
        let n = self.word()?;
        let mut steps = Vec::new();
        for _ in 0..n {
            let mut groups = Vec::new();
            for _ in 0..self.word()? {
                let space = self.word()?;
                let cpu = self.word()?;
                let primed = self.words(1)?;
                let ranges = self.words(2)?;
                groups.push(ProbeGroup {
                    space: (space != NO_SPACE).then_some(space),
                    cpu,
                    primed,
                    ranges: ranges.chunks_exact(2).map(|r| (r[0], r[1])).collect(),
                });
            }
            let (step, used) = decode_step_words(&self.words[self.at..])
                .map_err(|_| DecodeError::UnknownTag(self.at))?;
            self.at += used;
            steps.push(ProbedStep { groups, step });
        }
        Ok(GuestSequence {
            pool_frames,
            asids,
            cpus,
            steps,
        })
    }
}

/// Access results in [`Probe::accesses`]: two bits per access, `attempted` and `succeeded`.
/// Accesses 0-3 prime before the step (PL0 read, PL0 write-back, PL1 read, PL1 write-back),
/// 4-7 repeat them after it, 8 and 9 fetch an instruction placed at word 0 of the page after
/// it (PL0, PL1).
pub const ACCESS_NAMES: [&str; 10] = [
    "pre PL0 read",
    "pre PL0 write",
    "pre PL1 read",
    "pre PL1 write",
    "post PL0 read",
    "post PL0 write",
    "post PL1 read",
    "post PL1 write",
    "post PL0 execute",
    "post PL1 execute",
];
/// [`ACCESS_NAMES`] index of the PL0 instruction fetch after the step.
pub const EXEC_PL0: usize = 8;
/// [`ACCESS_NAMES`] index of the PL1 instruction fetch after the step.
pub const EXEC_PL1: usize = 9;

/// What the guest saw for one page around one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Probe {
    /// The page.
    pub va: u32,
    /// PAR after ATS1CUR, ATS1CUW, ATS1CPR, ATS1CPW (after the step).
    pub ats: [u32; 4],
    /// Two bits per access of [`ACCESS_NAMES`]: bit 2i attempted, bit 2i+1 succeeded.
    pub accesses: u32,
    /// Word 0 read by LDRT and LDR before the step.
    pub pre_values: [u32; 2],
    /// Word 0 read by LDRT and LDR after the step.
    pub post_values: [u32; 2],
    /// Word 0 of the physical page ATS1CPR gives, read through the kernel's linear map.
    pub content: u32,
}

impl Probe {
    /// Whether access `i` was attempted, and if so whether it succeeded.
    #[must_use]
    pub const fn access(&self, i: usize) -> Option<bool> {
        if self.accesses >> (2 * i) & 1 == 0 {
            None
        } else {
            Some(self.accesses >> (2 * i + 1) & 1 == 1)
        }
    }

    /// Records access `i`.
    pub fn set_access(&mut self, i: usize, ok: bool) {
        self.accesses |= (1 | (u32::from(ok) << 1)) << (2 * i);
    }

    /// The record's words.
    #[must_use]
    pub const fn words(&self) -> [u32; PROBE_WORDS] {
        [
            self.va,
            self.ats[0],
            self.ats[1],
            self.ats[2],
            self.ats[3],
            self.accesses,
            self.pre_values[0],
            self.pre_values[1],
            self.post_values[0],
            self.post_values[1],
            self.content,
        ]
    }

    /// From a record's words.
    #[must_use]
    pub const fn from_words(w: &[u32; PROBE_WORDS]) -> Self {
        Self {
            va: w[0],
            ats: [w[1], w[2], w[3], w[4]],
            accesses: w[5],
            pre_values: [w[6], w[7]],
            post_values: [w[8], w[9]],
            content: w[10],
        }
    }
}

/// The outcome's words (`kind`, `value`).
#[must_use]
pub const fn outcome_words(o: Outcome) -> [u32; 2] {
    match o {
        Outcome::Ok(v) => [0, v],
        Outcome::Err(e) => [1, e as u32],
        Outcome::Skipped => [2, 0],
    }
}

/// The outcome from its words.
#[must_use]
pub const fn outcome_from_words(kind: u32, value: u32) -> Outcome {
    match kind {
        0 => Outcome::Ok(value),
        1 => Outcome::Err(value as i32),
        _ => Outcome::Skipped,
    }
}

/// One record of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A sequence started with this many free frames.
    Sequence { seq: u32, free: u32 },
    /// A step ran.
    Step {
        step: u32,
        outcome: Outcome,
        free: u32,
        probes: Vec<Probe>,
    },
    /// A sequence ended; free frames after teardown.
    End { seq: u32, free: u32 },
}

/// The words of a step record before its probes (a guest that streams the probes writes this,
/// then each probe's [`Probe::words`]).
#[must_use]
pub const fn step_header(step: u32, outcome: Outcome, free: u32, probes: u32) -> [u32; 6] {
    let [k, v] = outcome_words(outcome);
    [REC_STEP, step, k, v, free, probes]
}

impl Record {
    /// Appends the record's words.
    pub fn encode(&self, out: &mut Vec<u32>) {
        match self {
            Self::Sequence { seq, free } => out.extend([REC_SEQUENCE, *seq, *free]),
            Self::Step {
                step,
                outcome,
                free,
                probes,
            } => {
                out.extend(step_header(*step, *outcome, *free, probes.len() as u32));
                for p in probes {
                    out.extend(p.words());
                }
            }
            Self::End { seq, free } => out.extend([REC_END, *seq, *free, 0]),
        }
    }
}

/// Decodes a whole report; a truncated tail (the guest died mid-record) is an error naming
/// the word where it starts.
pub fn decode_report(words: &[u32]) -> Result<Vec<Record>, DecodeError> {
    match decode_report_prefix(words) {
        (records, None) => Ok(records),
        (_, Some(e)) => Err(e),
    }
}

/// Decodes a report up to its first bad or truncated record: the records before it, and the
/// error if there is one (a guest that died mid-record leaves a truncated tail).
pub fn decode_report_prefix(words: &[u32]) -> (Vec<Record>, Option<DecodeError>) {
    let mut out = Vec::new();
    match decode_into(words, &mut out) {
        Ok(()) => (out, None),
        Err(e) => (out, Some(e)),
    }
}

fn decode_into(words: &[u32], out: &mut Vec<Record>) -> Result<(), DecodeError> {
    let mut i = 0;
    while i < words.len() {
        let get = |n: usize| words.get(i..i + n).ok_or(DecodeError::Truncated(i));
        match words[i] {
            REC_SEQUENCE => {
                let w = get(3)?;
                out.push(Record::Sequence {
                    seq: w[1],
                    free: w[2],
                });
                i += 3;
            }
            REC_STEP => {
                let w = get(6)?;
                let n = w[5] as usize;
                let body = words
                    .get(i + 6..i + 6 + n * PROBE_WORDS)
                    .ok_or(DecodeError::Truncated(i))?;
                let probes = body
                    .chunks_exact(PROBE_WORDS)
                    .map(|c| {
                        let mut a = [0; PROBE_WORDS];
                        a.copy_from_slice(c);
                        Probe::from_words(&a)
                    })
                    .collect();
                out.push(Record::Step {
                    step: w[1],
                    outcome: outcome_from_words(w[2], w[3]),
                    free: w[4],
                    probes,
                });
                i += 6 + n * PROBE_WORDS;
            }
            REC_END => {
                let w = get(4)?;
                out.push(Record::End {
                    seq: w[1],
                    free: w[2],
                });
                i += 4;
            }
            _ => return Err(DecodeError::UnknownTag(i)),
        }
    }
    Ok(())
}

/// First word of a descriptor-matrix blob: `[MATRIX_MAGIC, defect, cases]`, then per case
/// `[va, dacr, writes]` and `writes` times `[pa, word]` ([`MatrixCase`]).
pub const MATRIX_MAGIC: u32 = u32::from_le_bytes(*b"VMQM");
/// A matrix result: `[REC_MATRIX, case, par0, par1, par2, par3, fetches]`.
pub const REC_MATRIX: u32 = 4;
/// The TTBR0 table (TTBCR.N = 2: 1024 entries) of a matrix case.
pub const MATRIX_L1: u32 = 0x4100_0000;
/// The one L2 table a matrix case may link.
pub const MATRIX_L2: u32 = 0x4100_1000;
/// The physical range matrix descriptors map, filled with `SVC #0` by the guest so that any
/// fetch there ends at once.
pub const MATRIX_TARGETS: core::ops::Range<u32> = 0x4200_0000..0x4500_0000;
/// The domain of the guest's own memory: a case's DACR always makes it client, whatever the
/// case asks (so matrix cases test the other fifteen).
pub const GUEST_DOMAIN: u8 = 15;

/// Whether a matrix case may write the table word at `pa`.
#[must_use]
pub fn matrix_table_word(pa: u32) -> bool {
    pa % 4 == 0
        && ((MATRIX_L1..MATRIX_L1 + 4096).contains(&pa)
            || (MATRIX_L2..MATRIX_L2 + 1024).contains(&pa))
}

/// A defect of the matrix guest: the runner must report the disagreements it causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixDefect {
    /// A sound guest.
    None,
    /// Every domain is client, whatever DACR the case asks for.
    AllDomainsClient,
}

/// One combination of the descriptor matrix: the table words (both tables start zeroed), the
/// DACR (domain [`GUEST_DOMAIN`] forced to client) and the address probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixCase {
    /// The address probed (below 1 GiB: TTBR0).
    pub va: u32,
    /// DACR.
    pub dacr: u32,
    /// `(physical word address, value)` pairs, in [`MATRIX_L1`] or [`MATRIX_L2`].
    pub writes: Vec<(u32, u32)>,
}

/// What the guest saw for one matrix case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixResult {
    /// The case's index.
    pub case: u32,
    /// PAR after ATS1CUR, ATS1CUW, ATS1CPR, ATS1CPW.
    pub ats: [u32; 4],
    /// Instruction fetches as [`Probe::accesses`] bits at [`EXEC_PL0`] and [`EXEC_PL1`].
    pub fetches: u32,
}

/// Encodes a matrix blob.
#[must_use]
pub fn encode_matrix(defect: MatrixDefect, cases: &[MatrixCase]) -> Vec<u8> {
    let defect = match defect {
        MatrixDefect::None => 0,
        MatrixDefect::AllDomainsClient => 1,
    };
    let mut w = alloc::vec![MATRIX_MAGIC, defect, cases.len() as u32];
    for c in cases {
        w.extend([c.va, c.dacr, c.writes.len() as u32]);
        for &(pa, word) in &c.writes {
            w.extend([pa, word]);
        }
    }
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a matrix blob; a write outside the matrix tables is an error.
pub fn decode_matrix(words: &[u32]) -> Result<(MatrixDefect, Vec<MatrixCase>), DecodeError> {
    let [MATRIX_MAGIC, defect, n, rest @ ..] = words else {
        return Err(DecodeError::UnknownTag(0));
    };
    let defect = match defect {
        0 => MatrixDefect::None,
        1 => MatrixDefect::AllDomainsClient,
        _ => return Err(DecodeError::UnknownTag(1)),
    };
    let mut at = 0;
    let mut word = || {
        let w = rest.get(at).copied().ok_or(DecodeError::Truncated(at + 3));
        at += 1;
        w
    };
    let mut cases = Vec::new();
    for _ in 0..*n {
        let (va, dacr, count) = (word()?, word()?, word()?);
        let mut writes = Vec::new();
        for _ in 0..count {
            let (pa, value) = (word()?, word()?);
            if !matrix_table_word(pa) {
                return Err(DecodeError::UnknownTag(at + 1));
            }
            writes.push((pa, value));
        }
        cases.push(MatrixCase { va, dacr, writes });
    }
    Ok((defect, cases))
}

impl MatrixResult {
    /// Appends the record's words.
    pub fn encode(&self, out: &mut Vec<u32>) {
        out.extend([REC_MATRIX, self.case]);
        out.extend(self.ats);
        out.push(self.fetches);
    }
}

/// Decodes a matrix report.
pub fn decode_matrix_report(words: &[u32]) -> Result<Vec<MatrixResult>, DecodeError> {
    words
        .chunks(7)
        .enumerate()
        .map(|(i, c)| match *c {
            [REC_MATRIX, case, a, b, p, q, fetches] => Ok(MatrixResult {
                case,
                ats: [a, b, p, q],
                fetches,
            }),
            [_, ..] if c.len() < 7 => Err(DecodeError::Truncated(7 * i)),
            _ => Err(DecodeError::UnknownTag(7 * i)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConcreteOp;

    #[test]
    fn pages_become_ranges_and_back() {
        let pages = [0x1000, 0x2000, 0x3000, 0x5000, 0xFFFF_F000];
        let ranges = ProbeGroup::ranges_of(&pages);
        assert_eq!(ranges, [(0x1000, 3), (0x5000, 1), (0xFFFF_F000, 1)]);
        let g = ProbeGroup {
            space: None,
            cpu: 0,
            primed: Vec::new(),
            ranges,
        };
        assert_eq!(g.pages().collect::<Vec<_>>(), pages);
        assert_eq!(g.count(), 5);
    }

    #[test]
    fn a_blob_reads_back_as_written() {
        let step = |op| ProbedStep {
            groups: alloc::vec![
                ProbeGroup {
                    space: Some(0),
                    cpu: 0,
                    primed: alloc::vec![0x1000],
                    ranges: alloc::vec![(0x1000, 4)],
                },
                ProbeGroup {
                    space: Some(0),
                    cpu: 1,
                    primed: alloc::vec![0x2000],
                    ranges: alloc::vec![(0x2000, 1)],
                },
                ProbeGroup {
                    space: None,
                    cpu: 0,
                    primed: Vec::new(),
                    ranges: Vec::new(),
                },
            ],
            step: Step {
                op,
                refuse: Some(2),
            },
        };
        let sequences = [GuestSequence {
            pool_frames: 300,
            asids: 7,
            cpus: 2,
            steps: alloc::vec![step(ConcreteOp::Spawn), step(ConcreteOp::Exit { s: 0 })],
        }];
        let bytes = encode_blob(GuestDefect::LocalInvalidates, &sequences);
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut blob = BlobReader::new(&words).unwrap();
        assert_eq!(blob.defect, GuestDefect::LocalInvalidates);
        assert_eq!(blob.next_sequence(), Some(Ok(sequences[0].clone())));
        assert_eq!(blob.next_sequence(), None);
        // A blob cut short is an error, not a shorter sequence.
        let mut cut = BlobReader::new(&words[..words.len() - 3]).unwrap();
        assert!(matches!(cut.next_sequence(), Some(Err(_))));
    }

    #[test]
    fn a_matrix_blob_writes_only_its_tables() {
        let case = MatrixCase {
            va: 0x1000_0000,
            dacr: 0x5555_5555,
            writes: alloc::vec![(MATRIX_L1 + 0x400, 0x4230_0c02), (MATRIX_L2 + 0x3FC, 1)],
        };
        let words = |cases: &[MatrixCase]| -> Vec<u32> {
            encode_matrix(MatrixDefect::None, cases)
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        assert_eq!(
            decode_matrix(&words(core::slice::from_ref(&case))),
            Ok((MatrixDefect::None, alloc::vec![case.clone()]))
        );
        for outside in [MATRIX_L1 - 4, MATRIX_L2 + 0x400, MATRIX_L1 + 2, 0x4000_0000] {
            let bad = MatrixCase {
                writes: alloc::vec![(outside, 0)],
                ..case.clone()
            };
            assert!(decode_matrix(&words(&[bad])).is_err(), "{outside:#x}");
        }
    }
}
