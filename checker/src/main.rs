//! `checker replay FILE...`: runs `.ops` files through the model and the vmm. Exit status 0
//! when they agree on every file, 1 with the divergence report otherwise, 2 on unreadable input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "checker", about = "Differential checker for the vmm crate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay `.ops` files (or fuzzer inputs: any other extension) and report the first
    /// divergence of each.
    Replay {
        /// Print every step with what it returned.
        #[arg(long)]
        trace: bool,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Command::Replay { trace, files } = Cli::parse().command;
    let mut diverged = 0;
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        // `.ops` files are text; anything else is a fuzzer input, decoded as the targets do.
        let is_text = file.extension().is_some_and(|x| x == "ops");
        let steps = if is_text {
            match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(checker::parse_ops)
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
        } else {
            let steps = checker::fuzz::decode(&bytes);
            println!(
                "{}: fuzzer bytes, decoded to:\n{}",
                file.display(),
                checker::print_ops(&steps)
            );
            steps
        };
        if trace && let Ok(outcomes) = checker::trace(&steps) {
            for (i, (step, outcome)) in steps.iter().zip(outcomes).enumerate() {
                println!("{:>4}  {:<72} -> {outcome:?}", i + 1, step.to_string());
            }
        }
        match checker::run(&steps) {
            Ok(n) => println!("PASS {} ({n} steps)", file.display()),
            Err(d) => {
                diverged += 1;
                println!("FAIL {}\n{d}", file.display());
            }
        }
    }
    println!("SUMMARY: {} files, {} diverged", files.len(), diverged);
    if diverged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
