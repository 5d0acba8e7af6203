//! The stop request (SIGINT/SIGTERM) and what it reaches: every layer may import this leaf
//! module, and it imports nothing of the crate but the error type.
//!
//! A stop is a flag plus the work the flag alone cannot do: a statement running on the
//! server (a slow `--where` scan, a COPY into a full pipe) is cancelled through its
//! connection's cancel key, and child processes (pg_dump, pg_restore, psql) are sent
//! SIGINT, then SIGTERM. A signal handler may only store to an atomic, so that work is done
//! by a watcher thread that [`install_signal_handlers`] starts. A second signal exits at
//! once. The flag is never cleared: a stop is for the rest of the process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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

/// Sends one cancel request; true when the server could be reached.
type CancelAction = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a stop must reach besides the flag: connections to cancel, processes to stop.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, CancelAction>>,
    /// How the stop's sweep went for each connection it reached.
    swept: Mutex<HashMap<u64, Sweep>>,
    sweep_progressed: Condvar,
    children: Mutex<HashMap<u64, u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    InFlight,
    Reached,
    /// The server could not be reached: a second try would only wait again.
    Unreachable,
}

impl Registry {
    fn set_swept(&self, id: u64, state: Sweep) {
        if let Ok(mut swept) = self.swept.lock() {
            swept.insert(id, state);
        }
        self.sweep_progressed.notify_all();
    }

    /// The sweep's outcome for `id` once it is no longer in flight (waiting at most
    /// [`CANCEL_TIMEOUT`]), removing it; None when the sweep did not reach `id`.
    fn take_sweep(&self, id: u64) -> Option<Sweep> {
        let swept = self.swept.lock().ok()?;
        let (mut swept, _) = self
            .sweep_progressed
            .wait_timeout_while(swept, CANCEL_TIMEOUT, |swept| {
                swept.get(&id) == Some(&Sweep::InFlight)
            })
            .ok()?;
        swept.remove(&id)
    }
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
        // (closing the socket does not end a scan that sends nothing, nor a CREATE INDEX
        // started after the watcher's sweep), and the process may exit before the watcher
        // reaches it: cancel it here, once the sweep's own cancel is done, unless that one
        // found the server unreachable. On a thread of its own, since this runs while a
        // tokio runtime shuts down.
        let unreachable = registry.take_sweep(self.id) == Some(Sweep::Unreachable);
        if let Some(cancel) = cancel.filter(|_| stop_requested() && !unreachable) {
            let _ = std::thread::spawn(move || cancel()).join();
        }
    }
}

/// Registers how to cancel the statement running on one connection (its cancel key sent
/// over a new connection, as psql's Ctrl-C does). `cancel` returns whether the server
/// could be reached; it must not block for long ([`send_cancel`] gives it
/// [`CANCEL_TIMEOUT`]).
pub fn register_connection(cancel: impl Fn() -> bool + Send + Sync + 'static) -> Registration {
    let registry = registry();
    let id = registry.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut connections) = registry.connections.lock() {
        connections.insert(id, Arc::new(cancel));
    }
    Registration { id, child: false }
}

/// Registers a child process to be stopped on a stop request (see [`cancel_everything`]).
pub fn register_child(pid: u32) -> Registration {
    let registry = registry();
    let id = registry.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut children) = registry.children.lock() {
        children.insert(id, pid);
    }
    if stop_requested() {
        signal_child(pid, libc::SIGINT);
    }
    Registration { id, child: true }
}

/// Sends one cancel request with the connection's cancel key, giving up after
/// [`CANCEL_TIMEOUT`]; true when the server answered. For [`register_connection`].
pub fn send_cancel<F>(request: F) -> bool
where
    F: Future<Output = std::result::Result<(), tokio_postgres::Error>>,
{
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return false;
    };
    // The timer must be made inside the runtime.
    let sent = runtime.block_on(async { tokio::time::timeout(CANCEL_TIMEOUT, request).await });
    matches!(sent, Ok(Ok(())))
}

fn signal_child(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; the pid is a registered child's,
        // and a child is unregistered as soon as it has been waited for.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn registered_children() -> Vec<u32> {
    match registry().children.lock() {
        Ok(children) => children.values().copied().collect(),
        Err(_) => Vec::new(),
    }
}

/// How long a child has to end after SIGINT before it gets SIGTERM.
const CHILD_GRACE: Duration = Duration::from_secs(1);

