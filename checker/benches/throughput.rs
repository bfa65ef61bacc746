//! Checked ops per second: `checker::run` (vmm on the simulated MMU + reference model, full
//! comparison after every step) over fixed pseudo-random sequences.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use checker::{Step, run};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic sequences decoded from xorshift bytes, exactly as a fuzzer would decode them.
fn sequences(count: usize, len: usize) -> Vec<Vec<Step>> {
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
            steps
        })
        .collect()
}

fn throughput(c: &mut Criterion) {
    let seqs = sequences(32, 64);
    let total: usize = seqs.iter().map(Vec::len).sum();
    for s in &seqs {
        run(s).expect("model and vmm agree on the benchmark sequences");
    }
    let mut g = c.benchmark_group("checker");
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function("run_32_sequences_of_64_steps", |b| {
        b.iter(|| {
            for s in &seqs {
                let _ = run(s);
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
