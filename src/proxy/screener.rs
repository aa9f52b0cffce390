//! The proxy's screening workers: in `monitor` mode the detection engine screens tool arguments,
//! results, resources and prompts here, on dedicated OS threads at the lowest CPU priority
//! (nice 19), not on the runtime that relays the traffic, so screening takes only the CPU the
//! relay leaves. Jobs wait in a bounded backlog (`[proxy] screen_backlog`); when it is full the
//! relay waits for room (backpressure) rather than drop a text unscreened. Findings go on to the
//! upstream's write-behind [`Queue`]. [`Screener::drain`] (clean shutdown) screens everything
//! still waiting before the writers stop. Counters: [`Screener::stats`], and one log line at
//! shutdown.
//!
//! May import: `crate::proxy`, `crate::service`; tokio, libc.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::proxy::worker::{Job, Queue};
use crate::service::IncidentService;
use crate::service::guard::TrafficInput;

enum Msg {
    Screen(TrafficInput, Queue),
    Stop,
}

#[derive(Default)]
struct Counters {
    backlog: AtomicUsize,
    screened: AtomicU64,
    findings: AtomicU64,
    waited: AtomicU64,
    inline: AtomicU64,
}

/// A snapshot of the screening counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScreenStats {
    /// Jobs handed over and not yet screened.
    pub backlog: usize,
    /// Jobs screened (by the workers or, after shutdown, inline).
    pub screened: u64,
    /// Screened jobs that had findings (queued for the store).
    pub findings: u64,
    /// Times the relay had to wait because the backlog was full.
    pub waited: u64,
    /// Jobs screened on the caller because the workers had stopped.
    pub inline: u64,
}

/// The handle the relay submits to (cheap to clone).
#[derive(Clone)]
pub struct Screener {
    tx: mpsc::Sender<Msg>,
    rx: Arc<Mutex<mpsc::Receiver<Msg>>>,
    svc: Arc<IncidentService>,
    counters: Arc<Counters>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    stopped: Arc<AtomicBool>,
    bound: usize,
}

/// Lowers the calling thread to nice 19 (Linux: the nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let r = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
        };
        if r != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the screening thread's priority; it runs at normal priority"
            );
        }
    }
}

fn screen_one(svc: &IncidentService, counters: &Counters, input: TrafficInput, queue: &Queue) {
    let screen = svc.screen_traffic(&input);
    if !screen.findings.is_empty() {
        counters.findings.fetch_add(1, Ordering::Relaxed);
        queue.push(Job::Traffic {
            input,
            screen: Some(screen),
        });
    }
    counters.screened.fetch_add(1, Ordering::Relaxed);
    counters.backlog.fetch_sub(1, Ordering::Relaxed);
}

impl Screener {
    /// Starts `threads` screening threads (0: one per CPU) over a backlog of `bound` jobs.
    pub fn spawn(svc: Arc<IncidentService>, bound: usize, threads: usize) -> Self {
        let me = Self::new(svc, bound);
        me.start(threads);
        me
    }

    /// A backlog of `bound` jobs with no thread yet: jobs wait (and past `bound`, so does the
    /// caller) until [`Self::start`].
    pub fn new(svc: Arc<IncidentService>, bound: usize) -> Self {
        let bound = bound.max(1);
        let (tx, rx) = mpsc::channel(bound);
        Self {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            svc,
            counters: Arc::new(Counters::default()),
            threads: Arc::new(Mutex::new(Vec::new())),
            stopped: Arc::new(AtomicBool::new(false)),
            bound,
        }
    }

