//! The fuzzers' byte encoding: bytes decode to a sequence of at most [`MAX_STEPS`] steps after an
//! initial `spawn`, with `arbitrary` (pinned), so the same bytes always give the same steps; and
//! [`encode`], its exact inverse, which turns `.ops` scenarios into fuzzer seeds.
//!
//! Format version 1 puts the sequence's [`Config`] at the head: an input whose first byte is
//! [`CONFIG_TAG`] continues with the pool size (`u16`, little-endian, taken modulo the bounds)
//! and the ASID limit (one byte, likewise), then the steps. Any other input is read whole as
//! steps in the default world: inputs written before version 1 keep their meaning, except the
//! one in 256 that happens to start with the tag.
//!
//! Format version 2 (first byte [`SMP_CONFIG_TAG`]) adds a fourth byte, the CPU count (1 +
//! the byte modulo [`Config::MAX_CPUS`]), and every access step is followed by one byte more,
//! its CPU (modulo the count). A one-CPU sequence is written in version 1 or without a
//! header, as before, so every input [`encode`] ever wrote keeps its meaning; of raw inputs
//! (grown by libFuzzer) the one in 256 that starts with [`SMP_CONFIG_TAG`] now reads as a
//! version 2 header, as the one that starts with [`CONFIG_TAG`] did since version 1.
//!
//! How `arbitrary` 1.5.0 reads bytes (the derive and `Unstructured`), which [`encode`] mirrors:
//!
//! - a struct reads its fields in declaration order;
//! - an enum reads a `u32` `x` and takes variant `(u64::from(x) * count) >> 32`, then that
//!   variant's fields in order;
//! - integers take `size_of` bytes from the front, little-endian;
//! - `bool` is the low bit of one byte, `Option<T>` a `bool` then `T` when it is `Some`;
//! - when bytes run out, reads are padded with zeros (never an error), so decoding stops only
//!   because [`decode`] checks `is_empty` before each step.

use arbitrary::{Arbitrary, Unstructured};

use crate::op::{Addr, Op, Step};
use crate::sequence::{Config, Sequence, first_access_beyond};

/// The first byte of an input that carries a [`Config`] (format version 1).
pub const CONFIG_TAG: u8 = 0xC1;
/// The first byte of an input that carries a [`Config`] with a CPU count, and a CPU after
/// every access (format version 2).
pub const SMP_CONFIG_TAG: u8 = 0xC2;

/// The configuration in the three bytes after [`CONFIG_TAG`] (missing bytes read as zero).
fn decode_config(bytes: &[u8]) -> Config {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let (lo, hi) = (*Config::POOL_FRAMES.start(), *Config::POOL_FRAMES.end());
    let raw_frames = u32::from(u16::from_le_bytes([byte(0), byte(1)]));
    Config {
        pool_frames: lo + raw_frames % (hi - lo + 1),
        asids: 1 + byte(2) % 255,
        cpus: 1,
    }
}

/// The configuration in the four bytes after [`SMP_CONFIG_TAG`].
fn decode_smp_config(bytes: &[u8]) -> Config {
    let cpus = bytes.get(3).copied().unwrap_or(0);
    Config {
        cpus: 1 + cpus % Config::MAX_CPUS,
        ..decode_config(bytes)
    }
}

/// The three bytes [`decode_config`] reads as `config` (which must be valid).
fn encode_config(config: &Config) -> [u8; 3] {
    let raw = (config.pool_frames - Config::POOL_FRAMES.start()) as u16;
    let [lo, hi] = raw.to_le_bytes();
    [lo, hi, config.asids - 1]
}

/// Longest sequence a fuzz input decodes to.
pub const MAX_STEPS: usize = 64;

/// Decodes fuzzer bytes: the configuration when the input carries one, then `spawn` and steps
/// while bytes last (at most [`MAX_STEPS`] in all).
#[must_use]
pub fn decode(data: &[u8]) -> Sequence {
    match data.split_first() {
        Some((&CONFIG_TAG, rest)) => Sequence {
            config: decode_config(rest),
            steps: decode_steps(rest.get(3..).unwrap_or(&[]), 1),
        },
        Some((&SMP_CONFIG_TAG, rest)) => {
            let config = decode_smp_config(rest);
            Sequence {
                config,
                steps: decode_steps(rest.get(4..).unwrap_or(&[]), config.cpus),
            }
        }
        _ => Sequence::new(decode_steps(data, 1)),
    }
}

