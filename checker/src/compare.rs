//! The comparison after every step: both sides reduced to the observable state
//! ([`crate::observed`]), the vmm's pages read from its raw tables by the reference walker
//! (or the fast mode's shadow, kept by the same walker), frames named through the pairing,
//! and the maintenance each page change needed (INV-10 (d) to (f)).

use reference_model::armv7::{PageAttributes, Registers};
use reference_model::model;
use vmm::addr::PhysAddr;
use vmm::space::{RegionKind, SpaceId};

use crate::in_order::InOrder;
use crate::observed::{Backing, Observed, Page, SpaceState, UNPAIRED, agree};
use crate::pair::{Pair, kernel_registers, space_registers};
use crate::protocol::{Maintenance, SpaceTables, check_asids};
use crate::report::{Divergence, DivergenceKind};
use crate::shadow::sweep_space;
use op_lang::Sequence;

/// What the state comparison reports when the fast mode's shadow lacks a live space.
const NOT_SHADOWED: &str = "a live space has no table in the fast mode's shadow";

/// Memory contents: a frame the comparison pairs for the first time holds what the model's frame holds,
/// word for word (read from RAM, not through the vmm): a fresh frame is zeroed, a copy is the
/// whole copy. Later changes go through accesses, which the comparison sees on their own.
fn first_content(
    host: &vmm::machine::HostMachine,
    model: &model::Model,
    pa: u32,
    id: u64,
) -> Result<(), String> {
    let frame = vmm::addr::PhysFrame::containing(PhysAddr::new(pa));
    let Some(bytes) = host.peek_frame(frame) else {
        return Ok(());
    };
    let words = model.frames.get(&id).map(|f| &f.words);
    let want = |offset: u32| words.and_then(|w| w.get(&offset)).copied().unwrap_or(0);
    // The word at `offset` in RAM (a frame never written reads as zero).
    let got = |offset: u32| {
        bytes.map_or(0, |b| {
            let i = offset as usize;
            u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
        })
    };
    let wrong = match bytes {
        // Never written: all zero.
        None => words.and_then(|w| w.iter().find(|&(_, &v)| v != 0).map(|(&o, _)| o)),
        Some(_) => (0..4096u32).step_by(4).find(|&o| got(o) != want(o)),
    };
    match wrong {
        None => Ok(()),
        Some(o) => {
            let got = got(o);
            Err(format!(
                "memory contents: frame {id} (physical {:#010x}), first mapped now: word {o:#05x} is {got:#x} in RAM, {:#x} in the model\n",
                pa & !0xFFF,
                want(o)
            ))
        }
    }
}

impl Pair {
    /// Reads every live space's bookkeeping from the vmm in one walk of its spaces, unless
    /// done since its last op: the L1 table (the shadow's roster), the ASID and registers
    /// (the TLB check), and for the spaces both sides have, the regions, break and table-page
    /// count (the vmm's side of the state comparison). The TLB check, the shadow and the
    /// comparison start here, so a step walks the vmm's spaces once for them (the page lists,
    /// segments and frames are read where they are compared). Only `apply` runs the vmm during
    /// a run, and it marks what was read as stale.
    pub(crate) fn read_vmm_spaces(&mut self) {
        if self.vmm_spaces_read {
            return;
        }
        self.vmm_spaces_read = true;
        let kind = |k: RegionKind| match k {
            RegionKind::Anon => Backing::Anon,
            RegionKind::Heap => Backing::Heap,
            RegionKind::Shm { .. } => Backing::Shm,
            RegionKind::Device { .. } => Backing::Device,
        };
        let kernel = kernel_registers(&self.vm);
        let out = &mut self.seen.get_or_insert_with(Box::default).1;
        out.spaces
            .resize_with(self.vmm_ids.len(), SpaceState::default);
        let compared = self.model_ids.len().min(self.vmm_ids.len());
        self.roster.clear();
        self.live_asids.clear();
        let mut spaces = InOrder::new(self.vm.spaces(), |v| self.vm.space(v));
        for (i, &v) in self.vmm_ids.iter().enumerate() {
            let Some(sp) = spaces.get(v) else {
                self.roster.push((v, None));
                continue;
            };
            self.roster.push((v, Some(sp.mmu().l1_table().as_u32())));
            let (regs, asid) = space_registers(sp, kernel);
            self.live_asids.push((asid, regs));
            if let Some(space) = out.spaces[..compared].get_mut(i) {
                space.regions.clear();
                space.regions.extend(sp.regions().iter().map(|r| {
                    (
                        u64::from(r.range.start_addr().as_u32()),
                        u64::from(r.range.count()) * 4096,
                        r.prot.bits(),
                        r.shared,
                        kind(r.kind),
                    )
                }));
                (space.brk, space.table_pages, space.asid) =
                    (sp.brk(), sp.mmu().table_pages(), sp.asid().value());
            }
        }
    }

