//! Planning a sequence with the reference model alone: every op resolved to a concrete op, the
//! pages to probe around it, and what the model expects afterwards (the return value, the free
//! frames, and for every probed page what the page tables must show).

use std::fmt;

use checker::concrete::{apply_model, resolve};
use checker::{Config, Sequence, Step};
use op_driver::guest::{GuestSequence, ProbeGroup, ProbedStep, fetchable_address, fetchable_frame};
use op_driver::{AccessOp, ConcreteOp, Outcome};
use reference_model::model::{self, Model};

/// Most pages probed around one op when probing a sample, and most pages primed before one.
pub const MAX_PROBES: usize = 128;

/// Which pages are probed after each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probing {
    /// In the step's own space, its present pages before and after the step, the op's own
    /// range and every vmalloc page: the [`MAX_PROBES`] lowest of them (the CI suite).
    Sample,
    /// Every one of those pages, and every present page of every other live space (nightly).
    Everything,
}

/// A page probed after a step, and what the model expects of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedPage {
    /// The live space (after the step) it is probed in when that is not the step's own.
    pub other_space: Option<u32>,
    /// The CPU (core) that primed and probed it.
    pub cpu: u32,
    /// The page.
    pub va: u32,
    /// What the tables must show.
    pub view: PageView,
}

impl fmt::Display for ExpectedPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cpu != 0 {
            write!(f, "cpu={} ", self.cpu)?;
        }
        if let Some(s) = self.other_space {
            write!(f, "s={s} ")?;
        }
        write!(f, "{:#010x}  {}", self.va, self.view)
    }
}
/// Pages of an op's own range that are probed even when nothing is mapped there.
const RANGE_PAGES: u32 = 16;

/// A frame as the comparison names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameName {
    /// A pool frame, by model frame id.
    Model(u64),
    /// Device memory, by physical address.
    Device(u32),
    /// A pool frame the model has no frame for at this page.
    Unpaired(u32),
}

/// What the page tables show for one page, at PL0 and PL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageView {
    /// No translation (a translation fault at every level).
    Unmapped,
    /// Present but no access at either level (PROT_NONE).
    NoAccess,
    /// Mapped: (read, write) at PL0 and at PL1 (ATS), whether an instruction fetch runs at
    /// PL0 and at PL1 (`None`: not fetched, the frame is one the guest may not write), and the
    /// frame.
    Mapped {
        pl0: (bool, bool),
        pl1: (bool, bool),
        exec: (Option<bool>, Option<bool>),
        frame: FrameName,
    },
    /// Something else (the guest's ATS results disagree among themselves).
    Odd([u32; 4]),
}

impl fmt::Display for PageView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rwx = |(r, w): (bool, bool), x: Option<bool>| {
            let bit = |on, c| if on { c } else { '-' };
            let x = x.map_or('?', |x| bit(x, 'x'));
            [bit(r, 'r'), bit(w, 'w'), x].iter().collect::<String>()
        };
        match self {
            Self::Unmapped => write!(f, "no translation"),
            Self::NoAccess => write!(f, "present, no access"),
            Self::Mapped {
                pl0,
                pl1,
                exec,
                frame,
            } => {
                write!(f, "pl0 {}  pl1 {}  ", rwx(*pl0, exec.0), rwx(*pl1, exec.1))?;
                match frame {
                    FrameName::Model(id) => write!(f, "frame {id}"),
                    FrameName::Device(pa) => write!(f, "device {pa:#010x}"),
                    FrameName::Unpaired(pa) => write!(f, "unpaired frame {pa:#010x}"),
                }
            }
            Self::Odd(par) => write!(
                f,
                "PARs {:#x} {:#x} {:#x} {:#x}",
                par[0], par[1], par[2], par[3]
            ),
        }
    }
}

