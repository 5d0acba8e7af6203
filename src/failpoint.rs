//! Test-only failure injection, compiled into debug builds alone: `PGMIRROR_FAILPOINT=
//! POINT:OBJECT` makes the code at POINT panic while it works on OBJECT, so the tests can
//! show that a bug in one table's work ends the run cleanly. `POINT:OBJECT:abort` aborts
//! the process there instead, as a crash or SIGKILL would end it. Release builds have none.

/// Panics when `PGMIRROR_FAILPOINT` names this point and object (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(point: &str, object: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    // Called once per row: no allocation unless armed.
    let Some(armed) = ARMED.get_or_init(|| std::env::var("PGMIRROR_FAILPOINT").ok()) else {
        return;
    };
    let (armed, abort) = match armed.strip_suffix(":abort") {
        Some(armed) => (armed, true),
        None => (armed.as_str(), false),
    };
    if armed.split_once(':') == Some((point, object)) {
        if abort {
            std::process::abort();
        }
        panic!("failpoint {point} reached for {object}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &str, _object: &str) {}
