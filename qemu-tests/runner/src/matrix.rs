//! The descriptor matrix: every architecturally defined combination of descriptor kind,
//! AP[2:0], XN, PXN, nG and domain mode, installed by the guest on QEMU's MMU and asked about
//! with ATS (PL0 and PL1, read and write) and an instruction fetch at each level, against
//! `reference_model::armv7::walk` on the host. Both were written from the ARM ARM, one by
//! QEMU's authors and one here: any disagreement is a finding about one of them, reported with
//! the descriptor words.
//!
//! Reserved encodings are listed and skipped: AP[2:0] = 100 (APX = 1 with AP = 00) and domain
//! mode 0b10. Memory attributes are not compared: QEMU 7.2 writes none into the
//! short-descriptor PAR (the host checker compares them from the table words).

use std::fmt;

use op_driver::guest::{
    EXEC_PL0, EXEC_PL1, GUEST_DOMAIN, MATRIX_L1, MATRIX_L2, MatrixCase, MatrixResult, Probe,
    matrix_table_word,
};
use reference_model::armv7::{AccessKind, FaultKind, Privilege, Registers, walk};

/// The address every case probes: inside the block of every kind, at a word that is neither
/// the first of its page nor of its block.
pub const VA: u32 = 0x1005_3AB0;
/// The domain of sections and page tables (supersections are always domain 0).
const DOMAIN: u8 = 9;
/// Where each kind's block starts (all inside `op_driver::guest::MATRIX_TARGETS`).
const SECTION_PA: u32 = 0x4230_0000;
const SUPERSECTION_PA: u32 = 0x4400_0000;
const LARGE_PA: u32 = 0x4261_0000;
const SMALL_PA: u32 = 0x4262_3000;
/// TEX=001 C=1 B=1: Normal write-back (attributes are not compared).
const NORMAL: u32 = 0b1100;

/// The kinds of descriptor a translation can end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A first-level fault descriptor (bits 1:0 = 00; every other bit set as a section's).
    L1Fault,
    /// A 1 MiB section.
    Section,
    /// A 16 MiB supersection (sixteen identical first-level entries).
    Supersection,
    /// A page table whose entry is a fault (bits 1:0 = 00; the rest as a small page's).
    L2Fault,
    /// A 64 KiB large page (sixteen identical second-level entries).
    LargePage,
    /// A 4 KiB small page.
    SmallPage,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::L1Fault,
        Kind::Section,
        Kind::Supersection,
        Kind::L2Fault,
        Kind::LargePage,
        Kind::SmallPage,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::L1Fault => "first-level fault",
            Kind::Section => "section",
            Kind::Supersection => "supersection",
            Kind::L2Fault => "second-level fault",
            Kind::LargePage => "large page",
            Kind::SmallPage => "small page",
        }
    }
}

/// One combination of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Combination {
    /// The descriptor kind.
    pub kind: Kind,
    /// AP[2:0] (APX in bit 2).
    pub ap: u8,
    /// Execute never.
    pub xn: bool,
    /// Privileged execute never (bit 0 of a section, bit 2 of a page-table descriptor).
    pub pxn: bool,
    /// Not global.
    pub ng: bool,
    /// The DACR mode of the descriptor's domain: 0b00 no access, 0b01 client, 0b11 manager.
    pub mode: u8,
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            0b00 => "no access",
            0b01 => "client",
            _ => "manager",
        };
        write!(
            f,
            "{} AP={:03b} XN={} PXN={} nG={} domain {} {mode}",
            self.kind.name(),
            self.ap,
            u8::from(self.xn),
            u8::from(self.pxn),
            u8::from(self.ng),
            self.domain(),
        )
    }
}