    /// The whole observable state of both sides, compared.
    pub(crate) fn compare_state(
        &mut self,
        at: usize,
        sequence: &Sequence,
    ) -> Result<(), Box<Divergence>> {
        let diverge = |kind, model, vmm| Divergence::boxed(kind, sequence, at, model, vmm);
        self.read_vmm_spaces();
        let mut seen = self.seen.take().unwrap_or_default();
        let (model_state, vmm_state) = &mut *seen;
        self.pages_rebuilt.clear();
        self.pages_rebuilt
            .resize(self.model_ids.len().max(self.vmm_ids.len()), false);
        self.model_state(model_state);
        let filled = self.vmm_state(vmm_state);
        let result = match filled {
            Err((kind, why)) => Err(diverge(kind, String::new(), why)),
            Ok(()) if !agree(model_state, vmm_state, &self.pages_rebuilt) => Err(diverge(
                DivergenceKind::State,
                format!("{model_state:#?}\n"),
                format!("{vmm_state:#?}\n"),
            )),
            Ok(()) => Ok(()),
        };
        self.seen = Some(seen);
        result
    }

    /// The model's observable state, into `out` (its buffers reused; in fast mode a space's
    /// whole entry, regions, break, table pages and pages, is left as it is while the space's
    /// stamp is unchanged).
    pub(crate) fn model_state(&mut self, out: &mut Observed) {
        let kind = |k: model::Kind| match k {
            model::Kind::Anon => Backing::Anon,
            model::Kind::Heap => Backing::Heap,
            model::Kind::Shm { .. } => Backing::Shm,
            model::Kind::Device { .. } => Backing::Device,
        };
        out.free_frames = self.model.free;
        out.ref_counts.clear();
        out.ref_counts.extend(
            self.model
                .frames
                .iter()
                .filter(|(_, f)| f.refs > 0)
                .map(|(&id, f)| (id, f.refs)),
        );
        out.spaces
            .resize_with(self.model_ids.len(), SpaceState::default);
        self.model_keys.truncate(self.model_ids.len());
        let spaces = &self.model.spaces;
        let mut lookups = InOrder::new(spaces.iter().map(|(&m, s)| (m, s)), |m| spaces.get(&m));
        for (i, (space, &m)) in out.spaces.iter_mut().zip(&self.model_ids).enumerate() {
            let s = lookups
                .get(m)
                .expect("every live model id is a model space");
            // The space's stamp covers its regions, break, pages and sections (the table
            // page count is a function of those).
            let key = self.shadow.is_some().then_some((m, s.stamp()));
            if key.is_some() && self.model_keys.get(i) == Some(&key) {
                continue;
            }
            self.model_keys
                .resize(self.model_keys.len().max(i + 1), None);
            self.model_keys[i] = key;
            space.regions.clear();
            space.regions.extend(
                s.regions
                    .iter()
                    .map(|r| (r.start, r.len, r.prot, r.shared, kind(r.kind))),
            );
            space.brk = s.brk;
            space.asid = s.asid;
            space.table_pages = self.model.table_pages(m).unwrap_or(0);
            self.pages_rebuilt[i] = true;
            space.pages.clear();
            space.pages.extend(s.ptes.iter().map(|(&a, e)| Page {
                addr: a as u32,
                frame: e.frame,
                attributes: e.attributes(),
            }));
        }
        out.segments.clear();
        out.segments
            .extend(self.model.segments.iter().enumerate().filter_map(|(i, s)| {
                s.as_ref().map(|s| {
                    (
                        i as u32,
                        s.key,
                        s.size,
                        s.frames.len(),
                        s.attached,
                        s.removed,
                    )
                })
            }));
        let vmalloc = self
            .model
            .vmalloc
            .iter()
            .map(|(&a, f)| (a as u32, f.len() as u32));
        if !(self.kernel_pages_known && vmalloc.clone().eq(out.vmalloc.iter().copied())) {
            out.vmalloc.clear();
            out.vmalloc.extend(vmalloc);
            out.kernel_table_pages = self.model.kernel_table_pages();
            self.kernel_pages_known = true;
        }
    }

