//! One run: the loops on their threads, Ctrl-C, the status line while they
//! run, and the report once they are done.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use mio::{Poll, Waker};

use crate::cli::Args;
use crate::counts::{Counts, Samples};
use crate::engine::{self, Core};
use crate::intervals::{hlog_comments, Intervals};
use crate::live::{show_status, Live, Look};
use crate::plan::{Plan, Transport};
use crate::report::{Report, Setup, StageFigures, Warmup};
use crate::shared::{Outcome, Shared, WAKER};
use crate::tcp::Tcp;
use crate::udp::Udp;
use crate::{html, plot, spectrum};

/// Exit status for bad flags or a setup failure.
pub const EXIT_SETUP: i32 = crate::usage::EXIT_USAGE as i32;

/// One loop before it starts: its core, and the engine of its transport.
enum Loop {
    /// A TCP loop.
    Tcp(Core, Tcp),
    /// A `--udp` loop.
    Udp(Core, Udp),
}

impl Loop {
    /// The loop on `core`, for the run's transport.
    fn new(core: Core) -> Self {
        match core.plan.transport {
            Transport::Tcp => {
                let tcp = Tcp::new(&core);
                Loop::Tcp(core, tcp)
            }
            Transport::Udp => {
                let udp = Udp::new(&core);
                Loop::Udp(core, udp)
            }
        }
    }

    /// Runs the loop to its end.
    fn run(self) -> Outcome {
        match self {
            Loop::Tcp(core, tcp) => engine::run(core, tcp),
            Loop::Udp(core, udp) => engine::run(core, udp),
        }
    }
}

/// The loops of a run before they start, with what the main thread keeps.
struct Loops {
    /// The loops, one per thread.
    workers: Vec<Loop>,
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
    /// Whether Ctrl-C ended a loop.
    interrupted: bool,
    /// `--warmup`: the counts when it ended.
    warmup: Option<Counts>,
    /// `--stages`: messages echoed in each stage.
    stages: Vec<u64>,
}

/// Runs the loops, shows the status line, prints the report; returns the
/// exit status.
pub fn execute(args: &Args, plan: Plan, fd_limit: Option<u64>) -> i32 {
    let mut outputs = match Outputs::open(args) {
        Ok(outputs) => outputs,
        Err(message) => {
            eprintln!("echoloop-stress: {message}");
            return EXIT_SETUP;
        }
    };
    let setup = make_setup(args, &plan, fd_limit);
    wait_for_start(args.start_at);
    let plan = Arc::new(plan);
    let shared = Arc::new(Shared::new(plan.threads as usize));
    let keep_intervals = Outputs::wants_intervals(args);
    shared
        .timeline
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keep_intervals(keep_intervals);
    if let Some(stages) = &plan.stages {
        let mut timeline = shared
            .timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        timeline.keep_stages(stages.0.len());
    }
    let (epoch, started_unix) = (Instant::now(), unix_now());
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
    let mut intervals = Intervals::new(
        plan.interval_ns,
        setup.series(),
        Outputs::wants_points(args),
    );
    let watched = Watch {
        done: &done_rx,
        handles,
        lives: &loops.lives,
        shared: &shared,
        epoch,
        started_unix,
    };
    let (totals, crashed) = outputs.watch(watched, &setup, &mut intervals);
    let mut report = assemble(args, setup, &shared, totals, epoch.elapsed(), started_unix);
    outputs.finish(&mut report, &intervals);
    if !print(args, &report) {
        return EXIT_SETUP;
    }
    if crashed {
        eprintln!("echoloop-stress: a loop thread panicked; the report is incomplete");
        return EXIT_SETUP;
    }
    report.exit_code()
}

/// The seconds since the Unix epoch now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `--start-at`: sleeps until that Unix time (at once if it is past).
fn wait_for_start(start_at: Option<f64>) {
    let Some(at) = start_at else { return };
    let wait = at - unix_now();
    if wait > 0.0 {
        eprintln!("echoloop-stress: waiting {wait:.3} s for --start-at {at}");
        thread::sleep(Duration::from_secs_f64(wait));
    }
}

/// A run in progress, as the main thread watches it.
struct Watch<'a> {
    /// One message per loop that ends.
    done: &'a mpsc::Receiver<()>,
    /// The loop threads.
    handles: Vec<JoinHandle<Outcome>>,
    /// Each loop's live counters.
    lives: &'a [Arc<Live>],
    /// What the loops share.
    shared: &'a Shared,
    /// Time zero of the run.
    epoch: Instant,
    /// The same instant, in seconds since the Unix epoch.
    started_unix: f64,
}

/// Where `--hlog`, `--plot`, `--plot-percentiles` and `--html` go, opened
/// (and so proved writable, as `--output` is) before any connection is
/// made. One rule for
/// all: a file that could not be written is named in the report and makes
/// the exit status non-zero ([`EXIT_OUTPUT`](crate::report::EXIT_OUTPUT));
/// two outputs may not share a path.
struct Outputs {
    /// `--hlog`: its path and the open file.
    hlog: Option<(PathBuf, BufWriter<File>)>,
    /// The files drawn once the run is over (created empty at start), in
    /// the order they are written: the page last, so that it can name the
    /// others that failed.
    drawn: Vec<(Drawn, PathBuf)>,
}

