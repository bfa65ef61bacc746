//! The QEMU suite's guest: boots on `qemu-system-arm -M virt -cpu cortex-a7 -m 256M` with
//! semihosting, reads `ops.bin` (sequences of concrete ops with the pages to probe, see
//! `op_driver::guest`), runs every sequence in a fresh world of the real `vmm` on real RAM and
//! CP15, and writes `report.bin` (what every op returned and what the MMU shows around it:
//! ATS results for the page tables, primed real accesses for the TLB). The host runner compares
//! the report with the reference model.
//!
//! An `ops.bin` that starts with `MATRIX_MAGIC` is the descriptor matrix instead
//! (`matrix.rs`).
//!
//! Exit status: 0 when every sequence ran (divergences are the runner's business), 2 for a bad
//! `ops.bin` or a world that does not boot, 3 for an unexpected exception, 101 for a panic.

#![no_std]
#![no_main]

extern crate alloc;

mod access;
mod boot;
mod core1;
mod cp15;
mod machine;
mod matrix;
mod start;
mod world;

use alloc::vec::Vec;

use linked_list_allocator::LockedHeap;
use op_driver::guest::{BlobReader, GuestDefect, MATRIX_MAGIC, Record, decode_matrix};
use semihosting::io::{Read as _, Write as _};
use semihosting::{c, eprintln, fs, println, process};

use world::World;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
/// The heap: the vmm's bookkeeping and the decoded sequence (the blob itself is read into it
/// too, so it bounds the blob size).
const HEAP_SIZE: usize = 12 << 20;
static mut HEAP_MEMORY: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

fn fail(code: i32, why: core::fmt::Arguments<'_>) -> ! {
    eprintln!("GUEST ERROR: {why}");
    process::exit(code)
}

#[unsafe(no_mangle)]
extern "C" fn guest_main() -> ! {
    // SAFETY: called once, before any allocation; the array is used for nothing else.
    unsafe {
        HEAP.lock()
            .init(core::ptr::addr_of_mut!(HEAP_MEMORY).cast(), HEAP_SIZE);
    }
    boot::enable_mmu();

    let mut bytes = Vec::new();
    match fs::File::open(c!("ops.bin")) {
        Ok(mut f) => {
            let mut chunk = [0u8; 4096];
            loop {
                match f.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) => fail(2, format_args!("reading ops.bin: {e:?}")),
                }
            }
        }
        Err(e) => fail(2, format_args!("opening ops.bin: {e:?}")),
    }
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    drop(bytes);
    if words.first() == Some(&MATRIX_MAGIC) {
        let (defect, cases) = match decode_matrix(&words) {
            Ok(m) => m,
            Err(e) => fail(2, format_args!("ops.bin (matrix): {e:?}")),
        };
        let mut report = Report::create();
        report.write(&matrix::run(defect, &cases));
        report.flush();
        println!("guest: {} matrix cases run", cases.len());
        process::exit(0)
    }
    let mut blob = match BlobReader::new(&words) {
        Ok(b) => b,
        Err(e) => fail(2, format_args!("ops.bin: {e:?}")),
    };
    let mut report = Report::create();
    let total = blob.remaining;
    let mut seq = 0;
    while let Some(sequence) = blob.next_sequence() {
        let sequence = match sequence {
            Ok(s) => s,
            Err(e) => fail(2, format_args!("ops.bin, sequence {seq}: {e:?}")),
        };
        World::clear_device_memory(&sequence.steps);
        let world = World::boot(
            blob.defect,
            sequence.pool_frames,
            sequence.asids,
            sequence.cpus,
        );
        let mut world = match world {
            Ok(w) => w,
            Err(e) => fail(2, format_args!("the vmm does not boot: {e:?}")),
        };
        let mut out = Vec::new();
        Record::Sequence {
            seq,
            free: world.free_frames(),
        }
        .encode(&mut out);
        report.write(&out);
        for (i, step) in sequence.steps.iter().enumerate() {
            // The guest defect the runner must catch: a record that never arrives.
            let dropped = blob.defect == GuestDefect::DropStepRecord(i as u32);
            world.step(i as u32, step, &mut |words| {
                if !dropped {
                    report.write(words);
                }
            });
        }
        let free = world.teardown();
        out.clear();
        Record::End { seq, free }.encode(&mut out);
        report.write(&out);
        // Every finished sequence is on file before the next starts: a crash loses only the
        // sequence it happened in, which the runner then names.
        report.flush();
        seq += 1;
    }
    println!("guest: {seq} of {total} sequences run");
    process::exit(if blob.defect == GuestDefect::FailAfterLastRecord {
        3
    } else {
        0
    })
}

/// `report.bin`, written as the guest goes (a step may probe millions of pages: its record
/// never sits whole in the heap).
struct Report {
    file: fs::File,
    buffer: Vec<u8>,
}

impl Report {
    const FLUSH_AT: usize = 64 << 10;

    fn create() -> Self {
        match fs::File::create(c!("report.bin")) {
            Ok(file) => Self {
                file,
                buffer: Vec::with_capacity(Self::FLUSH_AT + 64),
            },
            Err(e) => fail(2, format_args!("creating report.bin: {e:?}")),
        }
    }

    fn write(&mut self, words: &[u32]) {
        for w in words {
            self.buffer.extend_from_slice(&w.to_le_bytes());
        }
        if self.buffer.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.file.write_all(&self.buffer) {
            fail(2, format_args!("writing report.bin: {e:?}"))
        }
        self.buffer.clear();
    }
}
