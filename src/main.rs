//! The `tambun` binary: parses the command line and runs the command. Errors are printed as
//! one sentence (`error: …`) with exit code 1; usage errors are clap's (exit code 2).

use std::process::ExitCode;

use clap::Parser;
use tambun::cli::{error_sentence, run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_sentence(&err));
            ExitCode::FAILURE
        }
    }
}
