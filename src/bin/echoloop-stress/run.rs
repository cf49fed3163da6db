//! One run: the loops on their threads, Ctrl-C, the status line while they
//! run, and the report once they are done.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Poll, Waker};

use crate::cli::Args;
use crate::counts::{Counts, Samples};
use crate::live::{show_status, Live};
use crate::plan::Plan;
use crate::report::{new_histogram, Report, Setup};
use crate::worker::{Outcome, Shared, Worker, WAKER};

/// Exit status for bad flags or a setup failure.
pub const EXIT_SETUP: i32 = crate::usage::EXIT_USAGE as i32;

/// The loops of a run before they start, with what the main thread keeps.
struct Loops {
    /// The loops, one per thread.
    workers: Vec<Worker>,
    /// Each loop's waker, for Ctrl-C.
    wakers: Vec<Waker>,
    /// Each loop's live counters, for the status line.
    lives: Vec<Arc<Live>>,
}

/// What every loop handed back, added up.
struct Totals {
    /// The counts.
    counts: Counts,
    /// The first error of each kind.
    samples: Samples,
    /// Connect latencies.
    connect_latency: Histogram<u64>,
    /// Whether Ctrl-C ended a loop.
    interrupted: bool,
}

/// Runs the loops, shows the status line, prints the report; returns the
/// exit status.
pub fn execute(args: &Args, plan: Plan, fd_limit: Option<u64>) -> i32 {
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new());
    let epoch = Instant::now();
    let loops = match make_loops(&plan, &shared, epoch) {
        Ok(loops) => loops,
        Err(message) => {
            eprintln!("echoloop-stress: {message}");
            return EXIT_SETUP;
        }
    };
    on_ctrl_c(&shared, loops.wakers);
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for worker in loops.workers {
        match spawn(worker, done_tx.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                eprintln!("echoloop-stress: spawn a loop thread: {e}");
                shared.stop.store(true, Ordering::SeqCst);
                return EXIT_SETUP;
            }
        }
    }
    drop(done_tx);
    show_status(&done_rx, handles.len(), &loops.lives, &shared, epoch);
    let (totals, crashed) = join(handles);
    let report = assemble(args, &plan, fd_limit, &shared, totals, epoch.elapsed());
    print(args, &report);
    if crashed {
        eprintln!("echoloop-stress: a loop thread panicked; the report is incomplete");
        return EXIT_SETUP;
    }
    report.exit_code()
}

/// One poll, waker and live counters per loop.
fn make_loops(plan: &Arc<Plan>, shared: &Arc<Shared>, epoch: Instant) -> Result<Loops, String> {
    let mut loops = Loops {
        workers: Vec::new(),
        wakers: Vec::new(),
        lives: Vec::new(),
    };
    for id in 0..plan.threads {
        let poll = Poll::new().map_err(|e| format!("create poll: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| format!("create waker: {e}"))?;
        loops.wakers.push(waker);
        let live = Arc::new(Live::default());
        loops.lives.push(Arc::clone(&live));
        loops.workers.push(Worker::new(
            id,
            Arc::clone(plan),
            Arc::clone(shared),
            live,
            poll,
            epoch,
        ));
    }
    Ok(loops)
}

/// Ctrl-C: ask every loop to stop (they then report); a second one quits.
fn on_ctrl_c(shared: &Arc<Shared>, wakers: Vec<Waker>) {
    let shared = Arc::clone(shared);
    if let Err(e) = ctrlc::set_handler(move || {
        if shared.stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        for waker in &wakers {
            let _ = waker.wake();
        }
    }) {
        eprintln!("echoloop-stress: warning: no Ctrl-C handler: {e}");
    }
}

/// Starts `worker` on its own thread; it says so on `done` when it ends.
fn spawn(worker: Worker, done: mpsc::Sender<()>) -> io::Result<JoinHandle<Outcome>> {
    thread::Builder::new()
        .name("echoloop-stress-loop".into())
        .spawn(move || {
            let outcome = worker.run();
            let _ = done.send(());
            outcome
        })
}

/// Waits for every loop and adds up what they hand back; also says
/// whether a loop thread panicked.
fn join(handles: Vec<JoinHandle<Outcome>>) -> (Totals, bool) {
    let mut totals = Totals {
        counts: Counts::default(),
        samples: Samples::default(),
        connect_latency: new_histogram(),
        interrupted: false,
    };
    let mut crashed = false;
    for handle in handles {
        match handle.join() {
            Ok(outcome) => {
                totals.counts.add(&outcome.counts);
                totals.samples.add(outcome.samples);
                let _ = totals.connect_latency.add(&outcome.connect_latency);
                totals.interrupted |= outcome.interrupted;
            }
            Err(_) => crashed = true,
        }
    }
    (totals, crashed)
}

/// The report of a finished run.
fn assemble(
    args: &Args,
    plan: &Plan,
    fd_limit: Option<u64>,
    shared: &Shared,
    totals: Totals,
    elapsed: Duration,
) -> Report {
    let latency = shared
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Report {
        setup: Setup {
            mode: plan.mode,
            addr: plan.addr.to_string(),
            connections: plan.connections,
            message_size: plan.message_size,
            pipeline: plan.pipeline,
            threads: plan.threads,
            rate: args.rate,
            messages: args.messages,
            duration: args.run_length(),
            max_failures: args.max_failures,
            fd_limit,
        },
        counts: totals.counts,
        samples: totals.samples,
        latency,
        connect_latency: totals.connect_latency,
        elapsed,
        interrupted: totals.interrupted,
    }
}

/// Prints the report on stdout, as text or JSON.
fn print(args: &Args, report: &Report) {
    let text = if args.json {
        report.json()
    } else {
        report.text()
    };
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}") {
        eprintln!("echoloop-stress: write the report: {e}");
    }
}