/// What the model expects after one step.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The return value.
    pub outcome: Outcome,
    /// Free frames.
    pub free: u32,
    /// Every probed page, in the order the guest probes them.
    pub pages: Vec<ExpectedPage>,
    /// Model frames alive after the step (pairings of the others are forgotten).
    pub live_frames: Vec<u64>,
    /// Pages of the step's own space left out of a [`Probing::Sample`] (the SUMMARY says so).
    pub unprobed: usize,
}

impl Expected {
    /// The value returned, if the op succeeded.
    #[must_use]
    pub fn outcome_value(&self) -> Option<u32> {
        match self.outcome {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }
}

/// A planned sequence.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The world the steps run in.
    pub config: Config,
    /// The steps as written (instruction fetches the guest cannot run removed).
    pub steps: Vec<Step>,
    /// What the guest runs.
    pub probed: Vec<ProbedStep>,
    /// What the model expects after each step.
    pub expected: Vec<Expected>,
    /// Free frames when the world has booted.
    pub start_free: u32,
    /// Instruction fetches removed (see [`ModelSide::runs_in_guest`]).
    pub fetches_removed: usize,
}

fn op_pages(op: &ConcreteOp) -> Vec<u32> {
    let range = |addr: u32, len: u32| {
        let first = addr & !0xFFF;
        let pages = len.div_ceil(0x1000).clamp(1, RANGE_PAGES);
        (0..pages)
            .filter_map(move |i| first.checked_add(i * 0x1000))
            .filter(|&a| a < 0x4000_0000)
    };
    use ConcreteOp as C;
    match *op {
        C::Mmap { addr, len, .. }
        | C::Munmap { addr, len, .. }
        | C::Mprotect { addr, len, .. }
        | C::MapDevice { addr, len, .. } => range(addr, len).collect(),
        C::Mremap {
            addr,
            old_len,
            new_len,
            new_addr,
            ..
        } => range(addr, old_len)
            .chain(range(new_addr, new_len))
            .collect(),
        C::Brk { addr, .. }
        | C::ShmDt { addr, .. }
        | C::ShmAt { addr, .. }
        | C::Access { addr, .. } => range(addr, 1).collect(),
        _ => Vec::new(),
    }
}

/// The model and its live spaces, stepping through a sequence.
struct ModelSide {
    model: Model,
    ids: Vec<u32>,
    /// The space current on CPU 1 (model id), as the vmm keeps it: the space of CPU 1's last
    /// access, until that space exits.
    cpu1_space: Option<u32>,
}

impl ModelSide {
    fn view(&self, space: Option<usize>, va: u32) -> PageView {
        if va >= 0x4000_0000 {
            let page = u64::from(va);
            return self
                .model
                .vmalloc
                .range(..=page)
                .next_back()
                .filter(|(start, f)| page < *start + f.len() as u64 * 0x1000)
                .map_or(PageView::Unmapped, |(start, f)| PageView::Mapped {
                    pl0: (false, false),
                    pl1: (true, true),
                    // Kernel pages are never executable (semantics.md section 13).
                    exec: (Some(false), Some(false)),
                    frame: FrameName::Model(f[((page - start) / 0x1000) as usize]),
                });
        }
        let pte = space
            .and_then(|i| self.ids.get(i))
            .and_then(|m| self.model.spaces[m].ptes.get(&u64::from(va)));
        match pte {
            None => PageView::Unmapped,
            Some(p) if p.perms & 3 == 0 => PageView::NoAccess,
            Some(p) => {
                let rw = (p.perms & 1 != 0, p.perms & 2 != 0);
                let frame = if model::is_device(p.frame) {
                    FrameName::Device((p.frame & 0xFFFF_FFFF) as u32)
                } else {
                    FrameName::Model(p.frame)
                };
                // A fetch needs read permission and no XN, at either level (no PXN).
                let x = (frame_fetchable(frame)).then_some(p.perms & 5 == 5);
                PageView::Mapped {
                    pl0: rw,
                    pl1: rw,
                    exec: (x, x),
                    frame,
                }
            }
        }
    }

