//! The stop request (SIGINT/SIGTERM) and what it reaches: every layer may import this leaf
//! module, and it imports nothing of the crate but the error type.
//!
//! A stop is a flag plus the work the flag alone cannot do: a statement running on the
//! server (a slow `--where` scan, a COPY into a full pipe) is cancelled through its
//! connection's cancel key, and child processes (pg_dump, pg_restore, psql) are sent
//! SIGTERM. A signal handler may only store to an atomic, so that work is done by a
//! watcher thread that [`install_signal_handlers`] starts. A second signal exits at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// How often waits on the server and the watcher look at the flag.
const POLL: Duration = Duration::from_millis(50);
/// A cancel request that cannot reach its server in this time is given up.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every running operation to stop and clean up. Async-signal-safe: it only stores to
/// an atomic.
pub fn request_stop() {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// An error if a stop was requested, for the checkpoints of a run.
pub fn check_stop() -> Result<()> {
    if stop_requested() {
        Err(Error::new("", ErrorKind::Interrupted))
    } else {
        Ok(())
    }
}

/// Runs `work` until it finishes, a stop is requested, or `quit` (the run's own "another
/// part failed" flag) is raised: a worker waiting on a hung socket or a slow scan returns
/// within [`POLL`] instead of when the server answers.
pub async fn until_stopped<T>(quit: Option<&AtomicBool>, work: impl Future<Output = Result<T>>) -> Result<T> {
    let watch = async {
        loop {
            if stop_requested() {
                return Error::new("", ErrorKind::Interrupted);
            }
            if quit.is_some_and(|q| q.load(Ordering::Relaxed)) {
                return Error::new("", ErrorKind::Cancelled);
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let work = std::pin::pin!(work);
    let watch = std::pin::pin!(watch);
    match futures_util::future::select(work, watch).await {
        futures_util::future::Either::Left((done, _)) => done,
        futures_util::future::Either::Right((error, _)) => Err(error),
    }
}

type CancelAction = Arc<dyn Fn() + Send + Sync>;

/// What a stop must reach besides the flag: connections to cancel, processes to terminate.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, CancelAction>>,
    children: Mutex<HashMap<u64, u32>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Removes its entry from the registry when dropped: hold it as long as the connection or
/// the process lives.
#[must_use = "the registration ends when this is dropped"]
pub struct Registration {
    id: u64,
    child: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let registry = registry();
        if self.child {
            if let Ok(mut children) = registry.children.lock() {
                children.remove(&self.id);
            }
            return;
        }
        let cancel = registry
            .connections
            .lock()
            .ok()
            .and_then(|mut connections| connections.remove(&self.id));
        // A connection closed by a stop may still have a statement running on the server
        // (closing the socket does not end a scan that sends nothing), and the process may
        // exit before the watcher reaches it: cancel it here. On a thread of its own, since
        // this runs while a tokio runtime shuts down.
        if let Some(cancel) = cancel.filter(|_| stop_requested()) {
            let _ = std::thread::spawn(move || cancel()).join();
        }
    }
}

/// Registers how to cancel the statement running on one connection (its cancel key sent
/// over a new connection, as psql's Ctrl-C does). `cancel` runs on the watcher thread and
/// must not block for long: it is given [`CANCEL_TIMEOUT`].
pub fn register_connection(cancel: impl Fn() + Send + Sync + 'static) -> Registration {
    let registry = registry();
    let id = registry.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut connections) = registry.connections.lock() {
        connections.insert(id, Arc::new(cancel));
    }
    Registration { id, child: false }
}

/// Registers a child process to be sent SIGTERM on a stop.
pub fn register_child(pid: u32) -> Registration {
    let registry = registry();
    let id = registry.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut children) = registry.children.lock() {
        children.insert(id, pid);
    }
    if stop_requested() {
        terminate(pid);
    }
    Registration { id, child: true }
}

/// Sends one cancel request with the connection's cancel key, giving up after
/// [`CANCEL_TIMEOUT`]. For [`register_connection`] callbacks.
pub fn send_cancel<F>(request: F)
where
    F: Future<Output = std::result::Result<(), tokio_postgres::Error>>,
{
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    // A failed cancel changes nothing: the connection is closed when the process exits.
    // The timer must be made inside the runtime.
    let _ = runtime.block_on(async { tokio::time::timeout(CANCEL_TIMEOUT, request).await });
}

fn terminate(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the pid was our child's.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Cancels every registered statement and terminates every registered child, in parallel
/// so that one unreachable server does not delay the others.
fn reach_everything() {
    let registry = registry();
    if let Ok(children) = registry.children.lock() {
        children.values().copied().for_each(terminate);
    }
    let actions: Vec<CancelAction> = match registry.connections.lock() {
        Ok(connections) => connections.values().cloned().collect(),
        Err(_) => Vec::new(),
    };
    std::thread::scope(|scope| {
        for action in &actions {
            // One failing cancel must not keep the others from being sent.
            scope.spawn(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action())));
        }
    });
}

/// SIGINT and SIGTERM request a stop; a second one exits at once with status 2. A watcher
/// thread then cancels what is running on the server and terminates child processes.
pub fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(2) };
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let _ = std::thread::Builder::new()
        .name("pgmirror-stop".into())
        .spawn(|| {
            while !stop_requested() {
                std::thread::sleep(POLL);
            }
            reach_everything();
            // Children started after the first sweep (a race with the stop) are reached by
            // register_child itself; connections opened later are refused by check_stop.
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_removed_when_dropped() {
        let registration = register_connection(|| {});
        let id = registration.id;
        assert!(registry().connections.lock().unwrap().contains_key(&id));
        drop(registration);
        assert!(!registry().connections.lock().unwrap().contains_key(&id));

        let child = register_child(u32::MAX);
        let id = child.id;
        assert!(registry().children.lock().unwrap().contains_key(&id));
        drop(child);
        assert!(!registry().children.lock().unwrap().contains_key(&id));
    }

    #[test]
    fn until_stopped_returns_when_the_run_quits() {
        static QUIT: AtomicBool = AtomicBool::new(false);
        let raiser = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            QUIT.store(true, Ordering::Relaxed);
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hung = std::future::pending::<Result<()>>();
        let outcome = runtime.block_on(until_stopped(Some(&QUIT), hung));
        raiser.join().unwrap();
        assert!(matches!(outcome, Err(e) if e.is_cancelled()));
    }
}