    /// The vmm's state with physical frames named by model frame ids (learning new pairs from
    /// the model's page at the same address); an inconsistent pairing is an error. Every page
    /// is read from the raw table words by the reference walker (the fast mode's shadow is
    /// kept by the same walker), under the space's own registers.
    pub(crate) fn vmm_state(&mut self, out: &mut Observed) -> Result<(), (DivergenceKind, String)> {
        let state = |why: &str| (DivergenceKind::State, why.to_string());
        // The regions, breaks and table-page counts are in `out` already (read_vmm_spaces),
        // for the spaces both sides have; each of those must be one the vmm knows.
        let compared = self.model_ids.len().min(self.vmm_ids.len());
        if self.roster[..compared].iter().any(|&(_, l1)| l1.is_none()) {
            return Err(state("a live space is missing"));
        }
        let kernel = kernel_registers(&self.vm);
        let (pool_base, pool_size) = (self.model.layout.pool_base, self.model.layout.pool_size);
        let mut mapped = std::mem::take(&mut self.mapped);
        let mut maintenance: Option<Maintenance> = None;
        self.vmm_keys.truncate(self.vmm_ids.len());
        // Each space's pages, rebuilt when its translations may have changed.
        for (i, (&m, &v)) in self.model_ids.iter().zip(&self.vmm_ids).enumerate() {
            let key = match &self.shadow {
                Some(shadow) => Some((v, shadow.stamp(i, v).ok_or_else(|| state(NOT_SHADOWED))?)),
                None => None,
            };
            if key.is_some() && self.vmm_keys.get(i) == Some(&key) {
                continue;
            }
            self.vmm_keys.resize(self.vmm_keys.len().max(i + 1), None);
            self.vmm_keys[i] = key;
            self.pages_rebuilt[i] = true;
            let l1 = self.roster[i].1.unwrap_or(0);
            mapped.clear();
            match &self.shadow {
                Some(shadow) => {
                    mapped.extend(shadow.pages(i, v).ok_or_else(|| state(NOT_SHADOWED))?)
                }
                None => sweep_space(&self.vm.machine().host, l1, &mut mapped),
            }
            let regs = Registers {
                ttbr0: l1,
                ..kernel
            };
            // INV-10 (d), (e): what changed since the last comparison was invalidated, with
            // the ASID the model gave the space (the comparison checks the vmm's agrees).
            let asid = self.model.spaces[&m].asid;
            match self.tables_before.get_mut(&v) {
                Some(before) => {
                    if self.protocol_error.is_none() {
                        let log = self.vm.machine().host.log();
                        let index = maintenance.get_or_insert_with(|| Maintenance::new(log));
                        self.protocol_error = index.check_space(before, Some(&mapped)).err();
                    }
                    (before.asid, before.regs) = (asid, regs);
                }
                None => {
                    if self.released_asids[usize::from(asid)] {
                        self.handed_out.push(asid);
                    }
                    self.tables_before.insert(
                        v,
                        SpaceTables {
                            asid,
                            regs,
                            pages: Vec::new(),
                        },
                    );
                }
            }
            let space = &mut out.spaces[i];
            space.pages.clear();
            for &(number, t) in &mapped {
                let addr = number << 12;
                let pa = t.pa;
                let frame = if pa.wrapping_sub(pool_base) >= pool_size {
                    // Memory outside the pool (device memory) is compared by its exact address.
                    model::DEVICE_FRAME | u64::from(pa)
                } else if self.table_frames.binary_search(&(pa & !0xFFF)).is_ok() {
                    return Err((
                        DivergenceKind::Tables,
                        format!(
                            "INV-7: {addr:#010x} maps the page-table page {:#010x} as data\n",
                            pa & !0xFFF
                        ),
                    ));
                } else {
                    match self.frames.model_of(pa) {
                        Some(id) => id,
                        None => {
                            // Learn the pair from the model's page at this address, if it is new.
                            // A pool frame where the model maps device memory (or nothing) pairs
                            // with nothing: it stays unnamed and the lists differ.
                            let id = self.model.spaces[&m]
                                .ptes
                                .get(&u64::from(addr))
                                .map_or(UNPAIRED, |e| e.frame);
                            if id == UNPAIRED || model::is_device(id) {
                                UNPAIRED
                            } else {
                                let id = self
                                    .frames
                                    .learn(pa, id)
                                    .map_err(|why| (DivergenceKind::FrameBijection, why))?;
                                first_content(&self.vm.machine().host, &self.model, pa, id)
                                    .map_err(|why| (DivergenceKind::State, why))?;
                                id
                            }
                        }
                    }
                };
                space.pages.push(Page {
                    addr,
                    frame,
                    attributes: PageAttributes::of(regs, &t),
                });
            }
            // The pages just read are the next step's "before" (the old list's buffer is
            // reused for the next space).
            if let Some(before) = self.tables_before.get_mut(&v) {
                std::mem::swap(&mut before.pages, &mut mapped);
            }
        }
        self.mapped = mapped;
        out.free_frames = self.vm.frames().free_count();
        // INV-3: the counts of the paired frames (a frame with references is mapped, so it
        // is paired once its pages were compared).
        out.ref_counts.clear();
        let pool = self.vm.frames();
        out.ref_counts
            .extend(self.frames.pairs().filter_map(|(id, pa)| {
                let count = pool.ref_count(vmm::addr::PhysFrame::containing(PhysAddr::new(pa)));
                count.ok().filter(|&c| c > 0).map(|c| (id, c))
            }));
        out.segments.clear();
        out.segments.extend(
            self.vm
                .shm()
                .iter()
                .map(|(id, s)| (id.0, s.key, s.size, s.frames.len(), s.attached, s.removed)),
        );
        out.kernel_table_pages = self.vm.kernel().table_pages();
        out.vmalloc.clear();
        out.vmalloc
            .extend(self.vm.vmalloc_allocations().map(|(a, n)| (a.as_u32(), n)));
        Ok(())
    }

