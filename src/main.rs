//! The `tambun` binary: parses the command line and runs the command. Errors are printed as
//! one sentence (`error: …`) with exit code 1; usage errors are clap's (exit code 2).

use std::process::ExitCode;

use clap::Parser;
use tambun::cli::{error_sentence, run, Cli};

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_sentence(&err));
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `tambun ext list | head` would panic on a closed stdout; a CLI
/// should simply end quietly, as other Unix tools do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
