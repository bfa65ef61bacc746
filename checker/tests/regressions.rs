//! Every `.ops` file under `corpus/regressions/` is its own test case: model and vmm must agree.

use std::path::Path;

use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus/regressions exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ops"))
        .collect();
    files.sort();
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Trial::test(name, move || {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Failed::from(e.to_string()))?;
                let steps = checker::parse_ops(&text).map_err(Failed::from)?;
                checker::run(&steps)
                    .map(|_| ())
                    .map_err(|d| Failed::from(d.to_string()))
            })
        })
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
