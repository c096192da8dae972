//! Progress while the run goes: an indicatif bar when stderr is a terminal, else one plain
//! line per second (elapsed, replies so far, rate over the last second).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::args::{Plan, Stop};
use super::client::Shared;

/// A running progress display; [`Progress::finish`] removes it.
pub struct Progress {
    task: JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the display, or nothing with `--quiet`.
    pub fn start(plan: &Plan, shared: Arc<Shared>, start: Instant) -> Option<Progress> {
        if plan.args.quiet {
            return None;
        }
        if std::io::stderr().is_terminal() {
            let bar = bar(plan.stop);
            let task = tokio::spawn(draw_bar(bar.clone(), plan.stop, shared, start));
            Some(Progress {
                task,
                bar: Some(bar),
            })
        } else {
            let task = tokio::spawn(print_lines(shared, start));
            Some(Progress { task, bar: None })
        }
    }

    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(stop: Stop) -> ProgressBar {
    let (len, template) = match stop {
        Stop::Requests(n) => (
            n,
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} {msg}",
        ),
        Stop::Duration(d) => (d.as_millis() as u64, "{elapsed_precise} [{bar:40}] {msg}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn draw_bar(bar: ProgressBar, stop: Stop, shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut rate = Rate::new(start);
    loop {
        tick.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let per_sec = rate.update(done);
        match stop {
            Stop::Requests(_) => bar.set_position(done),
            Stop::Duration(_) => bar.set_position(start.elapsed().as_millis() as u64),
        }
        bar.set_message(format!("{done} replies, {per_sec:.0} req/s"));
    }
}

async fn print_lines(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await; // the first tick is immediate
    let mut rate = Rate::new(start);
    loop {
        tick.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let per_sec = rate.update(done);
        eprintln!(
            "seqd bench: {:.1} s, {done} replies, {per_sec:.0} req/s",
            start.elapsed().as_secs_f64()
        );
    }
}

/// Requests per second since the previous update.
struct Rate {
    at: Instant,
    done: u64,
    last: f64,
}

impl Rate {
    fn new(start: Instant) -> Rate {
        Rate {
            at: start,
            done: 0,
            last: 0.0,
        }
    }

    fn update(&mut self, done: u64) -> f64 {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64();
        if secs >= 0.5 {
            self.last = done.saturating_sub(self.done) as f64 / secs;
            (self.at, self.done) = (now, done);
        }
        self.last
    }
}
