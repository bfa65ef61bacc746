//! Checked ops per second over fixed pseudo-random sequences: `checker::run` (vmm on the
//! simulated MMU + reference model, full comparison after every step), `checker::run_fast`
//! (the fuzzing mode), and each side alone with nothing compared, all from the same run.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use checker::run::{model_alone, vmm_alone};
use checker::{Sequence, Step, run, run_fast};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic sequences decoded from xorshift bytes, exactly as a fuzzer would decode them.
fn sequences(count: usize, len: usize) -> Vec<Sequence> {
    let mut x: u32 = 0x9E37_79B9;
    let mut bytes = vec![0u8; 64 * len];
    (0..count)
        .map(|_| {
            for b in &mut bytes {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let mut u = Unstructured::new(&bytes);
            let mut steps = vec![Step {
                op: checker::Op::Spawn,
                refuse: None,
            }];
            while steps.len() < len {
                match Step::arbitrary(&mut u) {
                    Ok(s) => steps.push(s),
                    Err(_) => break,
                }
            }
            Sequence::new(steps)
        })
        .collect()
}

fn throughput(c: &mut Criterion) {
    let seqs = sequences(32, 64);
    let total: usize = seqs.iter().map(|s| s.steps.len()).sum();
    for s in &seqs {
        run(s).expect("model and vmm agree on the benchmark sequences");
    }
    let concrete: Vec<_> = seqs.iter().map(|s| model_alone(&s.steps)).collect();
    let mut g = c.benchmark_group("checker");
    g.throughput(Throughput::Elements(total as u64));
    // Checked: model and vmm side by side, compared after every step.
    g.bench_function("full_mode", |b| {
        b.iter(|| {
            for s in &seqs {
                let _ = run(s);
            }
        });
    });
    g.bench_function("fast_mode", |b| {
        b.iter(|| {
            for s in &seqs {
                let _ = run_fast(s);
            }
        });
    });
    // Each side alone, nothing compared: what checking costs on top.
    g.bench_function("model_alone", |b| {
        b.iter(|| {
            for s in &seqs {
                let _ = model_alone(&s.steps);
            }
        });
    });
    g.bench_function("vmm_alone", |b| {
        b.iter(|| {
            for s in &concrete {
                let _ = vmm_alone(s);
            }
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = throughput
}
criterion_main!(benches);
