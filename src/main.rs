//! The `rewind` command: parse, run, turn the outcome into an exit code.
//!
//! Writes to a closed stdout fail with EPIPE (Rust ignores SIGPIPE) and end
//! the command quietly; [`rewind::cli::Failure`] decides the exit code.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Release builds abort on a panic (a bug), so no destructor runs: the
    // repository locks this process holds are removed here, after the message.
    #[cfg(panic = "abort")]
    {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            rewind::repo::lock::release_held();
        }));
    }
    match rewind::cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if let Some(message) = failure.message() {
                let _ = writeln!(std::io::stderr(), "{message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
