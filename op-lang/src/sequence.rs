//! A sequence: the world it runs in ([`Config`]) and its steps.
//!
//! The configuration is versioned with the formats: in `.ops` text it is an optional first line
//! `pool frames=N asids=M` (absent: the defaults); in fuzzer bytes, an input that starts with
//! [`crate::bytes::CONFIG_TAG`] carries it in the next three bytes, any other input is read
//! with the defaults (the format every input had before the configuration existed).

use std::fmt;

use crate::op::{Step, parse_ops};

/// The world a sequence runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Frames in the frame pool ([`Config::POOL_FRAMES`] bounds it).
    pub pool_frames: u32,
    /// The highest user ASID the vmm hands out (1 to 255): with a small value, ASID exhaustion
    /// is reachable within a short sequence.
    pub asids: u8,
    /// CPUs (1 to [`Config::MAX_CPUS`]): with more than one, accesses name the CPU they run
    /// on and every TLB invalidate must reach them all (semantics.md section 14).
    pub cpus: u8,
}

impl Config {
    /// The most CPUs a configuration may name (the vmm's `MAX_CPUS`).
    pub const MAX_CPUS: u8 = 4;
    /// The pool sizes a configuration may name.
    pub const POOL_FRAMES: std::ops::RangeInclusive<u32> = 16..=16384;
    /// The defaults: a 160-frame pool (640 KiB: exhaustion within reach of a short sequence),
    /// every ASID of semantics.md section 2, one CPU.
    pub const DEFAULT: Self = Self {
        pool_frames: 160,
        asids: 255,
        cpus: 1,
    };

    /// Whether every field is within its bounds.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        Self::POOL_FRAMES.contains(&self.pool_frames)
            && self.asids >= 1
            && (1..=Self::MAX_CPUS).contains(&self.cpus)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `pool frames=160 asids=255`: the header line of a `.ops` file, with ` cpus=K` when there is
/// more than one CPU.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool frames={} asids={}", self.pool_frames, self.asids)?;
        if self.cpus != 1 {
            write!(f, " cpus={}", self.cpus)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Config {
    type Err = String;

    /// Parses a header line: `pool`, then `frames=`, `asids=` and `cpus=` once each, in any
    /// order (a field left out keeps its default). Unknown or repeated keys and values out of bounds
    /// are errors.
    fn from_str(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        if words.next() != Some("pool") {
            return Err("a configuration line starts with `pool`".into());
        }
        let mut config = Self::DEFAULT;
        let mut seen: Vec<&str> = Vec::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("`{word}` is not key=value"))?;
            if seen.contains(&key) {
                return Err(format!("`{key}` given twice"));
            }
            seen.push(key);
            let number = |max: u64| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|&v| v <= max)
                    .ok_or_else(|| format!("`{key}={value}` is not a number up to {max}"))
            };
            match key {
                "frames" => config.pool_frames = number(u64::from(u32::MAX))? as u32,
                "asids" => config.asids = number(255)? as u8,
                "cpus" => config.cpus = number(255)? as u8,
                _ => return Err(format!("unknown key `{key}` (frames, asids, cpus)")),
            }
        }
        if !Self::POOL_FRAMES.contains(&config.pool_frames) {
            return Err(format!(
                "frames={} is outside {}..={}",
                config.pool_frames,
                Self::POOL_FRAMES.start(),
                Self::POOL_FRAMES.end()
            ));
        }
        if config.asids == 0 {
            return Err("asids=0: at least one user ASID".into());
        }
        if !(1..=Self::MAX_CPUS).contains(&config.cpus) {
            return Err(format!(
                "cpus={} is outside 1..={}",
                config.cpus,
                Self::MAX_CPUS
            ));
        }
        Ok(config)
    }
}

/// A configuration and the steps that run in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sequence {
    /// The world.
    pub config: Config,
    /// The steps.
    pub steps: Vec<Step>,
}

/// The first access of `steps` on a CPU a world of `cpus` lacks: its index and its CPU.
#[must_use]
pub fn first_access_beyond(steps: &[Step], cpus: u8) -> Option<(usize, u8)> {
    steps
        .iter()
        .enumerate()
        .find_map(|(n, s)| s.op.cpu().filter(|&c| c >= cpus).map(|c| (n, c)))
}

/// Moves every access of `steps` to a CPU a world of `cpus` has: its CPU modulo the count
/// (`cpus` 1: every access on CPU 0).
pub fn fold_accesses_onto(steps: &mut [Step], cpus: u8) {
    let cpus = cpus.max(1);
    for step in steps {
        if let Some(cpu) = step.op.cpu_mut() {
            *cpu %= cpus;
        }
    }
}

impl Sequence {
    /// The sequence moved to a world of `cpus` CPUs, its accesses folded onto them
    /// ([`fold_accesses_onto`]).
    pub fn set_cpus(&mut self, cpus: u8) {
        self.config.cpus = cpus;
        fold_accesses_onto(&mut self.steps, cpus);
    }

