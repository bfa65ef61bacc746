//! The scratch workspace a patched defect is built in: a copy of the repository's tracked and
//! untracked-but-not-ignored files under `target/detect/workspace`, its own cargo target
//! directory, and patches applied to it one at a time (the repository itself never changes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Failure;
use crate::fuzzing::BUILD_FLAGS;

/// A patch: the text to find (exactly once) in one file, and its replacement.
#[derive(Clone, Copy, Debug)]
pub struct Patch {
    /// The file, relative to the repository root.
    pub file: &'static str,
    /// The text replaced; it must occur exactly once in the file.
    pub find: &'static str,
    /// What replaces it.
    pub replace: &'static str,
}

/// The scratch copy and where it builds.
pub struct Scratch {
    /// The copy's root.
    pub root: PathBuf,
    /// Its cargo target directory (kept between runs, so only what a patch touches rebuilds).
    pub target_dir: PathBuf,
}

/// Directories of the repository a build never reads (corpora, findings, records).
const NOT_COPIED: [&str; 5] = [
    "corpus/",
    "fuzz/corpus/",
    "fuzz/artifacts/",
    "mutants/",
    "docs/",
];

impl Scratch {
    /// A fresh copy of the repository at `root` under `root/target/detect`.
    pub fn create(root: &Path) -> Result<Self, Failure> {
        let base = root.join("target/detect");
        let copy = base.join("workspace");
        if copy.exists() {
            std::fs::remove_dir_all(&copy)
                .map_err(|e| Failure(format!("removing {}: {e}", crate::shown(&copy))))?;
        }
        let listed = Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(root)
            .output()
            .map_err(|e| Failure(format!("git ls-files: {e}")))?;
        if !listed.status.success() {
            return Err(Failure(format!(
                "git ls-files failed: {}",
                String::from_utf8_lossy(&listed.stderr)
            )));
        }
        for name in listed.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name);
            let from = root.join(name.as_ref());
            if NOT_COPIED.iter().any(|d| name.starts_with(d)) || !from.is_file() {
                continue;
            }
            let to = copy.join(name.as_ref());
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure(format!("{}: {e}", crate::shown(dir))))?;
            }
            std::fs::copy(&from, &to).map_err(|e| Failure(format!("copying {name}: {e}")))?;
        }
        Ok(Self {
            root: copy,
            target_dir: base.join("cargo"),
        })
    }

    /// Applies `patch`; the returned original text restores the file ([`Scratch::restore`]).
    pub fn apply(&self, patch: &Patch) -> Result<String, Failure> {
        let path = self.root.join(patch.file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| Failure(format!("{}: {e}", patch.file)))?;
        match text.matches(patch.find).count() {
            1 => {}
            n => {
                return Err(Failure(format!(
                    "the catalogue is stale: the patch's text occurs {n} times in {} (it must occur once)",
                    patch.file
                )));
            }
        }
        std::fs::write(&path, text.replacen(patch.find, patch.replace, 1))
            .map_err(|e| Failure(format!("{}: {e}", patch.file)))?;
        Ok(text)
    }

    /// Puts back the text [`Scratch::apply`] returned.
    pub fn restore(&self, patch: &Patch, original: &str) -> Result<(), Failure> {
        std::fs::write(self.root.join(patch.file), original)
            .map_err(|e| Failure(format!("{}: {e}", patch.file)))
    }

    fn cargo(&self, dir: &Path) -> Command {
        let mut cmd = crate::cargo(dir);
        cmd.env("CARGO_TARGET_DIR", &self.target_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Builds the `ops` fuzz target as `cargo xtask fuzz` does; returns the binary.
    pub fn build_fuzz_target(&self) -> Result<PathBuf, Failure> {
        let mut cmd = self.cargo(&self.root.join("fuzz"));
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_CACHE_RUSTC_INFO", "0")
            .env("CARGO_PROFILE_RELEASE_LTO", "fat")
            .args(["fuzz", "build"])
            .args(BUILD_FLAGS)
            .arg("ops");
        built(cmd, "cargo fuzz build ops")?;
        let triple_dirs = std::fs::read_dir(&self.target_dir)
            .map_err(|e| Failure(format!("{}: {e}", crate::shown(&self.target_dir))))?;
        triple_dirs
            .filter_map(|d| d.ok().map(|d| d.path().join("release/ops")))
            .find(|p| p.is_file())
            .ok_or_else(|| Failure("cargo fuzz build left no `ops` binary".into()))
    }

    /// Builds the checker (the minimizer) against the copy's vmm; returns the binary.
    pub fn build_checker(&self) -> Result<PathBuf, Failure> {
        let mut cmd = self.cargo(&self.root);
        cmd.args(["build", "--release", "-p", "checker"]);
        built(cmd, "cargo build -p checker")?;
        Ok(self.target_dir.join("release/checker"))
    }
}

/// Runs a build; a failure carries the end of its output.
fn built(mut cmd: Command, what: &str) -> Result<(), Failure> {
    let out = cmd.output().map_err(|e| Failure(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Failure(format!(
        "{what} failed:\n{}",
        crate::fuzzing::last_lines(&stderr, 25, "\n")
    )))
}