/// Cancels every registered statement and stops every registered child, in parallel so
/// that one unreachable server does not delay the others. Children get SIGINT first: psql
/// cancels its running statement only on SIGINT (on SIGTERM it dies and leaves the
/// statement running), pg_dump and pg_restore handle both; whatever still runs after
/// [`CHILD_GRACE`] gets SIGTERM. Library users who stop a run without the signal handlers
/// call this after [`request_stop`]; a stop is for the rest of the process.
pub fn cancel_everything() {
    let registry = registry();
    registered_children()
        .into_iter()
        .for_each(|pid| signal_child(pid, libc::SIGINT));
    let actions: Vec<(u64, CancelAction)> = match registry.connections.lock() {
        Ok(connections) => connections
            .iter()
            .map(|(id, action)| (*id, action.clone()))
            .collect(),
        Err(_) => Vec::new(),
    };
    for (id, _) in &actions {
        registry.set_swept(*id, Sweep::InFlight);
    }
    let had_children = !registered_children().is_empty();
    std::thread::scope(|scope| {
        for (id, action) in &actions {
            scope.spawn(move || {
                // One failing cancel must not keep the others from being sent.
                let reached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action()));
                let state = if matches!(reached, Ok(true)) {
                    Sweep::Reached
                } else {
                    Sweep::Unreachable
                };
                registry.set_swept(*id, state);
            });
        }
        if had_children {
            scope.spawn(|| {
                std::thread::sleep(CHILD_GRACE);
                registered_children()
                    .into_iter()
                    .for_each(|pid| signal_child(pid, libc::SIGTERM));
            });
        }
    });
}

/// SIGINT and SIGTERM request a stop; a second one exits at once with status 2. A watcher
/// thread then cancels what is running on the server and stops child processes.
pub fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            exit_at_once();
        }
    }
    set_handler(&[libc::SIGINT, libc::SIGTERM], on_signal);
    spawn_stop_watcher();
}

static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
static RELOAD_REQUESTED: AtomicBool = AtomicBool::new(false);

/// For a long-running service (`pgmirror serve`): SIGINT and SIGTERM ask it to shut down
/// (stop scheduling, give running work its grace period) without stopping that work; a
/// second one requests the stop at once, a third exits. SIGHUP asks for a reload.
pub fn install_service_signal_handlers() {
    extern "C" fn on_shutdown(_: libc::c_int) {
        if SHUTDOWN_REQUESTED.swap(true, Ordering::SeqCst) && STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            exit_at_once();
        }
    }
    extern "C" fn on_reload(_: libc::c_int) {
        RELOAD_REQUESTED.store(true, Ordering::SeqCst);
    }
    set_handler(&[libc::SIGINT, libc::SIGTERM], on_shutdown);
    set_handler(&[libc::SIGHUP], on_reload);
    spawn_stop_watcher();
}

pub fn shutdown_requested() -> bool {
    SHUTDOWN_REQUESTED.load(Ordering::SeqCst)
}

/// Whether a reload was asked for since the last call.
pub fn take_reload_request() -> bool {
    RELOAD_REQUESTED.swap(false, Ordering::SeqCst)
}

/// Async-signal-safe: write and _exit only.
fn exit_at_once() {
    const NOTICE: &[u8] = b"pgmirror: stopped at once (second signal); partial files may remain\n";
    // SAFETY: write and _exit are async-signal-safe; NOTICE is a static buffer.
    unsafe {
        libc::write(libc::STDERR_FILENO, NOTICE.as_ptr().cast(), NOTICE.len());
        libc::_exit(2);
    }
}

fn set_handler(signals: &[libc::c_int], handler: extern "C" fn(libc::c_int)) {
    let handler = handler as libc::sighandler_t;
    for &signal in signals {
        // SAFETY: the handlers only touch atomics and call write and _exit, all
        // async-signal-safe.
        unsafe {
            libc::signal(signal, handler);
        }
    }
}

/// Once a stop is requested, cancels what runs on the server and stops child processes.
/// One watcher per process, however often handlers are installed.
fn spawn_stop_watcher() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(start_stop_watcher);
}

fn start_stop_watcher() {
    let _ = std::thread::Builder::new()
        .name("pgmirror-stop".into())
        .spawn(|| {
            while !stop_requested() {
                std::thread::sleep(POLL);
            }
            // Connections opened after this sweep are refused by connect's check_stop, and
            // children started after it are signalled by register_child; a statement begun
            // on an existing connection after it is cancelled when its connection closes.
            cancel_everything();
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_removed_when_dropped() {
        let registration = register_connection(|| true);
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
