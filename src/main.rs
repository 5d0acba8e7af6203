//! The pgmirror command: parse, run, map the outcome to an exit code.

mod cli;

fn main() -> std::process::ExitCode {
    install_stop_handler();
    pgmirror::sink::disable_memory_statistics();
    cli::run()
}

/// SIGINT and SIGTERM ask the run to stop cleanly (partial files removed) instead of
/// killing it mid-write.
fn install_stop_handler() {
    extern "C" fn on_signal(_: libc::c_int) {
        pgmirror::pipeline::request_stop();
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