/// An output file written once the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drawn {
    /// `--plot`: the run over time.
    Plot,
    /// `--plot-percentiles`: the latency distribution.
    Percentiles,
    /// `--html`: the page.
    Html,
}

impl Drawn {
    /// The flag that asks for it.
    fn flag(self) -> &'static str {
        match self {
            Drawn::Plot => "--plot",
            Drawn::Percentiles => "--plot-percentiles",
            Drawn::Html => "--html",
        }
    }

    /// Its contents, for `report` whose intervals are `intervals`.
    fn render(self, report: &Report, intervals: &Intervals) -> Result<String, String> {
        match self {
            Drawn::Plot => plot::svg(&report.setup, &intervals.points),
            Drawn::Percentiles => spectrum::of_run(&report.setup, &report.rec),
            Drawn::Html => html::page(report, &intervals.points),
        }
    }
}

impl Outputs {
    /// Whether the run must keep its intervals: for the interval log, and
    /// for the pictures over time (`--plot`, and the page's).
    fn wants_intervals(args: &Args) -> bool {
        args.hlog.is_some() || Outputs::wants_points(args)
    }

    /// Whether the run must keep a point per interval for a picture.
    fn wants_points(args: &Args) -> bool {
        args.plot.is_some() || args.html.is_some()
    }

    /// Creates the output files; the error names the flag, the path and the
    /// OS's words.
    fn open(args: &Args) -> Result<Outputs, String> {
        let drawn: Vec<(Drawn, PathBuf)> = [
            (Drawn::Plot, &args.plot),
            (Drawn::Percentiles, &args.plot_percentiles),
            (Drawn::Html, &args.html),
        ]
        .into_iter()
        .filter_map(|(what, path)| path.clone().map(|p| (what, p)))
        .collect();
        let mut files: Vec<(&str, &PathBuf)> = [("--hlog", &args.hlog), ("--output", &args.output)]
            .into_iter()
            .filter_map(|(flag, path)| Some((flag, path.as_ref()?)))
            .collect();
        files.extend(drawn.iter().map(|(what, path)| (what.flag(), path)));
        for (i, (flag, path)) in files.iter().enumerate() {
            if let Some((other, _)) = files[i + 1..]
                .iter()
                .find(|(_, p)| resolved(p) == resolved(path))
            {
                return Err(format!(
                    "{flag} and {other} are the same file ({}): each output needs its own",
                    path.display()
                ));
            }
        }
        let create = |flag: &str, path: &PathBuf| {
            File::create(path).map_err(|e| format!("{flag} {}: create: {e}", path.display()))
        };
        let hlog = match &args.hlog {
            Some(path) => Some((path.clone(), BufWriter::new(create("--hlog", path)?))),
            None => None,
        };
        for (what, path) in &drawn {
            create(what.flag(), path)?;
        }
        if let Some(path) = &args.output {
            create("--output", path)?;
        }
        Ok(Outputs { hlog, drawn })
    }

    /// Shows the status line and writes the interval log while the loops
    /// run; then joins them (see [`join`]).
    fn watch(&mut self, w: Watch<'_>, setup: &Setup, intervals: &mut Intervals) -> (Totals, bool) {
        let mut serializer = V2DeflateSerializer::new();
        let mut log = None;
        if let Some((path, file)) = self.hlog.as_mut() {
            let mut builder = IntervalLogWriterBuilder::new();
            for comment in hlog_comments(setup) {
                builder.add_comment(&comment);
            }
            // The log's time zero is the measurement's start (after --warmup).
            let warmup = setup.warmup.unwrap_or_default();
            let start = UNIX_EPOCH + Duration::from_secs_f64(w.started_unix) + warmup;
            builder
                .with_start_time(start)
                .with_base_time(start)
                .with_max_value_divisor(1e6);
            match builder.begin_log_with(file, &mut serializer) {
                Ok(writer) => log = Some(writer),
                Err(e) => intervals.failed = Some(format!("{}: write: {e}", path.display())),
            }
        }
        let running = w.handles.len();
        let udp = setup.mode.udp();
        let warmup = setup.warmup.unwrap_or_default();
        let phase = |at: Duration| phase_at(setup, warmup, at);
        show_status(
            w.done,
            running,
            w.lives,
            w.shared,
            w.epoch,
            Look { udp, phase: &phase },
            &mut || {
                intervals.drain(w.shared, None, log.as_mut());
            },
        );
        let joined = join(w.handles);
        let measured = w
            .epoch
            .elapsed()
            .saturating_sub(setup.warmup.unwrap_or_default());
        let end_ns = u64::try_from(measured.as_nanos()).unwrap_or(u64::MAX);
        intervals.drain(w.shared, Some(end_ns), log.as_mut());
        drop(log);
        if let Some((_, file)) = self.hlog.as_mut() {
            if let Err(e) = file.flush() {
                intervals.failed.get_or_insert(format!("flush: {e}"));
            }
        }
        joined
    }

