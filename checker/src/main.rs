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
    /// Replay `.ops` files and report the first divergence of each.
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
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let steps = match checker::parse_ops(&text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
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
