//! Test-only failure injection, compiled into debug builds alone: `PGMIRROR_FAILPOINT=
//! POINT:OBJECT` makes the code at POINT panic while it works on OBJECT, so the tests can
//! show that a bug in one table's work ends the run cleanly. `POINT:OBJECT:abort` aborts
//! the process there instead, as a crash or SIGKILL would end it; `POINT:OBJECT:pause`
//! sleeps there for a second, so a test can make something happen in between. Release
//! builds have none.

/// Panics when `PGMIRROR_FAILPOINT` names this point and object (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(point: &str, object: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    // Called once per row: no allocation unless armed.
    let Some(armed) = ARMED.get_or_init(|| std::env::var("PGMIRROR_FAILPOINT").ok()) else {
        return;
    };
    let (armed, action) = match armed.rsplit_once(':') {
        Some((armed, action @ ("abort" | "pause"))) => (armed, action),
        _ => (armed.as_str(), "panic"),
    };
    if armed.split_once(':') == Some((point, object)) {
        match action {
            "abort" => std::process::abort(),
            "pause" => std::thread::sleep(std::time::Duration::from_secs(1)),
            _ => panic!("failpoint {point} reached for {object}"),
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &str, _object: &str) {}
