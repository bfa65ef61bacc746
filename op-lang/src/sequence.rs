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
}

impl Config {
    /// The pool sizes a configuration may name.
    pub const POOL_FRAMES: std::ops::RangeInclusive<u32> = 16..=16384;
    /// The defaults: a 160-frame pool (640 KiB: exhaustion within reach of a short sequence)
    /// and every ASID of semantics.md section 2.
    pub const DEFAULT: Self = Self {
        pool_frames: 160,
        asids: 255,
    };

    /// Whether every field is within its bounds.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        Self::POOL_FRAMES.contains(&self.pool_frames) && self.asids >= 1
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `pool frames=160 asids=255`: the header line of a `.ops` file.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool frames={} asids={}", self.pool_frames, self.asids)
    }
}

impl std::str::FromStr for Config {
    type Err = String;

    /// Parses a header line: `pool`, then `frames=` and `asids=` once each, in any order (a
    /// field left out keeps its default). Unknown or repeated keys and values out of bounds
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
                _ => return Err(format!("unknown key `{key}` (frames, asids)")),
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

impl Sequence {
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
    Ok(Sequence {
        config: config.unwrap_or_default(),
        steps,
    })
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
                asids: 3
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
            ("spawn\npool frames=64\n", "line 2"),
            ("\n# c\npool frames=64\nspawn\nbogus\n", "line 5"),
        ] {
            let e = parse_sequence(text).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