    /// `steps` in the default world.
    #[must_use]
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            config: Config::DEFAULT,
            steps,
        }
    }
}

/// Parses a `.ops` file: an optional configuration line first (`pool ...`, see [`Config`]),
/// then one step per line; `#` starts a comment; blank lines are skipped.
pub fn parse_sequence(text: &str) -> Result<Sequence, String> {
    let mut config = None;
    let mut body_from = text.len();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.split_whitespace().next() == Some("pool") {
            config = Some(
                line.parse::<Config>()
                    .map_err(|e| format!("line {}: {e}: `{}`", n + 1, raw.trim()))?,
            );
            // The steps start on the next line (line numbers stay the file's).
            body_from = text
                .match_indices('\n')
                .nth(n)
                .map_or(text.len(), |(i, _)| i + 1);
        } else {
            body_from = 0;
        }
        break;
    }
    let header_lines = text[..body_from].lines().count();
    let steps = parse_ops(&text[body_from..]).map_err(|e| renumber(&e, header_lines))?;
    let config = config.unwrap_or_default();
    if let Some((n, cpu)) = first_access_beyond(&steps, config.cpus) {
        return Err(format!(
            "step {}: `cpu={cpu}` but the sequence has {} CPU(s) (a `pool ... cpus=K` line sets it)",
            n + 1,
            config.cpus
        ));
    }
    Ok(Sequence { config, steps })
}

/// `line N: ...` from the body's parser, as a line number of the whole file.
fn renumber(error: &str, offset: usize) -> String {
    let Some(rest) = error.strip_prefix("line ") else {
        return error.to_string();
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<usize>() {
        Ok(n) => format!("line {}{}", n + offset, &rest[digits.len()..]),
        Err(_) => error.to_string(),
    }
}

/// Prints a sequence as a `.ops` file: the configuration line when it is not the default, then
/// one step per line (parsing it gives the same sequence back).
#[must_use]
pub fn print_sequence(sequence: &Sequence) -> String {
    let mut out = String::new();
    if sequence.config != Config::DEFAULT {
        out.push_str(&format!("{}\n", sequence.config));
    }
    out.push_str(&crate::op::print_ops(&sequence.steps));
    out
}

#[cfg(test)]
mod tests {
    use super::{Config, Sequence, parse_sequence, print_sequence};

    #[test]
    fn a_header_line_sets_the_world_and_round_trips() {
        let text = "# comment\n\npool frames=64 asids=3\nspawn\nspawn\n";
        let s = parse_sequence(text).expect("parses");
        assert_eq!(
            s.config,
            Config {
                pool_frames: 64,
                asids: 3,
                cpus: 1,
            }
        );
        assert_eq!(s.steps.len(), 2);
        assert_eq!(parse_sequence(&print_sequence(&s)), Ok(s));
        let plain = parse_sequence("spawn\n").expect("parses");
        assert_eq!(plain, Sequence::new(plain.steps.clone()));
        assert_eq!(
            print_sequence(&plain),
            "spawn\n",
            "defaults print no header"
        );
        let smp = parse_sequence("pool cpus=2\nspawn\nread s=0 addr=mmap+0p mode=user cpu=1\n")
            .expect("parses");
        assert_eq!(smp.config.cpus, 2);
        assert_eq!(smp.steps[1].op.cpu(), Some(1));
        assert_eq!(
            print_sequence(&smp),
            "pool frames=160 asids=255 cpus=2\nspawn\nread s=0 addr=mmap+0p mode=user cpu=1\n"
        );
        assert_eq!(parse_sequence(&print_sequence(&smp)), Ok(smp));
        // Fields keep their defaults when left out, in any order.
        assert_eq!(
            "pool asids=7".parse::<Config>().map(|c| c.pool_frames),
            Ok(160)
        );
    }

    #[test]
    fn bad_headers_are_errors_naming_the_line_and_key() {
        for (text, needle) in [
            ("pool frames=8\n", "outside"),
            ("pool frames=64 frames=65\n", "`frames` given twice"),
            ("pool asids=0\n", "asids=0"),
            ("pool asids=256\n", "up to 255"),
            ("pool fraymes=64\n", "unknown key `fraymes`"),
            ("pool cpus=0\n", "cpus=0 is outside"),
            ("pool cpus=5\n", "cpus=5 is outside"),
            (
                "spawn\nread s=0 addr=mmap+0p mode=user cpu=1\n",
                "step 2: `cpu=1`",
            ),
            (
                "pool cpus=2\nspawn\nread s=0 addr=mmap+0p mode=user cpu=2\n",
                "2 CPU(s)",
            ),
            ("spawn\npool frames=64\n", "line 2"),
            ("\n# c\npool frames=64\nspawn\nbogus\n", "line 5"),
        ] {
            let e = parse_sequence(text).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