/// The combinations, and how many reserved ones were skipped.
#[must_use]
pub fn combinations() -> (Vec<Combination>, usize) {
    let (mut out, mut skipped) = (Vec::new(), 0);
    for kind in Kind::ALL {
        for ap in 0..8u8 {
            for bits in 0..8u8 {
                for mode in 0..4u8 {
                    if ap == 0b100 || mode == 0b10 {
                        skipped += 1;
                        continue;
                    }
                    out.push(Combination {
                        kind,
                        ap,
                        xn: bits & 1 != 0,
                        pxn: bits & 2 != 0,
                        ng: bits & 4 != 0,
                        mode,
                    });
                }
            }
        }
    }
    (out, skipped)
}

impl Combination {
    /// The descriptor's domain.
    #[must_use]
    pub fn domain(&self) -> u8 {
        if self.kind == Kind::Supersection {
            0
        } else {
            DOMAIN
        }
    }

    /// DACR: the descriptor's domain in the combination's mode, every other domain in a mode
    /// that would answer differently (so a walk that reads the wrong domain shows), the
    /// guest's own domain client.
    #[must_use]
    pub fn dacr(&self) -> u32 {
        let other = if self.mode == 0b01 { 0b11 } else { 0b01 };
        let mut dacr = 0;
        for d in 0..16u8 {
            let mode = if d == GUEST_DOMAIN {
                0b01
            } else if d == self.domain() {
                self.mode
            } else {
                other
            };
            dacr |= u32::from(mode) << (2 * d);
        }
        dacr
    }

    /// The first-level word and, for page tables, the second-level word.
    #[must_use]
    pub fn words(&self) -> (u32, Option<u32>) {
        let (apx, ap10) = (u32::from(self.ap >> 2), u32::from(self.ap & 0b11));
        let (xn, pxn, ng) = (u32::from(self.xn), u32::from(self.pxn), u32::from(self.ng));
        let domain = u32::from(self.domain()) << 5;
        let section = |base: u32| {
            base | (ng << 17)
                | (apx << 15)
                | (1 << 12)
                | (ap10 << 10)
                | domain
                | (xn << 4)
                | NORMAL
                | 0b10
                | pxn
        };
        let table = MATRIX_L2 | domain | (pxn << 2) | 0b01;
        let small = |kind: u32| {
            SMALL_PA | (ng << 11) | (apx << 9) | (1 << 6) | (ap10 << 4) | NORMAL | kind | xn
        };
        match self.kind {
            Kind::L1Fault => (section(SECTION_PA) & !0b11, None),
            Kind::Section => (section(SECTION_PA), None),
            Kind::Supersection => (section(SUPERSECTION_PA) | (1 << 18), None),
            Kind::L2Fault => (table, Some(small(0) & !0b11)),
            Kind::LargePage => (
                table,
                Some(
                    LARGE_PA
                        | (xn << 15)
                        | (1 << 12)
                        | (ng << 11)
                        | (apx << 9)
                        | (ap10 << 4)
                        | NORMAL
                        | 0b01,
                ),
            ),
            Kind::SmallPage => (table, Some(small(0b10))),
        }
    }

    /// The case the guest installs: sixteen first-level entries for a supersection, sixteen
    /// second-level entries for a large page, one otherwise.
    #[must_use]
    pub fn case(&self) -> MatrixCase {
        let (l1, l2) = self.words();
        let l1_index = VA >> 20;
        let l2_index = (VA >> 12) & 0xFF;
        let mut writes = Vec::new();
        let l1_entries = if self.kind == Kind::Supersection {
            (l1_index & !15)..(l1_index & !15) + 16
        } else {
            l1_index..l1_index + 1
        };
        writes.extend(l1_entries.map(|i| (MATRIX_L1 + 4 * i, l1)));
        if let Some(l2) = l2 {
            let l2_entries = if self.kind == Kind::LargePage {
                (l2_index & !15)..(l2_index & !15) + 16
            } else {
                l2_index..l2_index + 1
            };
            writes.extend(l2_entries.map(|i| (MATRIX_L2 + 4 * i, l2)));
        }
        MatrixCase {
            va: VA,
            dacr: self.dacr(),
            writes,
        }
    }
}

