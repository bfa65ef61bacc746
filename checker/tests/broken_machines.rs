//! Each deliberately broken machine is reported, by a short op sequence, as the right kind of
//! divergence; the same sequences pass on a sound machine.

use checker::run::audit_fast_mode;
use checker::{Defect, DivergenceKind, parse_sequence, run, run_fast_with_defect, run_with_defect};

/// (defect, sequence, expected kind)
fn cases() -> Vec<(Defect, &'static str, DivergenceKind)> {
    vec![
        (
            // A page is read (TLB filled), unmapped: the lost invalidate leaves it cached.
            Defect::DropEveryInvalidate,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\nmunmap s=0 addr=mmap+0p len=0x1000\n",
            DivergenceKind::StaleTlb,
        ),
        (
            // Only the second invalidate is lost: the write-protect of the parent page at fork.
            Defect::DropNthInvalidate(0),
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nfork s=0\n",
            DivergenceKind::StaleTlb,
        ),
        (
            // Copy-on-write pages come out writable: the parent's write lands in the shared frame.
            Defect::MakeReadOnlyUserPagesWritable,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nfork s=0\n",
            DivergenceKind::State,
        ),
        (
            // A read/write page comes out executable: its rights differ from the model's
            // without any access.
            Defect::MakeUserPagesExecutable,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\n",
            DivergenceKind::State,
        ),
        (
            // Global user pages (their TLB entries would not be ASID-tagged): the table check
            // finds a user descriptor with nG = 0.
            Defect::ClearNotGlobal,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\n",
            DivergenceKind::Tables,
        ),
        (
            // The same with an eagerly mapped page (shm): read without a fault, so the access
            // step changes no RAM, and detached at once (its invalidate drops the entry). Fast
            // mode finds the global descriptor when it re-reads the attached page.
            Defect::ClearNotGlobal,
            "spawn\nshmget key=0 size=0x1000 flags=0o0\nshmat s=0 id=0 addr=none flags=0o0\nread s=0 addr=r0+0p+0w mode=user\nshmdt s=0 addr=r0+0p+0w\n",
            DivergenceKind::Tables,
        ),
        (
            // Device memory mapped cacheable where the vmm cannot see it (it reads back what it
            // wrote): no access, so no TLB entry; only the walk of the raw words sees the
            // memory type.
            Defect::DisguisedCacheableDevice,
            "spawn\nmapdev s=0 addr=0x3005000 page=1 len=0x2000 prot=0x3\n",
            DivergenceKind::State,
        ),
        (
            // A global user page the vmm's own table check cannot see, never accessed: the
            // attached shm page is compared with the model's nG = 1.
            Defect::DisguisedGlobalUserPages,
            "spawn\nshmget key=0 size=0x1000 flags=0o0\nshmat s=0 id=0 addr=none flags=0o0\n",
            DivergenceKind::State,
        ),
        (
            // The vmm forgets the parent's write-protect invalidate at fork. The page was
            // written long before, and its TLB entry invalidated since (by the first
            // mprotect), so no entry of the sequence's accesses holds it: the translation
            // was valid when the fork began, so hardware may have cached it (INV-10 (d)).
            Defect::SkipNthPageInvalidate(2),
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nmprotect s=0 addr=r0+0p+0w len=0x1000 prot=0x1\nmprotect s=0 addr=r0+0p+0w len=0x1000 prot=0x3\nfork s=0\n",
            DivergenceKind::HardwareProtocol,
        ),
        (
            // No TLBIASID at exit (INV-10 (f)).
            Defect::SkipAsidInvalidates,
            "spawn\nexit s=0\n",
            DivergenceKind::HardwareProtocol,
        ),
        (
            // The TLBIASID at exit, but none when the ASID is handed out again (INV-10 (f)).
            Defect::SkipAsidReinvalidate,
            "spawn\nexit s=0\nspawn\n",
            DivergenceKind::HardwareProtocol,
        ),
        (
            // Invalidate, then clear, then DSB: a speculative walk right after the invalidate
            // still sees the valid descriptor and caches it (page 0 was never accessed).
            Defect::ClearAfterInvalidate,
            "spawn\nshmget key=0 size=0x2000 flags=0o0\nshmat s=0 id=0 addr=none flags=0o0\nread s=0 addr=r0+1p+0w mode=user\nshmdt s=0 addr=r0+0p+0w\n",
            DivergenceKind::StaleTlb,
        ),
        (
            // The unmapped page's frame goes back to the allocator before its invalidate
            // (INV-10 (e)); the invalidate still comes before the op returns.
            Defect::InvalidateAfterFree,
            "spawn\nmmap s=0 addr=0x0 len=0x2000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x1 mode=user\nwrite s=0 addr=r0+1p+0w value=0x1 mode=user\nmunmap s=0 addr=r0+0p+0w len=0x1000\n",
            DivergenceKind::HardwareProtocol,
        ),
        (
            // The copy of a copy-on-write break loses a word: the new frame's contents differ
            // from the model's as soon as it is mapped, before any read of that word.
            Defect::CorruptFrameCopy,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x5 mode=user\nfork s=0\nwrite s=1 addr=r0+0p+1w value=0x6 mode=user\n",
            DivergenceKind::State,
        ),
        (
            // A frame freed with data in it comes back un-zeroed.
            Defect::SkipFrameZeroing,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nwrite s=0 addr=r0+0p+0w value=0x5 mode=user\nmunmap s=0 addr=mmap+0p len=0x1000\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\n",
            DivergenceKind::ReturnValue,
        ),
        (
            // Two CPUs: CPU 1 reads the page (its TLB caches it), CPU 0 unmaps it with the
            // local invalidate, which CPU 1 never sees (INV-10 (h)).
            Defect::LocalInvalidates,
            "pool cpus=2\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user cpu=1\nmunmap s=0 addr=mmap+0p len=0x1000\n",
            DivergenceKind::HardwareProtocol,
        ),
        (
            // The same with the broadcast form issued but lost on the way to CPU 1: the log is
            // sound, and CPU 1's TLB model still holds the unmapped page (INV-8).
            Defect::BroadcastStaysLocal,
            "pool cpus=2\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user cpu=1\nmunmap s=0 addr=mmap+0p len=0x1000\n",
            DivergenceKind::StaleTlb,
        ),
        (
            // Barriers lost: descriptor writes are not followed by DSB; ISB.
            Defect::DropBarriers,
            "spawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\n",
            DivergenceKind::HardwareProtocol,
        ),
    ]
}

#[test]
fn every_broken_machine_is_caught_as_the_right_kind() {
    for (defect, text, kind) in cases() {
        let steps = parse_sequence(text).unwrap();
        assert_eq!(
            run(&steps).map_err(|d| d.to_string()),
            Ok(steps.steps.len()),
            "{defect:?}: clean machine"
        );
        let full = match run_with_defect(&steps, Some(defect)) {
            Ok(_) => panic!("{defect:?} was not caught by:\n{text}"),
            Err(d) => {
                assert_eq!(d.kind, kind, "{defect:?}:\n{d}");
                d
            }
        };
        // The fast mode catches it too, by itself (no fall-back to full mode), at the same
        // step. The kind may differ: fast mode checks INV-7 only at the end, so a global user
        // page shows there first as a TLB entry the tables do not give.
        match audit_fast_mode(&steps, Some(defect)) {
            Ok(_) => panic!("{defect:?} was not caught in fast mode by:\n{text}"),
            Err(d) => assert_eq!(d.at, full.at, "{defect:?} in fast mode:\n{d}"),
        }
        let fast = run_fast_with_defect(&steps, Some(defect)).unwrap_err();
        assert_eq!(fast.to_string(), full.to_string(), "{defect:?}: reports");
    }
}
