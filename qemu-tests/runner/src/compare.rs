//! Comparing the guest's report of one sequence with the plan, in the host checker's order:
//! the TLB (a real access disagreeing with a fresh walk of the same tables, whatever the model
//! says), then return values, then the page tables (ATS) and free frames against the model.

use std::fmt::Write as _;

use checker::pairing::FramePairing;
use checker::{Divergence, DivergenceKind};
use op_driver::guest::{ACCESS_NAMES, EXEC_PL0, EXEC_PL1, Probe, Record};
use vmm::Layout;

use crate::plan::{ExpectedPage, FrameName, PageView, Plan};

/// The guest's report for one sequence (records between its start and end).
#[derive(Clone, Debug, Default)]
pub struct SequenceReport {
    /// Free frames at the start.
    pub start_free: u32,
    /// One record per step run.
    pub steps: Vec<Record>,
    /// Free frames after teardown, if the guest got that far.
    pub end_free: Option<u32>,
}

fn fault_status(par: u32) -> u32 {
    (par >> 1) & 0x3F
}
fn is_translation_fault(par: u32) -> bool {
    par & 1 == 1 && fault_status(par) & 0b11101 == 0b00101
}
fn is_permission_fault(par: u32) -> bool {
    par & 1 == 1 && fault_status(par) & 0b11101 == 0b01101
}

/// Names physical frames as the comparison does, learning pairs from the model's
/// expectations. A frame is a pool frame when it lies in the pool of the sequence's world (its
/// size is the sequence's, not the default's).
struct Bijection {
    pairing: FramePairing,
    layout: Layout,
}

impl Bijection {
    fn new(pool_frames: u32) -> Self {
        Self {
            pairing: FramePairing::default(),
            layout: Layout::with_pool_frames(pool_frames),
        }
    }

    fn forget_dead(&mut self, live: &[u64]) {
        self.pairing
            .forget_dead(|id| live.binary_search(&id).is_ok());
    }

    /// Names `pa` (a frame), learning from what the model expects at this page.
    fn name(&mut self, pa: u32, expected: &PageView) -> Result<FrameName, String> {
        if !self.layout.overlaps_pool(pa, 1) {
            return Ok(FrameName::Device(pa));
        }
        if let Some(id) = self.pairing.model_of(pa) {
            return Ok(FrameName::Model(id));
        }
        match *expected {
            PageView::Mapped {
                frame: FrameName::Model(id),
                ..
            } => self.pairing.learn(pa, id).map(FrameName::Model),
            _ => Ok(FrameName::Unpaired(pa)),
        }
    }

    /// What the guest's ATS results and instruction fetches say about the page.
    fn view(&mut self, p: &Probe, expected: &PageView) -> Result<PageView, String> {
        if p.ats.iter().all(|&par| is_translation_fault(par)) {
            return Ok(PageView::Unmapped);
        }
        if p.ats.iter().all(|&par| is_permission_fault(par)) {
            return Ok(PageView::NoAccess);
        }
        let ok: Vec<bool> = p.ats.iter().map(|par| par & 1 == 0).collect();
        let pas: Vec<u32> = p
            .ats
            .iter()
            .filter(|par| *par & 1 == 0)
            .map(|par| par & !0xFFF)
            .collect();
        let consistent = p
            .ats
            .iter()
            .all(|&par| par & 1 == 0 || is_permission_fault(par))
            && pas.windows(2).all(|w| w[0] == w[1]);
        if !consistent {
            return Ok(PageView::Odd(p.ats));
        }
        Ok(PageView::Mapped {
            pl0: (ok[0], ok[1]),
            pl1: (ok[2], ok[3]),
            exec: (p.access(EXEC_PL0), p.access(EXEC_PL1)),
            frame: self.name(pas[0], expected)?,
        })
    }
}