    /// The present pages of live space `space` (if it is one) and every vmalloc page.
    fn present(&self, space: Option<usize>) -> Vec<u32> {
        let mut pages: Vec<u32> = space
            .and_then(|i| self.ids.get(i))
            .map(|m| {
                self.model.spaces[m]
                    .ptes
                    .keys()
                    .map(|&a| a as u32)
                    .collect()
            })
            .unwrap_or_default();
        for (&start, frames) in &self.model.vmalloc {
            pages.extend((0..frames.len() as u32).map(|i| start as u32 + i * 0x1000));
        }
        pages
    }

    /// Whether the guest runs `op` (after [`resolve`]): every op but an instruction fetch it
    /// cannot place (see `op_driver::guest::fetchable_frame`): one in the kernel's linear map
    /// or on a device page outside RAM.
    fn runs_in_guest(&self, op: &ConcreteOp) -> bool {
        let ConcreteOp::Access {
            s,
            addr,
            access: AccessOp::Exec,
            ..
        } = *op
        else {
            return true;
        };
        if !fetchable_address(addr) {
            return false;
        }
        let pte = self
            .ids
            .get(s as usize)
            .and_then(|m| self.model.spaces[m].ptes.get(&u64::from(addr & !0xFFF)));
        pte.is_none_or(|p| {
            !model::is_device(p.frame) || fetchable_frame((p.frame & 0xFFFF_FFFF) as u32)
        })
    }
}

/// Whether the guest fetches from the frame (see `op_driver::guest::fetchable_frame`).
fn frame_fetchable(frame: FrameName) -> bool {
    match frame {
        FrameName::Device(pa) => fetchable_frame(pa),
        FrameName::Model(_) | FrameName::Unpaired(_) => true,
    }
}

/// Plans `sequence` probing a sample (see [`plan_with`]).
#[must_use]
pub fn plan(sequence: &Sequence) -> Plan {
    plan_with(sequence, Probing::Sample)
}

