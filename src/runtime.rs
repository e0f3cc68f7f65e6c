//! Process start-up and shutdown. `run` binds one `SO_REUSEPORT` listener per worker
//! (all on the same port, even when the config says port 0), starts one OS thread per
//! worker, each pinned to a core and running its own monoio runtime on io_uring or,
//! when the kernel refuses it or config/env asks, on epoll. Workers report ready
//! before the `listening on` line is printed (tests read the port from it).
//!
//! The main thread then only handles signals and samples RSS: SIGTERM/SIGINT start a
//! drain (health answers 503, listeners close, idle sockets close, in-flight requests
//! get `shutdown_timeout_ms` to finish, exit 0); SIGHUP reloads the config file and
//! hands each worker the new snapshot for new connections.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::Canceller;
use monoio::net::TcpListener;

use crate::config::{Config, IoMode};
use crate::log;
use crate::peers::{self, Peers};
use crate::session::{Cmd, LocalSessions, SessionHub};
use crate::store::SpoolEntry;
use crate::turn::{ResumeCmd, TurnHub};
use crate::worker::{Shared, Snapshot, Worker, WorkerStats};

/// Each worker thread's stack. Reserved, not committed: only touched pages cost RSS.
/// Sized so that a parse at the largest `server.max_json_depth` (4,096) fits many
/// times over (sonic-rs recursion is a few hundred bytes a level).
const WORKER_STACK_BYTES: usize = 16 << 20;

/// Messages from the main thread to a worker.
pub enum Control {
    Drain,
    Reload(Arc<Snapshot>),
}

/// Which event loop the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Picks the driver: env `CLAWGATE_IO` over `server.io`; `auto` probes io_uring.
pub fn choose_driver(mode: IoMode) -> Result<Driver, String> {
    let mode = match std::env::var("CLAWGATE_IO").ok().as_deref() {
        None | Some("") => mode,
        Some("auto") => IoMode::Auto,
        Some("uring") | Some("io_uring") => IoMode::Uring,
        Some("epoll") => IoMode::Epoll,
        Some(other) => return Err(format!("CLAWGATE_IO={other} is not one of auto, uring, epoll")),
    };
    match mode {
        IoMode::Epoll => Ok(Driver::Epoll),
        IoMode::Uring if monoio::utils::detect_uring() => Ok(Driver::Uring),
        IoMode::Uring => Err("server.io = \"uring\" but the kernel refuses io_uring".into()),
        IoMode::Auto if monoio::utils::detect_uring() => Ok(Driver::Uring),
        IoMode::Auto => {
            // An old kernel, io_uring disabled (`kernel.io_uring_disabled`), or a syscall
            // filter answering EPERM (systemd `SystemCallErrorNumber=EPERM`).
            log::warn("io_uring is refused by the kernel or a syscall filter; using epoll");
            Ok(Driver::Epoll)
        }
    }
}