    /// Writes the files drawn at the end; adds what could not be written
    /// to `report.output_errors`, each `flag path: why` (also said on
    /// stderr).
    fn finish(&self, report: &mut Report, intervals: &Intervals) {
        if let (Some((path, _)), Some(why)) = (&self.hlog, &intervals.failed) {
            report
                .output_errors
                .push(format!("--hlog {}: {why}", path.display()));
        }
        for &(what, ref path) in &self.drawn {
            let written = what
                .render(report, intervals)
                .and_then(|text| std::fs::write(path, text).map_err(|e| format!("write: {e}")));
            if let Err(e) = written {
                report
                    .output_errors
                    .push(format!("{} {}: {e}", what.flag(), path.display()));
            }
        }
        for error in &report.output_errors {
            eprintln!("echoloop-stress: {error}");
        }
    }
}

/// `path` as the file system resolves it (links followed, `.` and `..`
/// gone), so that two spellings of one file compare equal; as given if
/// its folder does not exist.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(full) = std::fs::canonicalize(path) {
        return full;
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(folder), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
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
        let (plan, shared) = (Arc::clone(plan), Arc::clone(shared));
        loops
            .workers
            .push(Loop::new(Core::new(id, plan, shared, live, poll, epoch)));
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
fn spawn(worker: Loop, done: mpsc::Sender<()>) -> io::Result<JoinHandle<Outcome>> {
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
        interrupted: false,
        warmup: None,
        stages: Vec::new(),
    };
    let mut crashed = false;
    for handle in handles {
        match handle.join() {
            Ok(outcome) => {
                totals.counts.add(&outcome.counts);
                totals.samples.add(&outcome.samples);
                totals.interrupted |= outcome.interrupted;
                totals.stages.resize(outcome.stages.len(), 0);
                for (total, n) in totals.stages.iter_mut().zip(&outcome.stages) {
                    *total += n;
                }
                if let Some(warm) = &outcome.warmup {
                    totals.warmup.get_or_insert_with(Counts::default).add(warm);
                }
            }
            Err(_) => crashed = true,
        }
    }
    (totals, crashed)
}

/// The settings of the run, as the report repeats them.
fn make_setup(args: &Args, plan: &Plan, fd_limit: Option<u64>) -> Setup {
    Setup {
        mode: plan.kind(),
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
        max_loss: (plan.transport == Transport::Udp).then_some(plan.max_loss),
        warmup: args.warmup,
        stages: plan.stages.clone(),
    }
}

/// The report of a finished run.
fn assemble(
    args: &Args,
    setup: Setup,
    shared: &Shared,
    totals: Totals,
    elapsed: Duration,
    started_unix: f64,
) -> Report {
    let timeline = shared
        .timeline
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let rec = timeline.total.clone();
    let mut stages = setup
        .stages
        .as_ref()
        .map_or_else(Vec::new, StageFigures::empty);
    for ((figures, messages), rtt) in stages.iter_mut().zip(&totals.stages).zip(&timeline.stages) {
        figures.messages = *messages;
        figures.rtt.clone_from(rtt);
    }
    drop(timeline);
    let mode = setup.mode.workload;
    let (counts, warmup) = match &totals.warmup {
        Some(warm) => (
            totals.counts.less_warmup(warm),
            Some(Warmup {
                messages: warm.messages,
                bytes: warm.bytes,
                errors: warm.errors(mode),
            }),
        ),
        None => (totals.counts, None),
    };
    Report {
        setup,
        counts,
        warmup,
        stages,
        samples: totals.samples,
        rec,
        percentiles: args.percentiles.0.clone(),
        elapsed,
        started_unix,
        interrupted: totals.interrupted,
        merged_runs: 1,
        output_errors: Vec::new(),
    }
}

/// Prints the report on stdout (or into `--output`), as text or JSON;
/// false (said on stderr) when it could not be written.
fn print(args: &Args, report: &Report) -> bool {
    let text = if args.json {
        report.json()
    } else {
        report.text()
    };
    let text = format!("{text}\n");
    let Some(path) = &args.output else {
        return crate::output::to_stdout("echoloop-stress", text.as_bytes());
    };
    match std::fs::write(path, text) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("echoloop-stress: --output {}: write: {e}", path.display());
            false
        }
    }
}

/// What the status line says the run is doing `at` its start: in the
/// warm-up, or in which stage with how many connections active.
fn phase_at(setup: &Setup, warmup: Duration, at: Duration) -> Option<String> {
    if at < warmup {
        return Some("warm-up (not counted)".into());
    }
    let stages = setup.stages.as_ref()?;
    let ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
    Some(format!(
        "stage {}/{}: {} connections active",
        stages.index_at(ns) + 1,
        stages.0.len(),
        crate::report::group(stages.target_at(ns))
    ))
}
