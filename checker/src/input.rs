//! Input files as the tools read them: `.ops` text (any case of the extension) or `ops` fuzzer
//! bytes, told apart by name, by place (a corpus or artifacts directory, a directory given on
//! the command line) or by a flag; text is held to the strict rules of a hand-written file.
//! Shared by `checker` and `qemu-runner`.

use std::path::{Path, PathBuf};

use crate::Sequence;

/// What the command line says of every file (`--text`, `--bytes`), if anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct KindFlags {
    /// Read every file as `.ops` text.
    pub text: bool,
    /// Read every file as fuzzer bytes.
    pub bytes: bool,
}

/// `path` relative to the working directory when inside it (never a path of one machine when
/// the tools run from the repository, as `cargo xtask` runs them).
#[must_use]
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.ops` text.
    Text,
    /// `ops` fuzzer bytes, decoded as the target does.
    Bytes,
}

/// A file to read, and what the command line or its place says it holds (`None`: it does not
/// say, and the file's name must).
pub struct Input {
    /// The file.
    pub path: PathBuf,
    /// What its name or the command line says it holds, if anything.
    pub kind: Option<Kind>,
}

impl Input {
    /// A file named on the command line.
    #[must_use]
    pub fn given(path: PathBuf, flags: KindFlags) -> Self {
        let in_fuzz_dir = path.components().any(|c| {
            matches!(
                c.as_os_str().to_str(),
                Some("corpus" | "artifacts" | "ops-tmin")
            )
        });
        let kind = if flags.text {
            Some(Kind::Text)
        } else if flags.bytes || (in_fuzz_dir && !is_ops_name(&path)) {
            Some(Kind::Bytes)
        } else {
            None
        };
        Self { path, kind }
    }

    /// What the file holds, or why that cannot be told.
    pub fn kind(&self) -> Result<Kind, String> {
        const ARTIFACTS: [&str; 5] = ["crash-", "oom-", "timeout-", "slow-unit-", "leak-"];
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match self.kind {
            Some(kind) => Ok(kind),
            None if is_ops_name(&self.path) => Ok(Kind::Text),
            None if ARTIFACTS.iter().any(|a| name.starts_with(a)) => Ok(Kind::Bytes),
            None => Err(format!(
                "{}: neither a `.ops` file nor a fuzzer artifact or corpus file: pass --text \
                 or --bytes to say which it is",
                shown(&self.path)
            )),
        }
    }

    /// The sequence in the file; for `.ops` text, also held to the strict rules of a
    /// hand-written file ([`crate::run::strictness`]: no index that only wraps onto a live
    /// space or region, no step that would not run), with the line of the step that breaks them.
    pub fn read_strict(&self) -> Result<Sequence, String> {
        let sequence = self.read()?;
        if self.kind()? == Kind::Text
            && let Err((at, why)) = crate::run::strictness(&sequence)
        {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let line = step_lines(&text).get(at).copied().unwrap_or(0);
            return Err(format!(
                "{}: line {line}: `{}`: {why}",
                shown(&self.path),
                sequence.steps[at]
            ));
        }
        Ok(sequence)
    }

    /// The sequence in the file.
    pub fn read(&self) -> Result<Sequence, String> {
        let kind = self.kind()?;
        let bytes = std::fs::read(&self.path).map_err(|e| format!("{}: {e}", shown(&self.path)))?;
        match kind {
            Kind::Text => std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(crate::parse_sequence)
                .map_err(|e| format!("{}: {e}", shown(&self.path))),
            Kind::Bytes => Ok(crate::fuzz::decode(&bytes)),
        }
    }
}

/// The line number (1-based) of each step of `.ops` text: the significant lines (not blank,
/// not only a comment) after the optional `pool` header.
#[must_use]
pub fn step_lines(text: &str) -> Vec<usize> {
    let significant = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.split('#').next().unwrap_or("").trim().is_empty());
    let mut lines: Vec<(usize, &str)> = significant.collect();
    if lines
        .first()
        .is_some_and(|(_, l)| l.split_whitespace().next() == Some("pool"))
    {
        lines.remove(0);
    }
    lines.into_iter().map(|(n, _)| n + 1).collect()
}

/// Whether the file is named `.ops` (in any case).
#[must_use]
pub fn is_ops_name(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| x.eq_ignore_ascii_case("ops"))
}

/// Files as given, directories replaced by their files (sorted): a file found in a directory
/// is fuzzer bytes unless it is named `.ops` (a corpus directory, or `corpus/regressions`).
#[must_use]
pub fn expand_dirs(paths: &[PathBuf], flags: KindFlags) -> Vec<Input> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            inside.retain(|f| f.is_file());
            inside.sort();
            out.extend(inside.into_iter().map(|path| {
                let mut input = Input::given(path, flags);
                if input.kind.is_none() && !is_ops_name(&input.path) {
                    input.kind = Some(Kind::Bytes);
                }
                input
            }));
        } else {
            out.push(Input::given(p.clone(), flags));
        }
    }
    out
}
