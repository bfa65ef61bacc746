//! The defect catalogue: the bugs `cargo xtask detect` times the fuzzer against. Broken
//! machines are the checker's own (`checker::Defect::NAMED`, selected at run time with
//! `VMM_FUZZ_DEFECT`); every other defect is a small patch to a scratch copy of the vmm, so the
//! production code carries no defect switches. The catalogue grows with every real finding.

use super::scratch::Patch;

/// How a defect is injected.
#[derive(Clone, Copy, Debug)]
pub enum How {
    /// A broken machine of the checker, by its `--defect` name.
    Machine(&'static str),
    /// A patch to the scratch copy.
    Patch(Patch),
}

/// One defect.
#[derive(Debug)]
pub struct Defect {
    /// A short name (`--only NAME`).
    pub name: &'static str,
    /// The layer it lives in.
    pub layer: &'static str,
    /// What is wrong, as the table says it.
    pub what: &'static str,
    /// How it is injected.
    pub how: How,
    /// Part of the `--quick` subset CI runs.
    pub quick: bool,
}

const fn machine(
    name: &'static str,
    layer: &'static str,
    what: &'static str,
    quick: bool,
) -> Defect {
    Defect {
        name,
        layer,
        what,
        how: How::Machine(name),
        quick,
    }
}

const fn patch(
    name: &'static str,
    layer: &'static str,
    what: &'static str,
    file: &'static str,
    find: &'static str,
    replace: &'static str,
    quick: bool,
) -> Defect {
    Defect {
        name,
        layer,
        what,
        how: How::Patch(Patch {
            file,
            find,
            replace,
        }),
        quick,
    }
}

/// Every defect, machines first.
pub const CATALOGUE: &[Defect] = &[
    machine(
        "drop-every-invalidate",
        "tlb",
        "the hardware loses every TLB invalidate",
        true,
    ),
    machine(
        "drop-first-invalidate",
        "tlb",
        "the hardware loses the first page invalidate",
        false,
    ),
    machine(
        "ro-user-pages-writable",
        "descriptors",
        "read-only user small pages are written read/write",
        false,
    ),
    machine(
        "user-pages-executable",
        "descriptors",
        "user small pages are written without XN",
        false,
    ),
    machine(
        "clear-not-global",
        "descriptors",
        "user small pages are written global",
        false,
    ),
    machine(
        "corrupt-frame-copy",
        "faults-cow",
        "frame copies lose their first word",
        false,
    ),
    machine(
        "skip-frame-zeroing",
        "buddy",
        "frames are handed out unzeroed",
        true,
    ),
    machine("drop-barriers", "tlb", "DSB and ISB do nothing", false),
    machine(
        "disguised-cacheable-device",
        "descriptors",
        "device pages land in RAM as Normal cacheable memory, the vmm reads back what it wrote",
        false,
    ),
    machine(
        "disguised-global-user-pages",
        "descriptors",
        "user pages land global, the vmm reads back nG = 1",
        false,
    ),
    machine(
        "skip-third-page-invalidate",
        "tlb",
        "the vmm forgets its third page invalidate",
        false,
    ),
    machine(
        "skip-asid-invalidates",
        "asids",
        "the vmm never invalidates by ASID",
        false,
    ),
    machine(
        "skip-asid-reinvalidate",
        "asids",
        "the vmm invalidates an ASID at exit but not when handing it out again",
        false,
    ),
    machine(
        "clear-after-invalidate",
        "tlb",
        "the vmm invalidates, then clears the descriptor, then barriers",
        false,
    ),
    machine(
        "invalidate-after-free",
        "tlb",
        "the vmm frees a frame before invalidating the page that mapped it",
        false,
    ),
    machine(
        "local-invalidates",
        "smp",
        "on two CPUs the vmm issues local invalidates: the other CPU's TLB is never shot down",
        false,
    ),
    machine(
        "broadcast-stays-local",
        "smp",
        "broadcast invalidates reach only the issuing CPU (the log is sound)",
        false,
    ),
    patch(
        "buddy-merge-keeps-buddy-listed",
        "buddy",
        "a merge leaves the buddy on its free list: one frame handed out twice",
        "vmm/src/phys/buddy.rs",
        "            self.unlink(order, b);\n",
        "            let _ = b;\n",
        false,
    ),
    patch(
        "section-ap2-at-small-page-bit",
        "descriptors",
        "section descriptors put AP[2] at bit 9, the small-page position: read-only sections come out writable",
        "vmm/src/arch/armv7/descriptor.rs",
        "                    | set(attrs.ap.ap2(), 15)\n",
        "                    | set(attrs.ap.ap2(), 9)\n",
        false,
    ),
    patch(
        "prot-none-pages-global",
        "descriptors",
        "PROT_NONE user pages are encoded global (nG = 0), as LiteOS-A does",
        "vmm/src/arch/armv7/attributes.rs",
        "            ng: user,\n",
        "            ng: user && f.contains(MappingFlags::READ),\n",
        false,
    ),
    patch(
        "section-split-maps-first-frame",
        "arch-mmu",
        "splitting a section maps all 256 small pages to its first frame",
        "vmm/src/arch/armv7/mmu/commit.rs",
        "                        base: frame_plus(first, i)?.start(),\n",
        "                        base: first.start(),\n",
        false,
    ),
    patch(
        "first-fit-skips-exact-gap",
        "regions",
        "first fit skips a gap of exactly the size asked for",
        "vmm/src/space/regions.rs",
        "            if u64::from(s) >= u64::from(candidate) + u64::from(pages) {\n",
        "            if u64::from(s) > u64::from(candidate) + u64::from(pages) {\n",
        false,
    ),
    patch(
        "mremap-efault-at-region-end",
        "syscalls",
        "mremap says EFAULT for a range ending at its region's end (off by one)",
        "vmm/src/syscalls/mremap.rs",
        "            .filter(|r| src.end_number() <= r.range.end_number())\n",
        "            .filter(|r| src.end_number() < r.range.end_number())\n",
        true,
    ),
    patch(
        "cow-reuses-frame-shared-twice",
        "faults-cow",
        "a copy-on-write fault reuses a frame still mapped twice instead of copying it",
        "vmm/src/fault.rs",
        "        if count <= 1 {\n",
        "        if count <= 2 {\n",
        false,
    ),
    patch(
        "mprotect-unprotects-cow-pair",
        "faults-cow",
        "mprotect makes a page shared by two spaces writable, skipping copy-on-write",
        "vmm/src/syscalls/mod.rs",
        "self.frames.ref_count(t.frame).is_ok_and(|c| c > 1)",
        "self.frames.ref_count(t.frame).is_ok_and(|c| c > 2)",
        false,
    ),
    patch(
        "exit-skips-last-region",
        "fork-exit",
        "exit unmaps up to the start of its last region only: that region leaks",
        "vmm/src/vm.rs",
        "                last.range.end_number() - first.range.start().number(),\n",
        "                last.range.start().number() - first.range.start().number(),\n",
        false,
    ),
    patch(
        "shm-destroyed-with-one-attach-left",
        "shm",
        "a removed shm segment is destroyed while one attachment still maps it",
        "vmm/src/shm.rs",
        "        if s.removed && s.attached == 0 {\n",
        "        if s.removed && s.attached <= 1 {\n",
        false,
    ),
    patch(
        "asid-limit-never-handed-out",
        "asids",
        "the highest ASID is never handed out: spawn and fork fail one space early",
        "vmm/src/arch/armv7/asid.rs",
        "        let value = (1..=self.limit)\n",
        "        let value = (1..self.limit)\n",
        false,
    ),
    patch(
        "fault-leaks-frame-on-table-enomem",
        "atomicity",
        "a demand fault that cannot get an L2 page leaks the data frame it took",
        "vmm/src/fault.rs",
        "                    let _ = self.frames.free(&mut self.machine, frame);\n",
        "                    let _ = frame;\n",
        false,
    ),
    patch(
        "cow-remap-skips-invalidate",
        "tlb",
        "the copy-on-write re-point never invalidates the page",
        "vmm/src/arch/armv7/mmu/mod.rs",
        "            batch.push(page_to_remap);\n",
        "            let _ = &mut batch;\n",
        false,
    ),
    patch(
        "unmap-invalidates-first-page-only",
        "tlb",
        "clearing small pages invalidates the first page of each table's range, not each page",
        "vmm/src/arch/armv7/mmu/commit.rs",
        "                        m.replace_word(pa, raw, 0);\n                        batch.push(page(p)?);\n",
        "                        m.replace_word(pa, raw, 0);\n                        batch.push(page(lo)?);\n",
        false,
    ),
    patch(
        "smp-maintenance-stays-local",
        "smp",
        "the CPU count never selects the inner-shareable forms",
        "vmm/src/arch/armv7/tlb.rs",
        "        if cpus > 1 {\n",
        "        if cpus > 8 {\n",
        false,
    ),
    patch(
        "exit-leaves-boot-cpu-only",
        "smp",
        "exit makes the space not current on CPU 0 only before freeing its table",
        "vmm/src/vm.rs",
        "            if *current == Some(id) {\n",
        "            if *current == Some(id) && index == 0 {\n",
        false,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every patch still applies to the code as it is: its text occurs exactly once. A
    /// refactor of the vmm that moves a patched line fails here, not in a nightly run.
    #[test]
    fn every_patch_applies_to_the_current_code() {
        let root = crate::workspace_root();
        for d in CATALOGUE {
            if let How::Patch(p) = d.how {
                let text = std::fs::read_to_string(root.join(p.file))
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", d.name, p.file));
                assert_eq!(text.matches(p.find).count(), 1, "{}: {}", d.name, p.file);
                assert_ne!(p.find, p.replace, "{}", d.name);
            }
        }
    }

    #[test]
    fn names_are_unique_and_every_layer_has_a_defect() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        assert!(CATALOGUE.len() >= 25);
        for layer in [
            "buddy",
            "descriptors",
            "arch-mmu",
            "regions",
            "syscalls",
            "faults-cow",
            "fork-exit",
            "shm",
            "tlb",
            "asids",
            "atomicity",
            "smp",
        ] {
            assert!(CATALOGUE.iter().any(|d| d.layer == layer), "{layer}");
        }
        let quick = CATALOGUE.iter().filter(|d| d.quick).count();
        assert!((1..=4).contains(&quick));
    }
}