/// Binds `n` listeners sharing one address. With port 0 the first picks the port and
/// the others join it. Refuses to share a port another process already holds with
/// `SO_REUSEPORT` (which the kernel would otherwise allow silently).
pub fn bind_listeners(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, String> {
    if addr.port() != 0 {
        // A plain bind (no SO_REUSEPORT) fails if anyone listens on the port.
        let probe = socket(addr, false).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        drop(probe);
    }
    let first = socket(addr, true).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let actual = first.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
    let mut out = vec![first];
    for _ in 1..n {
        out.push(socket(actual, true).map_err(|e| format!("cannot listen on {actual}: {e}"))?);
    }
    Ok(out)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Runs the gateway until a shutdown signal; returns after the drain.
/// How often each worker hands memory its allocator holds free back to the OS.
const MEMORY_RELEASE_EVERY: Duration = Duration::from_secs(2);

/// The allocator's "return free memory to the OS" call for the calling thread, set by
/// the binary that chose the allocator (`set_memory_release`); `None`: never called.
static MEMORY_RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the call each worker makes every `MEMORY_RELEASE_EVERY` to give back memory
/// freed since (mimalloc: `mi_collect(false)`, which returns the pages freed long
/// enough ago, on the calling thread's heap). Without it, an allocator that purges
/// lazily keeps what a burst (a hostile stream's megabytes) freed until the thread
/// allocates again, and RSS stays at the burst's peak while the gateway is quiet.
/// Set once, before `run`; later calls are ignored.
pub fn set_memory_release(release: fn()) {
    let _ = MEMORY_RELEASE.set(release);
}

/// Calls the allocator's release every `MEMORY_RELEASE_EVERY` (see `set_memory_release`).
async fn memory_release_loop(release: fn()) {
    loop {
        monoio::time::sleep(MEMORY_RELEASE_EVERY).await;
        release();
    }
}

pub fn run(config: Config) -> Result<(), String> {
    // The CPUs the administrator gave the process (taskset, a cgroup cpuset): one worker
    // per allowed CPU by default, each pinned inside the set.
    let cpus = allowed_cpus();
    let workers = match config.server.workers {
        0 if !cpus.is_empty() => cpus.len(),
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let driver = choose_driver(config.server.io)?;
    let listeners = bind_listeners(config.server.listen, workers)?;
    let local = listeners.first().and_then(|l| l.local_addr().ok()).ok_or("no listener was bound")?;
    // `[metrics] listen`: its own listener, served by worker 0.
    let mut metrics_listener = match config.metrics.listen.filter(|_| config.metrics.enabled) {
        Some(addr) => {
            let l = socket(addr, false).map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))?;
            let bound = l.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
            log::always(&format!("metrics on http://{bound}/metrics"));
            Some(l)
        }
        None => None,
    };
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        // A write past the file-size limit (`ulimit -f`) fails with EFBIG like a full
        // disk (a failed turn, the store degraded) instead of killing the process.
        signal_hook::consts::SIGXFSZ,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    // The store first: a file that cannot be used stops the start-up, naming it.
    let store = crate::store::open(&config)?;
    let shared = Arc::new(Shared::new(workers, driver.as_str()));
    let snapshot = Arc::new(Snapshot::new(Arc::new(config))?);
    // The cores' mailboxes (`peers`): session commands, resume requests and spooled
    // webhook deliveries.
    let (session_peers, session_rxs) = peers::mailboxes::<Cmd>(workers);
    let (resume_peers, resume_rxs) = peers::mailboxes::<ResumeCmd>(workers);
    let mut resume_rxs = resume_rxs.into_iter();
    let (spool_peers, spool_rxs) = peers::mailboxes::<SpoolEntry>(workers);
    let mut spool_rxs = spool_rxs.into_iter();
    let (ready_tx, ready_rx) = flume::unbounded::<Result<(), String>>();
    let mut controls = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let pin = snapshot.config.server.pin_workers && !cpus.is_empty();
    for (id, (listener, session_rx)) in listeners.into_iter().zip(session_rxs).enumerate() {
        let (control_tx, control_rx) = flume::unbounded::<Control>();
        controls.push(control_tx);
        let args = WorkerArgs {
            id,
            listener,
            snapshot: snapshot.clone(),
            shared: shared.clone(),
            session_rx,
            session_peers: session_peers.for_worker(id),
            resume_rx: resume_rxs.next(),
            resume_peers: resume_peers.for_worker(id),
            spool_rx: spool_rxs.next(),
            spool_peers: spool_peers.for_worker(id),
            control_rx,
            ready: ready_tx.clone(),
            store: store.clone(),
            metrics_listener: if id == 0 { metrics_listener.take() } else { None },
        };
        let thread = std::thread::Builder::new()
            .name(format!("clawgate-w{id}"))
            // The guard behind the JSON depth limit (`json`): every parse is bounded
            // far below what this stack holds, so an overflow can only be a bug.
            .stack_size(WORKER_STACK_BYTES)
            .spawn({
                let cpu = cpus.get(id % cpus.len().max(1)).copied();
                move || {
                    if let (true, Some(cpu)) = (pin, cpu) {
                        let _ = monoio::utils::bind_to_cpu_set([cpu]);
                    }
                    run_worker(driver, args)
                }
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker died during start-up".into()),
        }
    }
    log::always(&format!(
        "listening on {}://{local} (workers={workers}, io={}, open_mode={})",
        if snapshot.server_tls.is_some() { "https" } else { "http" },
        driver.as_str(),
        snapshot.keys.open_mode()
    ));

    // systemd `Type=notify`: ready once every worker listens (a no-op without
    // $NOTIFY_SOCKET).
    let status = format!("listening on {local}");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    supervise(signals, &shared, &controls, &snapshot);
    let deadline = Instant::now() + Duration::from_millis(snapshot.config.server.shutdown_timeout_ms + 2000);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            #[allow(clippy::disallowed_methods)] // the main thread is not a worker
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    // The workers' handles are gone with their threads: dropping the last one lets
    // the storage thread commit what is queued and stop.
    drop(store);
    log::info("stopped");
    Ok(())
}

/// The main thread's loop: signals and RSS sampling. Returns when a drain begins.
fn supervise(
    mut signals: signal_hook::iterator::Signals,
    shared: &Shared,
    controls: &[flume::Sender<Control>],
    first: &Arc<Snapshot>,
) {
    let source = first.config.source.clone();
    let mut current = first.clone();
    loop {
        let rss = rss_bytes();
        shared.rss_bytes.store(rss, Ordering::Relaxed);
        crate::stats::set_rss_bytes(rss);
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGHUP => {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                    if let Some(snap) = reload(source.as_deref(), controls) {
                        current = snap;
                    }
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                }
                signal_hook::consts::SIGXFSZ => {}
                _ => {
                    // The health probes answer 503 at once; the listener keeps accepting
                    // for `drain_delay_ms` so a balancer sees the drain before connections
                    // are refused. A second signal cuts the delay short.
                    shared.draining.store(true, Ordering::Relaxed);
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                    let delay = Duration::from_millis(current.config.server.drain_delay_ms);
                    log::info(&format!(
                        "draining: health answers 503; the listener closes in {} ms",
                        delay.as_millis()
                    ));
                    let until = Instant::now() + delay;
                    'delay: while Instant::now() < until {
                        for sig in signals.pending() {
                            if sig != signal_hook::consts::SIGHUP && sig != signal_hook::consts::SIGXFSZ {
                                break 'delay;
                            }
                        }
                        #[allow(clippy::disallowed_methods)] // the main thread is not a worker
                        std::thread::sleep(
                            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
                        );
                    }
                    log::info("draining: no new connections; waiting for requests in flight");
                    shared.closing.store(true, Ordering::Relaxed);
                    for c in controls {
                        let _ = c.send(Control::Drain);
                    }
                    return;
                }
            }
        }
        #[allow(clippy::disallowed_methods)] // the main thread is not a worker
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reloads the config file and hands it to the workers; the new snapshot, or `None`
/// when the file is refused (the running config stays).
fn reload(source: Option<&std::path::Path>, controls: &[flume::Sender<Control>]) -> Option<Arc<Snapshot>> {
    let Some(path) = source else {
        log::info("SIGHUP: running on built-in defaults, nothing to reload");
        return None;
    };
    match Config::load(path) {
        Ok(cfg) => match Snapshot::new(Arc::new(cfg)) {
            Ok(snap) => {
                let snap = Arc::new(snap);
                log::set_filter(&snap.config.log);
                for c in controls {
                    let _ = c.send(Control::Reload(snap.clone()));
                }
                log::info(&format!(
                    "reloaded {} (listen address, workers and [store] apply at restart)",
                    path.display()
                ));
                Some(snap)
            }
            Err(e) => {
                log::warn(&format!("reload refused, keeping the running config: {e}"));
                None
            }
        },
        Err(e) => {
            log::warn(&format!("reload refused, keeping the running config: {e}"));
            None
        }
    }
}

/// The CPUs this process may run on, in order: `Cpus_allowed_list` of
/// `/proc/self/status` (what `taskset` or a cgroup cpuset allows, the same set
/// `sched_getaffinity` reports). Empty if unreadable.
pub fn allowed_cpus() -> Vec<usize> {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|list| parse_cpu_list(list.trim()))
        .unwrap_or_default()
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`); an unreadable part yields an
/// empty list (no pinning rather than a wrong one).
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => a.parse::<usize>().ok().zip(b.parse::<usize>().ok()),
            None => part.parse::<usize>().ok().map(|n| (n, n)),
        };
        match range {
            Some((a, b)) if a <= b && b - a < 4096 => out.extend(a..=b),
            _ => return Vec::new(),
        }
    }
    out
}

/// RSS from `/proc/self/statm` (pages * page size); 0 if unreadable.
pub fn rss_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

struct WorkerArgs {
    id: usize,
    listener: std::net::TcpListener,
    snapshot: Arc<Snapshot>,
    shared: Arc<Shared>,
    session_rx: flume::Receiver<Cmd>,
    session_peers: Peers<Cmd>,
    resume_rx: Option<flume::Receiver<ResumeCmd>>,
    resume_peers: Peers<ResumeCmd>,
    spool_rx: Option<flume::Receiver<SpoolEntry>>,
    spool_peers: Peers<SpoolEntry>,
    control_rx: flume::Receiver<Control>,
    ready: flume::Sender<Result<(), String>>,
    store: Arc<dyn crate::store::Store>,
    /// Worker 0 only: the `[metrics] listen` listener.
    metrics_listener: Option<std::net::TcpListener>,
}

fn run_worker(driver: Driver, args: WorkerArgs) {
    let ready = args.ready.clone();
    let built = match driver {
        Driver::Uring => {
            // COOP_TASKRUN: completions are run when the worker next enters the kernel
            // (it does at every park) instead of by an interrupt while it runs user
            // code; SINGLE_ISSUER: only this thread submits, which saves the ring's
            // locking. Kernels older than 6.0 refuse these flags: then a plain ring.
            let mut tuned = io_uring::IoUring::builder();
            tuned.setup_coop_taskrun().setup_single_issuer();
            let build = |urb: io_uring::Builder| {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .with_entries(4096)
                    .uring_builder(urb)
                    .build()
            };
            build(tuned).or_else(|_| build(io_uring::IoUring::builder())).map(|mut rt| rt.block_on(worker_main(args)))
        }
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(worker_main(args))),
    };
    if let Err(e) = built {
        let _ = ready.send(Err(format!("cannot start the {} runtime: {e}", driver.as_str())));
    }
}

async fn worker_main(args: WorkerArgs) {
    let WorkerArgs {
        id,
        listener,
        snapshot,
        shared,
        session_rx,
        session_peers,
        resume_rx,
        resume_peers,
        spool_rx,
        spool_peers,
        control_rx,
        ready,
        store,
        metrics_listener,
    } = args;
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {id}: cannot register the listener: {e}")));
            return;
        }
    };
    let count = shared.workers.get(id).map(|w| w.sessions.clone()).unwrap_or_default();
    let local = Rc::new(RefCell::new(LocalSessions::new(
        snapshot.config.sessions.clone(),
        session_peers.clone(),
        count,
        store,
    )));
    monoio::spawn(SessionHub::serve(local.clone(), session_rx.clone()));
    let hub = SessionHub::new(local, session_peers, session_rx);
    let worker = Rc::new(Worker::new(id, snapshot, shared.clone(), hub, TurnHub::new(resume_peers), spool_peers));
    if let Some(rx) = resume_rx {
        monoio::spawn(TurnHub::serve(worker.turns.resume.clone(), rx));
    }
    // Channel webhooks: every worker runs the turns of its conversations; worker 0
    // also sweeps the spool (deliveries left from before a restart) and sends the
    // outbox.
    if let Some(rx) = spool_rx {
        monoio::spawn(crate::webhook::run_spool(worker.clone(), rx));
    }
    if id == 0 {
        monoio::spawn(crate::webhook::sweep_loop(worker.clone()));
        monoio::spawn(crate::webhook::send_loop(worker.clone()));
    }
    let canceller = Canceller::new();
    let handle = canceller.handle();
    monoio::spawn(control_loop(worker.clone(), control_rx, canceller));
    // Rate-limit housekeeping: stale leases go back, idle clients are evicted.
    monoio::spawn(crate::ratelimit::sweep_loop(worker.limiter.clone()));
    if let Some(release) = MEMORY_RELEASE.get() {
        monoio::spawn(memory_release_loop(*release));
    }
    let _ = ready.send(Ok(()));

    if let Some(l) = metrics_listener {
        match TcpListener::from_std(l) {
            Ok(l) => {
                let (worker, handle) = (worker.clone(), handle.clone());
                monoio::spawn(async move {
                    crate::server::accept_loop(&l, &worker, handle, crate::server::Door::Metrics).await;
                });
            }
            Err(e) => log::error(&format!("cannot serve metrics.listen: {e}")),
        }
    }
    crate::server::accept_loop(&listener, &worker, handle, crate::server::Door::Main).await;
    drop(listener);
    let deadline = Instant::now() + Duration::from_millis(worker.snapshot().config.server.shutdown_timeout_ms);
    // WebSockets were told to close with 1001 (`worker.on_drain`); give them the same
    // deadline to finish their close handshake.
    while (shared.total(|w| &w.in_flight) > 0 || WorkerStats::get(&worker.stats().ws_clients) > 0)
        && Instant::now() < deadline
    {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn control_loop(worker: Rc<Worker>, rx: flume::Receiver<Control>, canceller: Canceller) {
    let mut canceller = Some(canceller);
    while let Ok(msg) = rx.recv_async().await {
        match msg {
            Control::Drain => {
                if let Some(c) = canceller.take() {
                    let _ = c.cancel();
                }
                worker.on_drain.drain_all();
            }
            Control::Reload(snap) => worker.reload(snap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-1"), [0, 1]);
        assert_eq!(parse_cpu_list("1"), [1]);
        assert_eq!(parse_cpu_list("0-2,8,10-11"), [0, 1, 2, 8, 10, 11]);
        assert!(parse_cpu_list("x").is_empty());
        assert!(parse_cpu_list("3-1").is_empty());
        assert!(parse_cpu_list("").is_empty());
    }
}