    /// INV-10 after a step's comparison: what the comparison found (rules (d) and (e) for the
    /// spaces still live), the same for the spaces that exited in the step, and the ASID
    /// lifecycle (rule (f)); `current_before` is the ASID current when the step began.
    pub(crate) fn check_maintenance(
        &mut self,
        current_before: &[Option<u8>],
    ) -> Result<(), String> {
        let handed_out = std::mem::take(&mut self.handed_out);
        if let Some(why) = self.protocol_error.take() {
            return Err(why);
        }
        let roster = &self.roster;
        let is_gone = |id: &SpaceId| !roster.iter().any(|&(r, l1)| r == *id && l1.is_some());
        let log = self.vm.machine().host.log();
        let mut exited = Vec::new();
        // Most steps end no space: no list is made then.
        if self.tables_before.keys().any(is_gone) {
            let gone: Vec<SpaceId> = self
                .tables_before
                .keys()
                .filter(|id| is_gone(id))
                .copied()
                .collect();
            let index = Maintenance::new(log);
            for id in gone {
                if let Some(before) = self.tables_before.remove(&id) {
                    index.check_space(&before, None)?;
                    exited.push(before.asid);
                }
            }
        }
        check_asids(log, &exited, &handed_out, current_before)?;
        for asid in exited {
            self.released_asids[usize::from(asid)] = true;
        }
        Ok(())
    }

    /// Frames the model freed may come back from the vmm as new ones: after a step in which
    /// a model frame died, the pairs of dead frames are dropped. (Not before the step's
    /// comparison: a physical frame still mapped after its model frame died in the step must
    /// keep that name, so that the comparison sees it.)
    pub(crate) fn forget_freed_frames(&mut self) {
        let deaths = self.model.frames_died();
        if deaths != self.frame_deaths {
            self.frame_deaths = deaths;
            let live = &self.model.frames;
            self.frames.forget_dead(|id| live.contains_key(&id));
        }
    }
}