/// An ATS answer: a translation (the page's PA, or for a supersection PA[31:24] with PAR.SS)
/// or a fault (status FS[4:0] of the PAR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// PA[31:12].
    Page(u32),
    /// A supersection: PA[31:24].
    Supersection(u32),
    /// The fault status FS[4:0].
    Fault(u32),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Answer::Page(pa) => write!(f, "page {pa:#010x}"),
            Answer::Supersection(pa) => write!(f, "supersection {pa:#010x}"),
            Answer::Fault(fs) => {
                let what = match fs {
                    0b00101 => "translation fault, first level",
                    0b00111 => "translation fault, second level",
                    0b01001 => "domain fault, first level",
                    0b01011 => "domain fault, second level",
                    0b01101 => "permission fault, first level",
                    0b01111 => "permission fault, second level",
                    _ => "fault",
                };
                write!(f, "{what} (FS {fs:#07b})")
            }
        }
    }
}

/// What a PAR says.
#[must_use]
pub fn answer_of_par(par: u32) -> Answer {
    if par & 1 != 0 {
        Answer::Fault((par >> 1) & 0x1F)
    } else if par & 0b10 != 0 {
        Answer::Supersection(par & 0xFF00_0000)
    } else {
        Answer::Page(par & 0xFFFF_F000)
    }
}

/// What the reference walker says for an access to `case` (over the case's table words).
fn walker_answer(case: &MatrixCase, access: AccessKind, privilege: Privilege) -> Answer {
    let read = |pa: u32| {
        matrix_table_word(pa).then(|| {
            case.writes
                .iter()
                .find(|(at, _)| *at == pa)
                .map_or(0, |&(_, w)| w)
        })
    };
    let regs = Registers {
        ttbr0: MATRIX_L1,
        ttbr1: 0,
        ttbcr_n: 2,
        dacr: case.dacr,
    };
    match walk(read, regs, case.va, access, privilege) {
        Ok(t) if t.block_size == 0x100_0000 => Answer::Supersection(t.pa & 0xFF00_0000),
        Ok(t) => Answer::Page(t.pa & !0xFFF),
        Err(f) => {
            let level = u32::from(f.level == 2) << 1;
            Answer::Fault(
                match f.kind {
                    FaultKind::Translation => 0b00101,
                    FaultKind::Domain => 0b01001,
                    FaultKind::Permission => 0b01101,
                    FaultKind::External => 0b01000,
                } | level,
            )
        }
    }
}

/// The six accesses of a case, in report order.
pub const ACCESSES: [&str; 6] = [
    "PL0 read (ATS1CUR)",
    "PL0 write (ATS1CUW)",
    "PL1 read (ATS1CPR)",
    "PL1 write (ATS1CPW)",
    "PL0 fetch",
    "PL1 fetch",
];

/// One access's answer, from either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// An ATS answer.
    Ats(Answer),
    /// Whether a fetch ran (`None`: the guest did not report it).
    Fetch(Option<bool>),
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Ats(a) => write!(f, "{a}"),
            Seen::Fetch(Some(true)) => write!(f, "runs"),
            Seen::Fetch(Some(false)) => write!(f, "prefetch abort"),
            Seen::Fetch(None) => write!(f, "not reported"),
        }
    }
}

/// What the walker says for every access of `case`.
#[must_use]
pub fn expected(case: &MatrixCase) -> [Seen; 6] {
    use AccessKind::{Execute, Read, Write};
    use Privilege::{Pl0, Pl1};
    let ats = |a, p| Seen::Ats(walker_answer(case, a, p));
    let fetch = |p| {
        Seen::Fetch(Some(!matches!(
            walker_answer(case, Execute, p),
            Answer::Fault(_)
        )))
    };
    [
        ats(Read, Pl0),
        ats(Write, Pl0),
        ats(Read, Pl1),
        ats(Write, Pl1),
        fetch(Pl0),
        fetch(Pl1),
    ]
}

