//! The pgmirror command: parse, run, map the outcome to an exit code.

mod cli;

fn main() -> std::process::ExitCode {
    pgmirror::stop::install_signal_handlers();
    pgmirror::sink::disable_memory_statistics();
    cli::run()
}