/// Plans `sequence` with `probing` (instruction fetches the guest cannot run are removed, see
/// [`ModelSide::runs_in_guest`]).
#[must_use]
pub fn plan_with(sequence: &Sequence, probing: Probing) -> Plan {
    let mut steps = Vec::new();
    let mut fetches_removed = 0;
    let config = sequence.config;
    // The model's start state comes from its own accounting of the booted world.
    let model = checker::pair::new_model(config);
    let start_free = model.free;
    let mut side = ModelSide {
        model,
        ids: Vec::new(),
        cpu1_space: None,
    };
    let (mut probed, mut expected) = (Vec::new(), Vec::new());
    for step in &sequence.steps {
        let op = resolve(&side.model, &side.ids, &step.op);
        if !side.runs_in_guest(&op) {
            fetches_removed += 1;
            continue;
        }
        steps.push(step.clone());
        let space = match op {
            ConcreteOp::Exit { .. } => None,
            _ => op
                .space()
                .map(|s| s as usize)
                .or((!side.ids.is_empty()).then_some(0)),
        };
        let own = space.is_some_and(|i| i < side.ids.len());
        let own_id = space.and_then(|i| side.ids.get(i).copied());
        // Core 1 primes and probes the step's own space too while that space is current there
        // and stays so through the step (an exit leaves it on every CPU).
        let on_cpu1 = config.cpus > 1
            && own_id.is_some()
            && side.cpu1_space == own_id
            && !matches!(op, ConcreteOp::Exit { .. });
        let range: Vec<u32> = if own { op_pages(&op) } else { Vec::new() };
        let mut pages = side.present(space);
        pages.extend(&range);
        side.model.refuse_allocation = step.refuse.map(u64::from);
        let outcome = apply_model(&mut side.model, &mut side.ids, &op);
        side.model.refuse_allocation = None;
        // An access runs in the step's own space (`own_id`, read before the step).
        if let ConcreteOp::Access { cpu: 1, .. } = op {
            side.cpu1_space = own_id;
        }
        if side.cpu1_space.is_some_and(|id| !side.ids.contains(&id)) {
            side.cpu1_space = None;
        }
        pages.extend(side.present(space));
        pages.sort_unstable();
        pages.dedup();
        let unprobed = match probing {
            Probing::Sample => pages.len().saturating_sub(MAX_PROBES),
            Probing::Everything => 0,
        };
        pages.truncate(pages.len() - unprobed);
        // The op's own pages are primed first: those are the TLB entries it must invalidate.
        let mut primed: Vec<u32> = range
            .iter()
            .copied()
            .filter(|va| pages.binary_search(va).is_ok())
            .collect();
        primed.sort_unstable();
        primed.dedup();
        primed.extend(pages.iter().filter(|va| !range.contains(va)));
        primed.truncate(MAX_PROBES);
        let mut view: Vec<ExpectedPage> = pages
            .iter()
            .map(|&va| ExpectedPage {
                other_space: None,
                cpu: 0,
                va,
                view: side.view(space, va),
            })
            .collect();
        let mut groups = vec![ProbeGroup {
            space: space.map(|s| s as u32),
            cpu: 0,
            primed: primed.clone(),
            ranges: ProbeGroup::ranges_of(&pages),
        }];
        if on_cpu1 {
            // The same pages through core 1's TLB: what the tables show is the same, so a
            // stale entry there (an invalidate that did not reach it) is the difference.
            let own_view: Vec<ExpectedPage> =
                view.iter().map(|e| ExpectedPage { cpu: 1, ..*e }).collect();
            view.extend(own_view);
            groups.push(ProbeGroup {
                space: space.map(|s| s as u32),
                cpu: 1,
                primed,
                ranges: ProbeGroup::ranges_of(&pages),
            });
        }
        if probing == Probing::Everything {
            for other in (0..side.ids.len()).filter(|&i| Some(i) != space) {
                let mut pages = side.present(Some(other));
                // Kernel pages were probed in the step's own group.
                pages.retain(|&va| va < 0x4000_0000);
                pages.sort_unstable();
                view.extend(pages.iter().map(|&va| ExpectedPage {
                    other_space: Some(other as u32),
                    cpu: 0,
                    va,
                    view: side.view(Some(other), va),
                }));
                groups.push(ProbeGroup {
                    space: Some(other as u32),
                    cpu: 0,
                    primed: Vec::new(),
                    ranges: ProbeGroup::ranges_of(&pages),
                });
            }
        }
        expected.push(Expected {
            outcome,
            free: side.model.free,
            pages: view,
            live_frames: side.model.frames.keys().copied().collect(),
            unprobed,
        });
        probed.push(ProbedStep {
            groups,
            step: op_driver::Step {
                op,
                refuse: step.refuse.map(u16::from),
            },
        });
    }
    Plan {
        config,
        steps,
        probed,
        expected,
        start_free,
        fetches_removed,
    }
}

impl Plan {
    /// The steps planned, in their world.
    #[must_use]
    pub fn sequence(&self) -> Sequence {
        Sequence {
            config: self.config,
            steps: self.steps.clone(),
        }
    }