/// What QEMU said for every access.
#[must_use]
pub fn observed(result: &MatrixResult) -> [Seen; 6] {
    let fetches = Probe {
        accesses: result.fetches,
        ..Probe::default()
    };
    [
        Seen::Ats(answer_of_par(result.ats[0])),
        Seen::Ats(answer_of_par(result.ats[1])),
        Seen::Ats(answer_of_par(result.ats[2])),
        Seen::Ats(answer_of_par(result.ats[3])),
        Seen::Fetch(fetches.access(EXEC_PL0)),
        Seen::Fetch(fetches.access(EXEC_PL1)),
    ]
}

/// A disagreement between the walker and QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The combination.
    pub combination: Combination,
    /// Index into [`ACCESSES`].
    pub access: usize,
    /// The walker's answer.
    pub walker: Seen,
    /// QEMU's answer.
    pub qemu: Seen,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.combination;
        let (l1, l2) = c.words();
        write!(
            f,
            "{c}: {}: walker {}, QEMU {} (L1 {l1:#010x}{}, DACR {:#010x}, VA {VA:#010x})",
            ACCESSES[self.access],
            self.walker,
            self.qemu,
            l2.map_or(String::new(), |w| format!(", L2 {w:#010x}")),
            c.dacr()
        )
    }
}

/// A way QEMU is known to depart from the ARM ARM, which the walker follows. Each must still
/// be seen (a QEMU that changed shows as a failure, so the list stays true).
pub struct Deviation {
    /// A short name.
    pub name: &'static str,
    /// What QEMU does, what the architecture says, and what it changes.
    pub why: &'static str,
    /// Whether a disagreement is this deviation.
    pub matches: fn(&Finding) -> bool,
}

/// QEMU 7.2's known departures from the architecture in the matrix.
pub const QEMU_DEVIATIONS: [Deviation; 1] = [Deviation {
    name: "the domain of a page table is checked before its second-level descriptor is read",
    why: "QEMU's short-descriptor walk (get_phys_addr_v6) checks the domain of a page-table \
          descriptor before it reads the second-level descriptor, so a fault entry under a \
          no-access domain gives a page domain fault (FS 0b01011). The ARM ARM's fault-checking \
          sequence (B3.12.3, and TranslationTableWalkSD) reads the second-level descriptor \
          first: a page translation fault (FS 0b00111). The access faults either way; only \
          the fault status differs, which the vmm does not use.",
    matches: |f| {
        f.combination.kind == Kind::L2Fault
            && f.combination.mode == 0b00
            && f.walker == Seen::Ats(Answer::Fault(0b00111))
            && f.qemu == Seen::Ats(Answer::Fault(0b01011))
    },
}];

/// The deviation a disagreement is, if it is a known one.
#[must_use]
pub fn known(finding: &Finding) -> Option<&'static Deviation> {
    QEMU_DEVIATIONS.iter().find(|d| (d.matches)(finding))
}