/// The steps of an input's body (after the configuration, if any); with more than one CPU,
/// each access is followed by its CPU's byte.
fn decode_steps(data: &[u8], cpus: u8) -> Vec<Step> {
    let mut u = Unstructured::new(data);
    let mut steps = Vec::with_capacity(MAX_STEPS);
    steps.push(Step {
        op: Op::Spawn,
        refuse: None,
    });
    while steps.len() < MAX_STEPS && !u.is_empty() {
        match Step::arbitrary(&mut u) {
            Ok(mut s) => {
                if cpus > 1
                    && let Some(cpu) = s.op.cpu_mut()
                {
                    *cpu = u.arbitrary::<u8>().unwrap_or(0) % cpus;
                }
                steps.push(s);
            }
            Err(_) => break,
        }
    }
    steps
}

/// Encodes a sequence as fuzzer bytes, the inverse of [`decode`].
///
/// [`decode`] always starts with a `spawn` of its own, so a leading `spawn` without a refusal
/// is not encoded: for a sequence that starts with one and has at most [`MAX_STEPS`] steps,
/// `decode(&encode(s)) == s`. Any other sequence is encoded whole and decodes with an extra
/// `spawn` in front; steps past [`MAX_STEPS`] are encoded but not decoded. The configuration
/// is written when it is not the default, or when the steps' bytes would start with
/// [`CONFIG_TAG`]; an invalid one is written as the default.
#[must_use]
pub fn encode(sequence: &Sequence) -> Vec<u8> {
    let config = if sequence.config.is_valid() {
        sequence.config
    } else {
        Config::DEFAULT
    };
    let body = encode_steps(&sequence.steps, config.cpus);
    if config.cpus > 1 {
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(SMP_CONFIG_TAG);
        out.extend_from_slice(&encode_config(&config));
        out.push(config.cpus - 1);
        out.extend_from_slice(&body);
        return out;
    }
    if config == Config::DEFAULT && !matches!(body.first(), Some(&(CONFIG_TAG | SMP_CONFIG_TAG))) {
        return body;
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.push(CONFIG_TAG);
    out.extend_from_slice(&encode_config(&config));
    out.extend_from_slice(&body);
    out
}

/// The bytes of steps alone; with more than one CPU, each access's CPU follows it.
fn encode_steps(steps: &[Step], cpus: u8) -> Vec<u8> {
    let body = match steps.first() {
        Some(Step {
            op: Op::Spawn,
            refuse: None,
        }) => &steps[1..],
        _ => steps,
    };
    let mut e = Encoder(Vec::with_capacity(body.len() * 16));
    for step in body {
        e.step(step);
        if cpus > 1
            && let Some(cpu) = step.op.cpu()
        {
            e.u8(cpu);
        }
    }
    e.0
}

/// Whether [`encode`] round-trips `sequence` exactly (a valid configuration, a leading plain
/// `spawn`, at most [`MAX_STEPS`] steps).
#[must_use]
pub fn round_trips(sequence: &Sequence) -> bool {
    let steps = &sequence.steps;
    sequence.config.is_valid()
        && steps.len() <= MAX_STEPS
        && first_access_beyond(steps, sequence.config.cpus).is_none()
        && steps.first()
            == Some(&Step {
                op: Op::Spawn,
                refuse: None,
            })
}

/// The inputs `cargo xtask fuzz-speed` times the `ops` target on: `count` sequences of
/// [`MAX_STEPS`] steps in the default world, each decoded from 4096 pseudo-random bytes
/// (xorshift32 from a fixed seed, so every run measures the same work; a configuration those
/// bytes would carry is dropped) and written back as its canonical encoding,
/// the shortest bytes that decode to those steps. The error names the first input that does not
/// decode to [`MAX_STEPS`] steps or does not round-trip (never seen; checked so the figure is
/// always about 64-step inputs).
pub fn speed_inputs(count: usize) -> Result<Vec<Vec<u8>>, usize> {
    let mut x: u32 = 0x9E37_79B9;
    let mut random = vec![0u8; 4096];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        for b in &mut random {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        // Read as the inputs were before version 2 (a leading SMP tag is a step's byte), so
        // that every run, before and after it, times the same work.
        let steps = match random.first() {
            Some(&SMP_CONFIG_TAG) => decode_steps(&random, 1),
            _ => decode(&random).steps,
        };
        let sequence = Sequence::new(steps);
        let bytes = encode(&sequence);
        if sequence.steps.len() != MAX_STEPS || decode(&bytes) != sequence {
            return Err(i);
        }
        out.push(bytes);
    }
    Ok(out)
}

/// Variants of [`Op`] and [`Addr`] as the derive counts them (declaration order).
const OP_VARIANTS: u32 = 18;
const ADDR_VARIANTS: u32 = 5;

struct Encoder(Vec<u8>);

impl Encoder {
    /// The smallest `u32` the derive maps to variant `index` of `count`:
    /// `ceil(index * 2^32 / count)`, so that `(x * count) >> 32 == index`.
    fn variant(&mut self, index: u32, count: u32) {
        debug_assert!(index < count);
        let x = (u64::from(index) << 32).div_ceil(u64::from(count));
        self.u32(u32::try_from(x).expect("below 2^32 for index < count"));
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    fn step(&mut self, step: &Step) {
        self.op(&step.op);
        self.bool(step.refuse.is_some());
        if let Some(k) = step.refuse {
            self.u8(k);
        }
    }

    fn addr(&mut self, addr: &Addr) {
        match *addr {
            Addr::InRegion { region, page, word } => {
                self.variant(0, ADDR_VARIANTS);
                self.u8(region);
                self.u8(page);
                self.u8(word);
            }
            Addr::Heap(p) => {
                self.variant(1, ADDR_VARIANTS);
                self.u8(p);
            }
            Addr::Mmap(p) => {
                self.variant(2, ADDR_VARIANTS);
                self.u16(p);
            }
            Addr::Raw(v) => {
                self.variant(3, ADDR_VARIANTS);
                self.u32(v);
            }
            Addr::Vmalloc { alloc, page } => {
                self.variant(4, ADDR_VARIANTS);
                self.u8(alloc);
                self.u8(page);
            }
        }
    }

    fn op(&mut self, op: &Op) {
        let v = |e: &mut Self, i| e.variant(i, OP_VARIANTS);
        match op {
            Op::Spawn => v(self, 0),
            Op::Fork { s } => {
                v(self, 1);
                self.u8(*s);
            }
            Op::Exit { s } => {
                v(self, 2);
                self.u8(*s);
            }
            Op::Mmap {
                s,
                addr,
                len,
                prot,
                flags,
            } => {
                v(self, 3);
                self.u8(*s);
                self.addr(addr);
                self.u32(*len);
                self.u32(*prot);
                self.u32(*flags);
            }
            Op::Munmap { s, addr, len } => {
                v(self, 4);
                self.u8(*s);
                self.addr(addr);
                self.u32(*len);
            }
            Op::Mprotect { s, addr, len, prot } => {
                v(self, 5);
                self.u8(*s);
                self.addr(addr);
                self.u32(*len);
                self.u32(*prot);
            }
            Op::Brk { s, addr } => {
                v(self, 6);
                self.u8(*s);
                self.addr(addr);
            }
            Op::Mremap {
                s,
                addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                v(self, 7);
                self.u8(*s);
                self.addr(addr);
                self.u32(*old_len);
                self.u32(*new_len);
                self.u32(*flags);
                self.addr(new_addr);
            }
            Op::ShmGet { key, size, flags } => {
                v(self, 8);
                self.i32(*key);
                self.u32(*size);
                self.u32(*flags);
            }
            Op::ShmAt { s, id, addr, flags } => {
                v(self, 9);
                self.u8(*s);
                self.u32(*id);
                self.bool(addr.is_some());
                if let Some(a) = addr {
                    self.addr(a);
                }
                self.u32(*flags);
            }
            Op::ShmDt { s, addr } => {
                v(self, 10);
                self.u8(*s);
                self.addr(addr);
            }
            Op::ShmCtl { id, cmd } => {
                v(self, 11);
                self.u32(*id);
                self.u32(*cmd);
            }
            Op::MapDevice {
                s,
                addr,
                page,
                len,
                prot,
            } => {
                v(self, 12);
                self.u8(*s);
                self.addr(addr);
                self.u16(*page);
                self.u32(*len);
                self.u32(*prot);
            }
            Op::Vmalloc { len } => {
                v(self, 13);
                self.u32(*len);
            }
            Op::Vfree { addr } => {
                v(self, 14);
                self.addr(addr);
            }
            Op::Read {
                s, addr, kernel, ..
            } => {
                v(self, 15);
                self.u8(*s);
                self.addr(addr);
                self.bool(*kernel);
            }
            Op::Write {
                s,
                addr,
                value,
                kernel,
                ..
            } => {
                v(self, 16);
                self.u8(*s);
                self.addr(addr);
                self.u32(*value);
                self.bool(*kernel);
            }
            Op::Exec {
                s, addr, kernel, ..
            } => {
                v(self, 17);
                self.u8(*s);
                self.addr(addr);
                self.bool(*kernel);
            }
        }
    }
}

/// The `text` target: fuzzer bytes as a `.ops` file. Whenever they are UTF-8 and parse, printing
/// the steps and parsing that again must give the same steps; panics with both otherwise.
pub fn text_round_trip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sequence) = crate::sequence::parse_sequence(text) else {
        return;
    };
    let printed = crate::sequence::print_sequence(&sequence);
    match crate::sequence::parse_sequence(&printed) {
        Ok(again) if again == sequence => {}
        again => panic!(
            "text: print -> parse changed the sequence\ninput: {text:?}\nparsed: {sequence:?}\nprinted:\n{printed}\nparsed again: {again:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{CONFIG_TAG, SMP_CONFIG_TAG, decode, encode, round_trips};
    use crate::op::{Addr, Op, Step};
    use crate::sequence::{Config, Sequence};

    fn spawns(n: usize) -> Vec<Step> {
        vec![
            Step {
                op: Op::Spawn,
                refuse: None,
            };
            n
        ]
    }

    /// A configuration travels at the head of the bytes and comes back; the default one costs
    /// no byte, so inputs written before it existed keep their meaning.
    #[test]
    fn the_configuration_round_trips_and_the_default_costs_nothing() {
        let small = Sequence {
            config: Config {
                pool_frames: 16,
                asids: 2,
                cpus: 1,
            },
            steps: spawns(3),
        };
        let bytes = encode(&small);
        assert_eq!(&bytes[..4], &[CONFIG_TAG, 0, 0, 1]);
        assert_eq!(decode(&bytes), small);
        let big = Sequence {
            config: Config {
                pool_frames: 16384,
                asids: 255,
                cpus: 1,
            },
            ..small.clone()
        };
        assert_eq!(decode(&encode(&big)), big);
        let plain = Sequence::new(spawns(3));
        assert_eq!(encode(&plain), encode(&Sequence::new(spawns(3)))[..]);
        assert_ne!(encode(&plain).first(), Some(&CONFIG_TAG));
        assert_eq!(decode(&encode(&plain)), plain);
        // Any bytes after the tag decode to a valid configuration, however few.
        for raw in [&[CONFIG_TAG][..], &[CONFIG_TAG, 0xFF, 0xFF, 0xFF]] {
            assert!(decode(raw).config.is_valid(), "{raw:?}");
        }
    }

    /// Version 2: the CPU count after the rest of the configuration and each access's CPU
    /// after the access; both come back, and every byte value decodes to a CPU that exists.
    #[test]
    fn several_cpus_and_the_cpu_of_each_access_round_trip() {
        let read = |cpu| Step {
            op: Op::Read {
                s: 0,
                addr: Addr::Mmap(0),
                kernel: false,
                cpu,
            },
            refuse: None,
        };
        let mut steps = spawns(1);
        steps.extend([read(1), read(0), read(1)]);
        let smp = Sequence {
            config: Config {
                cpus: 2,
                ..Config::DEFAULT
            },
            steps,
        };
        assert!(round_trips(&smp));
        let bytes = encode(&smp);
        assert_eq!(bytes[0], SMP_CONFIG_TAG);
        assert_eq!(bytes[4], 1, "two CPUs");
        assert_eq!(decode(&bytes), smp);
        // One CPU: no CPU byte anywhere, and an access on CPU 1 does not round-trip.
        let one = Sequence {
            config: Config::DEFAULT,
            steps: smp.steps.clone(),
        };
        assert!(!round_trips(&one));
        let mut cut = bytes.clone();
        *cut.last_mut().unwrap() = 0xFF;
        let cpus = decode(&cut).config.cpus;
        assert!(
            decode(&cut)
                .steps
                .iter()
                .all(|s| s.op.cpu().is_none_or(|c| c < cpus))
        );
        for raw in [
            &[SMP_CONFIG_TAG][..],
            &[SMP_CONFIG_TAG, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert!(decode(raw).config.is_valid(), "{raw:?}");
        }
    }
}
