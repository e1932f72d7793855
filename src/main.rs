//! The `rewind` command: parse, run, turn the outcome into an exit code.

use std::io::ErrorKind;
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
        Err(err) => {
            // A closed pipe (`rewind ls … | head`) is not worth a message.
            let broken_pipe = err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::from(0);
            }
            eprintln!("rewind: error: {err:#}");
            ExitCode::from(rewind::cli::EXIT_FAILURE)
        }
    }
}
