//! Planning a sequence with the reference model alone: every op resolved to a concrete op, the
//! pages to probe around it, and what the model expects afterwards (the return value, the free
//! frames, and for every probed page what the page tables must show).

use std::fmt;

use checker::concrete::{apply_model, resolve};
use checker::{Config, Sequence, Step};
use op_driver::guest::{GuestSequence, ProbedStep, fetchable_address, fetchable_frame};
use op_driver::{AccessOp, ConcreteOp, Outcome};
use reference_model::model::{self, Model};

/// Most pages probed around one op.
pub const MAX_PROBES: usize = 128;
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
    /// Every probed page's view.
    pub pages: Vec<(u32, PageView)>,
    /// Model frames alive after the step (pairings of the others are forgotten).
    pub live_frames: Vec<u64>,
    /// Pages the step would probe beyond [`MAX_PROBES`] (not probed: the SUMMARY says so).
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

/// Plans `sequence` (instruction fetches the guest cannot run are removed, see
/// [`ModelSide::runs_in_guest`]).
#[must_use]
pub fn plan(sequence: &Sequence) -> Plan {
    let mut steps = Vec::new();
    let mut fetches_removed = 0;
    let config = sequence.config;
    // The model's start state comes from its own accounting of the booted world.
    let model = checker::pair::new_model(config);
    let start_free = model.free;
    let mut side = ModelSide {
        model,
        ids: Vec::new(),
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
        let mut pages: Vec<u32> = Vec::new();
        if let Some(m) = space.and_then(|i| side.ids.get(i)) {
            pages.extend(side.model.spaces[m].ptes.keys().map(|&a| a as u32));
            pages.extend(op_pages(&op));
        }
        for (&start, frames) in &side.model.vmalloc {
            pages.extend((0..frames.len() as u32).map(|i| start as u32 + i * 0x1000));
        }
        pages.sort_unstable();
        pages.dedup();
        let unprobed = pages.len().saturating_sub(MAX_PROBES);
        pages.truncate(MAX_PROBES);
        side.model.refuse_allocation = step.refuse.map(u64::from);
        let outcome = apply_model(&mut side.model, &mut side.ids, &op);
        side.model.refuse_allocation = None;
        expected.push(Expected {
            outcome,
            free: side.model.free,
            pages: pages.iter().map(|&va| (va, side.view(space, va))).collect(),
            live_frames: side.model.frames.keys().copied().collect(),
            unprobed,
        });
        probed.push(ProbedStep {
            probe_space: space.map(|s| s as u32),
            probes: pages,
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
            steps: self.probed.clone(),
        }
    }
}