/// Compares QEMU's results with the walker, combination by combination. A result missing or
/// out of its place is an error (the guest's report cannot be trusted from there on).
pub fn compare(
    combinations: &[Combination],
    results: &[MatrixResult],
) -> Result<Vec<Finding>, String> {
    if results.len() != combinations.len() {
        return Err(format!(
            "{} results for {} combinations",
            results.len(),
            combinations.len()
        ));
    }
    let mut findings = Vec::new();
    for (i, (c, r)) in combinations.iter().zip(results).enumerate() {
        if r.case as usize != i {
            return Err(format!(
                "the result of case {} where case {i} was due",
                r.case
            ));
        }
        let want = expected(&c.case());
        let got = observed(r);
        for (access, (w, g)) in want.iter().zip(&got).enumerate() {
            if w != g {
                findings.push(Finding {
                    combination: *c,
                    access,
                    walker: *w,
                    qemu: *g,
                });
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_every_defined_combination() {
        let (all, skipped) = combinations();
        // 6 kinds x 8 AP x 8 (XN, PXN, nG) x 4 modes, less AP=100 and mode 0b10.
        assert_eq!(all.len() + skipped, 6 * 8 * 8 * 4);
        assert_eq!(all.len(), 6 * 7 * 8 * 3);
        assert!(all.iter().all(|c| c.ap != 0b100 && c.mode != 0b10));
    }

    #[test]
    fn cases_decode_as_their_combination() {
        // A client small page AP=010 (PL0 read-only), XN: the walker sees what was meant.
        let c = Combination {
            kind: Kind::SmallPage,
            ap: 0b010,
            xn: true,
            pxn: false,
            ng: true,
            mode: 0b01,
        };
        let [r0, w0, r1, w1, x0, x1] = expected(&c.case());
        assert_eq!(r0, Seen::Ats(Answer::Page(SMALL_PA)));
        assert_eq!(w0, Seen::Ats(Answer::Fault(0b01111)));
        assert_eq!((r1, w1), (r0, r0));
        assert_eq!(
            (x0, x1),
            (Seen::Fetch(Some(false)), Seen::Fetch(Some(false)))
        );
        // A supersection in a manager domain: everything allowed, PAR.SS with PA[31:24].
        let s = Combination {
            kind: Kind::Supersection,
            ap: 0b000,
            xn: true,
            pxn: true,
            ng: false,
            mode: 0b11,
        };
        assert_eq!(
            expected(&s.case())[1],
            Seen::Ats(Answer::Supersection(SUPERSECTION_PA))
        );
        assert_eq!(s.case().writes.len(), 16);
        // A page table in a no-access domain over a fault entry: the translation fault of
        // the second level comes first.
        let f = Combination {
            kind: Kind::L2Fault,
            mode: 0b00,
            ..c
        };
        assert_eq!(expected(&f.case())[0], Seen::Ats(Answer::Fault(0b00111)));
    }

    #[test]
    fn a_result_that_differs_is_a_finding_naming_the_words() {
        let (all, _) = combinations();
        let results: Vec<MatrixResult> = all
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let want = expected(&c.case());
                let par = |s: Seen| match s {
                    Seen::Ats(Answer::Page(pa)) => pa,
                    Seen::Ats(Answer::Supersection(pa)) => pa | 0b10,
                    Seen::Ats(Answer::Fault(fs)) => (fs << 1) | 1,
                    Seen::Fetch(_) => unreachable!(),
                };
                let mut fetches = Probe::default();
                for (k, index) in [(4, EXEC_PL0), (5, EXEC_PL1)] {
                    if let Seen::Fetch(Some(ran)) = want[k] {
                        fetches.set_access(index, ran);
                    }
                }
                MatrixResult {
                    case: i as u32,
                    ats: [par(want[0]), par(want[1]), par(want[2]), par(want[3])],
                    fetches: fetches.accesses,
                }
            })
            .collect();
        assert_eq!(compare(&all, &results), Ok(Vec::new()));
        let mut wrong = results.clone();
        wrong[5].ats[2] ^= 1;
        let findings = compare(&all, &wrong).unwrap();
        assert_eq!(findings.len(), 1);
        assert!(findings[0].to_string().contains("L1 0x"), "{}", findings[0]);
        assert!(compare(&all, &results[1..]).is_err());
        assert!(known(&findings[0]).is_none());
    }

    #[test]
    fn the_known_deviation_is_only_the_one_described() {
        let c = Combination {
            kind: Kind::L2Fault,
            ap: 0b011,
            xn: false,
            pxn: false,
            ng: true,
            mode: 0b00,
        };
        let finding = |walker, qemu| Finding {
            combination: c,
            access: 0,
            walker: Seen::Ats(Answer::Fault(walker)),
            qemu: Seen::Ats(Answer::Fault(qemu)),
        };
        assert!(known(&finding(0b00111, 0b01011)).is_some());
        assert!(known(&finding(0b00111, 0b01111)).is_none());
        let client = Finding {
            combination: Combination { mode: 0b01, ..c },
            ..finding(0b00111, 0b01011)
        };
        assert!(known(&client).is_none());
    }
}
