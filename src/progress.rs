//! Progress of a running ingest: a bar on a terminal (objects, findings, bytes, rate, ETA),
//! periodic log lines on stderr otherwise (cron, CI, Kubernetes logs).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gdq_ingest::progress::{Progress, ProgressSnapshot};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::choices::ProgressChoice;

/// A display running on its own thread until [`ProgressDisplay::finish`].
pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Mode {
    Bar,
    Log,
}

fn describe(s: &ProgressSnapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!(
        "{} findings, {:.1}/{:.1} MB, {:.0} findings/s",
        s.findings,
        s.bytes_done as f64 / 1e6,
        s.bytes_total as f64 / 1e6,
        s.findings as f64 / secs
    )
}

impl ProgressDisplay {
    /// Starts the display `mode` asks for.
    pub fn start(mode: ProgressChoice, progress: Arc<Progress>) -> ProgressDisplay {
        let mode = match mode {
            ProgressChoice::Auto if std::io::stderr().is_terminal() => Some(Mode::Bar),
            ProgressChoice::Auto | ProgressChoice::Log => Some(Mode::Log),
            ProgressChoice::Bar => Some(Mode::Bar),
            ProgressChoice::None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = mode.map(|mode| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || match mode {
                Mode::Bar => bar(&progress, &stop),
                Mode::Log => log(&progress, &stop),
            })
        });
        ProgressDisplay { stop, thread }
    }

    /// Stops the display and clears the bar.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bar(progress: &Progress, stop: &AtomicBool) {
    let started = Instant::now();
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} objects  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !stop.load(Ordering::Relaxed) {
        let s = progress.snapshot();
        bar.set_length(s.objects_total);
        bar.set_position(s.objects_done);
        bar.set_message(describe(&s, started.elapsed()));
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

fn log(progress: &Progress, stop: &AtomicBool) {
    let started = Instant::now();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= Duration::from_secs(10) {
            let s = progress.snapshot();
            eprintln!(
                "gdq: progress: {}/{} objects, {}",
                s.objects_done,
                s.objects_total,
                describe(&s, started.elapsed())
            );
            last = Instant::now();
        }
    }
}