    /// What the guest runs for this plan: its world and probed steps.
    #[must_use]
    pub fn guest_sequence(&self) -> GuestSequence {
        GuestSequence {
            pool_frames: self.config.pool_frames,
            asids: self.config.asids,
            cpus: self.config.cpus,
            steps: self.probed.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORKED: &str = "spawn\nmapdev s=0 addr=0x3000000 page=0 len=0x200000 prot=0x3\nfork s=0\nread s=0 addr=0x3000000 mode=user\n";

    #[test]
    fn a_sample_is_the_lowest_pages_of_the_steps_own_space() {
        let p = plan(&checker::parse_sequence(FORKED).unwrap());
        let read = &p.probed[3];
        assert_eq!(read.groups.len(), 1);
        assert_eq!(read.groups[0].space, Some(0));
        assert_eq!(read.groups[0].count() as usize, MAX_PROBES);
        assert_eq!(read.groups[0].ranges, [(0x300_0000, MAX_PROBES as u32)]);
        assert_eq!(p.expected[3].unprobed, 512 - MAX_PROBES);
        // The read's own page is primed, with the lowest others up to the limit.
        assert_eq!(read.groups[0].primed.first(), Some(&0x300_0000));
        assert_eq!(read.groups[0].primed.len(), MAX_PROBES);
    }

    #[test]
    fn everything_is_every_page_of_every_live_space() {
        let p = plan_with(
            &checker::parse_sequence(FORKED).unwrap(),
            Probing::Everything,
        );
        let read = &p.probed[3];
        let spaces: Vec<Option<u32>> = read.groups.iter().map(|g| g.space).collect();
        assert_eq!(spaces, [Some(0), Some(1)]);
        assert!(read.groups.iter().all(|g| g.count() == 512));
        assert_eq!(read.groups[0].ranges, [(0x300_0000, 512)]);
        assert_eq!(p.expected[3].unprobed, 0);
        let e = &p.expected[3].pages;
        assert_eq!(e.len(), 1024);
        assert_eq!((e[0].other_space, e[512].other_space), (None, Some(1)));
        assert!(
            e[512].to_string().starts_with("s=1 0x03000000  pl0 rw-"),
            "{}",
            e[512]
        );
        // The fork's own step probes the parent's pages and, after it, the child's.
        assert_eq!(p.probed[2].groups.len(), 2);
    }

    /// Core 1 primes and probes the step's own space only while that space is current there:
    /// from CPU 1's first access in it, and not in the step that exits it; after that exit,
    /// and in a world of one CPU, never.
    #[test]
    fn core_1_probes_the_space_current_on_it() {
        let text = "pool cpus=2\nspawn\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nmunmap s=0 addr=mmap+0p len=0x1000\nread s=0 addr=mmap+0p mode=user cpu=1\nmmap s=1 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nexit s=0\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\n";
        let mut sequence = checker::parse_sequence(text).unwrap();
        let p = plan(&sequence);
        let on_core1 = |k: usize| {
            p.probed[k]
                .groups
                .iter()
                .filter(|g| g.cpu == 1)
                .map(|g| (g.space, g.ranges.clone(), g.primed.clone()))
                .collect::<Vec<_>>()
        };
        // Before CPU 1's read (step 5) nothing; then space 0's steps only, with the pages
        // and primed pages of core 0's group, until its exit (step 8) and after it.
        for k in [0, 1, 2, 3, 4, 5, 7, 8] {
            assert_eq!(on_core1(k), [], "step {}", k + 1);
        }
        let own = &p.probed[6].groups[0];
        assert_eq!(
            on_core1(6),
            [(own.space, own.ranges.clone(), own.primed.clone())]
        );
        let expected = &p.expected[6].pages;
        let (core0, core1) = expected.split_at(expected.len() / 2);
        assert!(core1.iter().all(|e| e.cpu == 1) && core0.iter().all(|e| e.cpu == 0));
        assert_eq!(
            core0.iter().map(|e| (e.va, e.view)).collect::<Vec<_>>(),
            core1.iter().map(|e| (e.va, e.view)).collect::<Vec<_>>()
        );
        assert!(core1[0].to_string().starts_with("cpu=1 "), "{}", core1[0]);
        // The same steps in a world of one CPU: no access runs on CPU 1 (it is skipped).
        sequence.config.cpus = 1;
        let one = plan(&sequence);
        assert!(
            one.probed
                .iter()
                .all(|s| s.groups.iter().all(|g| g.cpu == 0))
        );
    }
}