    /// Starts `threads` screening threads (0: one per CPU).
    pub fn start(&self, threads: usize) {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let me = self;
        let mut handles = Vec::new();
        for i in 0..threads {
            let rx = me.rx.clone();
            let svc = me.svc.clone();
            let counters = me.counters.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-screen-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // One thread waits on the channel at a time; the others wait for the
                        // lock. A thread finishes its job before it takes the next message, so
                        // when every thread has taken its Stop, everything before is screened.
                        let msg = match rx.lock() {
                            Ok(mut g) => g.blocking_recv(),
                            Err(_) => None,
                        };
                        match msg {
                            Some(Msg::Screen(input, queue)) => {
                                screen_one(&svc, &counters, input, &queue)
                            }
                            Some(Msg::Stop) | None => return,
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a screening thread");
                }
            }
        }
        if handles.is_empty() {
            tracing::error!(
                "no screening thread started: monitor-mode texts wait in the backlog until shutdown"
            );
        }
        if let Ok(mut g) = me.threads.lock() {
            g.extend(handles);
        }
    }

    /// Hands `input` to the workers; its findings go to `queue`. Waits while the backlog is
    /// full; screens it here when the workers have stopped (after [`Self::drain`]).
    pub async fn submit(&self, input: TrafficInput, queue: &Queue) {
        self.counters.backlog.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Screen(input, queue.clone());
        let back = if self.stopped.load(Ordering::Acquire) {
            Some(msg)
        } else {
            match self.tx.try_send(msg) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    let w = self.counters.waited.fetch_add(1, Ordering::Relaxed) + 1;
                    if w.is_power_of_two() {
                        tracing::warn!(
                            waited = w,
                            backlog = self.bound,
                            "guard proxy screening backlog full: the relay waits for the screening threads"
                        );
                    }
                    // The wait runs on its own task: if the caller's future is dropped (the
                    // agent went away), the text is still handed over, or screened there.
                    let (tx, svc, counters) =
                        (self.tx.clone(), self.svc.clone(), self.counters.clone());
                    let waiting = tokio::spawn(async move {
                        if let Err(mpsc::error::SendError(Msg::Screen(input, queue))) =
                            tx.send(msg).await
                        {
                            counters.inline.fetch_add(1, Ordering::Relaxed);
                            screen_one(&svc, &counters, input, &queue);
                        }
                    });
                    let _ = waiting.await;
                    None
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => Some(msg),
            }
        };
        if let Some(Msg::Screen(input, queue)) = back {
            self.counters.inline.fetch_add(1, Ordering::Relaxed);
            screen_one(&self.svc, &self.counters, input, &queue);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ScreenStats {
        let c = &self.counters;
        ScreenStats {
            backlog: c.backlog.load(Ordering::Relaxed),
            screened: c.screened.load(Ordering::Relaxed),
            findings: c.findings.load(Ordering::Relaxed),
            waited: c.waited.load(Ordering::Relaxed),
            inline: c.inline.load(Ordering::Relaxed),
        }
    }

    /// Screens everything still in the backlog, stops the threads, and logs the counters.
    /// Later submissions are screened on the caller. Returns the counters after draining.
    pub async fn drain(&self) -> ScreenStats {
        let t0 = Instant::now();
        self.stopped.store(true, Ordering::Release);
        let at_stop = self.stats().backlog;
        let handles: Vec<_> = self
            .threads
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default();
        for _ in 0..handles.len() {
            if self.tx.send(Msg::Stop).await.is_err() {
                break;
            }
        }
        let rx = self.rx.clone();
        let svc = self.svc.clone();
        let counters = self.counters.clone();
        let joined = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
            // Close the channel and screen what arrived after the Stops.
            if let Ok(mut g) = rx.lock() {
                g.close();
                while let Ok(m) = g.try_recv() {
                    if let Msg::Screen(input, queue) = m {
                        counters.inline.fetch_add(1, Ordering::Relaxed);
                        screen_one(&svc, &counters, input, &queue);
                    }
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "screening threads did not stop cleanly");
        }
        let s = self.stats();
        tracing::info!(
            backlog_at_shutdown = at_stop,
            drain_ms = t0.elapsed().as_millis() as u64,
            screened = s.screened,
            findings = s.findings,
            waited = s.waited,
            inline = s.inline,
            "guard proxy screening drained"
        );
        s
    }
}