/// The first access of a probe that disagrees with the tables after the step.
fn stale_access(p: &Probe) -> Option<String> {
    for k in 0..4 {
        let Some(real_ok) = p.access(4 + k) else {
            continue;
        };
        let tables_ok = p.ats[k] & 1 == 0;
        if real_ok != tables_ok {
            return Some(format!(
                "page {:#010x}: {} {} but the tables (ATS, PAR {:#x}) say it {}\n",
                p.va,
                ACCESS_NAMES[4 + k],
                if real_ok { "succeeded" } else { "faulted" },
                p.ats[k],
                if tables_ok { "is allowed" } else { "faults" },
            ));
        }
        if real_ok && k % 2 == 0 {
            let value = p.post_values[k / 2];
            if value != p.content {
                return Some(format!(
                    "page {:#010x}: {} read {value:#x}, but the frame the tables give holds {:#x}\n",
                    p.va,
                    ACCESS_NAMES[4 + k],
                    p.content
                ));
            }
        }
    }
    None
}

/// Compares one sequence's report with its plan.
pub fn compare(plan: &Plan, report: &SequenceReport) -> Result<(), Box<Divergence>> {
    let diverge = |kind, at, model: String, vmm: String| {
        Box::new(Divergence {
            kind,
            config: plan.config,
            steps: plan.steps.clone(),
            at,
            model,
            vmm,
        })
    };
    if report.start_free != plan.start_free {
        return Err(diverge(
            DivergenceKind::State,
            0,
            format!("free frames at boot: {}\n", plan.start_free),
            format!("free frames at boot: {}\n", report.start_free),
        ));
    }
    let mut frames = Bijection::new(plan.config.pool_frames);
    for (at, expected) in plan.expected.iter().enumerate() {
        let Some(Record::Step {
            outcome,
            free,
            probes,
            ..
        }) = report.steps.get(at)
        else {
            return Err(diverge(
                DivergenceKind::ReturnValue,
                at,
                "the step runs\n".into(),
                "the guest stopped before this step (see its output)\n".into(),
            ));
        };
        if let Some(why) = probes.iter().find_map(stale_access) {
            return Err(diverge(
                DivergenceKind::StaleTlb,
                at,
                "every real access agrees with a fresh walk of the tables\n".into(),
                why,
            ));
        }
        if *outcome != expected.outcome {
            return Err(diverge(
                DivergenceKind::ReturnValue,
                at,
                format!("{:?}\n", expected.outcome),
                format!("{outcome:?}\n"),
            ));
        }
        let mut model = format!("free frames: {}\n", expected.free);
        let mut guest = format!("free frames: {free}\n");
        for (want, p) in expected.pages.iter().zip(probes) {
            let view = frames
                .view(p, &want.view)
                .map_err(|why| diverge(DivergenceKind::FrameBijection, at, String::new(), why))?;
            let got = ExpectedPage {
                va: p.va,
                view,
                ..*want
            };
            let _ = writeln!(model, "{want}");
            let _ = writeln!(guest, "{got}");
        }
        if probes.len() != expected.pages.len() {
            let _ = writeln!(guest, "({} probes reported)", probes.len());
            let _ = writeln!(model, "({} probes reported)", expected.pages.len());
        }
        if model != guest {
            return Err(diverge(DivergenceKind::State, at, model, guest));
        }
        frames.forget_dead(&expected.live_frames);
    }
    if report.steps.len() > plan.expected.len() {
        return Err(diverge(
            DivergenceKind::ReturnValue,
            plan.steps.len(),
            format!("{} step records\n", plan.expected.len()),
            format!(
                "{} step records (the guest ran steps no plan has)\n",
                report.steps.len()
            ),
        ));
    }
    match report.end_free {
        Some(free) if free == plan.start_free => Ok(()),
        end => Err(diverge(
            DivergenceKind::State,
            plan.steps.len(),
            format!("free frames after teardown: {}\n", plan.start_free),
            format!("free frames after teardown: {end:?}\n"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PARs: success with a PA, page translation fault, page permission fault.
    const PAR_OK: u32 = 0x4108_5000;
    const PAR_TRANSLATION: u32 = 0x0F;
    const PAR_PERMISSION: u32 = 0x1F;

    fn probe(ats: [u32; 4]) -> Probe {
        Probe {
            va: 0x1F80_0000,
            ats,
            ..Probe::default()
        }
    }

    /// A frame past the default pool is a pool frame in a world with a larger pool, not
    /// device memory (grown fuzz inputs carry such worlds).
    #[test]
    fn the_pool_is_the_worlds() {
        let pa = Layout::with_pool_frames(4096).pool_base + 1000 * 4096;
        let unmapped = PageView::Unmapped;
        assert!(matches!(
            Bijection::new(op_driver::POOL_FRAMES).name(pa, &unmapped),
            Ok(FrameName::Device(_))
        ));
        assert_eq!(
            Bijection::new(4096).name(pa, &unmapped),
            Ok(FrameName::Unpaired(pa))
        );
    }

    #[test]
    fn ats_results_read_as_page_views() {
        let mut frames = Bijection::new(op_driver::POOL_FRAMES);
        let want = PageView::Mapped {
            pl0: (true, false),
            pl1: (true, false),
            exec: (None, None),
            frame: FrameName::Model(7),
        };
        assert_eq!(
            frames.view(&probe([PAR_TRANSLATION; 4]), &want),
            Ok(PageView::Unmapped)
        );
        assert_eq!(
            frames.view(&probe([PAR_PERMISSION; 4]), &want),
            Ok(PageView::NoAccess)
        );
        let ro = probe([PAR_OK, PAR_PERMISSION, PAR_OK, PAR_PERMISSION]);
        assert_eq!(frames.view(&ro, &want), Ok(want));
        // Instruction fetches the guest ran are part of the view; one it did not run is `None`.
        let mut fetched = ro;
        fetched.set_access(EXEC_PL0, false);
        fetched.set_access(EXEC_PL1, true);
        assert_eq!(
            frames.view(&fetched, &want),
            Ok(PageView::Mapped {
                pl0: (true, false),
                pl1: (true, false),
                exec: (Some(false), Some(true)),
                frame: FrameName::Model(7),
            })
        );
        // The pairing is learned: frame 7 cannot also be another physical frame.
        let other = probe([
            PAR_OK + 0x1000,
            PAR_PERMISSION,
            PAR_OK + 0x1000,
            PAR_PERMISSION,
        ]);
        assert!(frames.view(&other, &want).is_err());
        // A translation fault for one level and a PA for another is not a page view.
        let odd = probe([PAR_OK, PAR_TRANSLATION, PAR_OK, PAR_OK]);
        assert!(matches!(frames.view(&odd, &want), Ok(PageView::Odd(_))));
    }

    #[test]
    fn a_real_access_the_tables_forbid_is_a_stale_tlb_entry() {
        // After the op the tables make the page read-only, but the real PL0 write still works.
        let mut p = probe([PAR_OK, PAR_PERMISSION, PAR_OK, PAR_PERMISSION]);
        p.set_access(4, true);
        p.set_access(5, true);
        let why = stale_access(&p).expect("stale");
        assert!(why.contains("post PL0 write succeeded"), "{why}");
        // The same page with the write refused agrees with the tables.
        let mut p = probe([PAR_OK, PAR_PERMISSION, PAR_OK, PAR_PERMISSION]);
        p.set_access(4, true);
        p.set_access(5, false);
        assert_eq!(stale_access(&p), None);
        // A read through an old translation sees another frame's word.
        let mut p = probe([PAR_OK; 4]);
        p.set_access(4, true);
        p.post_values[0] = 5;
        p.content = 6;
        assert!(stale_access(&p).is_some());
    }

    #[test]
    fn reports_that_stop_early_or_return_otherwise_diverge() {
        let steps = checker::parse_sequence(
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\n",
        )
        .unwrap();
        let plan = crate::plan::plan(&steps);
        // The write's page is probed, and the model expects it mapped read/write.
        let ExpectedPage { va, view, .. } = plan.expected[2].pages[0];
        assert_eq!(va, plan.expected[1].outcome_value().unwrap());
        assert!(matches!(
            view,
            PageView::Mapped {
                pl0: (true, true),
                ..
            }
        ));
        let mut report = SequenceReport {
            start_free: plan.start_free,
            ..SequenceReport::default()
        };
        let d = compare(&plan, &report).unwrap_err();
        assert_eq!((d.kind, d.at), (DivergenceKind::ReturnValue, 0));
        report.steps.push(Record::Step {
            step: 0,
            outcome: op_driver::Outcome::Err(12),
            free: plan.expected[0].free,
            probes: Vec::new(),
        });
        let d = compare(&plan, &report).unwrap_err();
        assert_eq!((d.kind, d.at), (DivergenceKind::ReturnValue, 0));
        assert!(d.vmm.contains("Err(12)"), "{d}");
    }
}
