//! What the command-line tool says on stderr besides errors: notes (`-v` only), warnings and
//! summaries (hidden by `-q`), and progress of long operations.
//!
//! Progress: on a terminal, an `indicatif` bar (or a spinner when the amount of work is not
//! known) once the operation has run for a second, cleared at the end; when stderr is not a
//! terminal (a log file, a pipe), one line every [`line_interval`] seconds. `-q` shows none.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much is said: [`QUIET`], [`NORMAL`] or [`VERBOSE`].
static LEVEL: AtomicU8 = AtomicU8::new(NORMAL);
/// `-q`: errors only.
pub const QUIET: u8 = 0;
/// The default: warnings, summaries and progress.
pub const NORMAL: u8 = 1;
/// `-v`: also notes (which device renders, where the model and ONNX Runtime were found).
pub const VERBOSE: u8 = 2;

/// Sets how much is said.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// A note, shown with `-v` only.
pub fn note(msg: &str) {
    if level() >= VERBOSE {
        eprintln!("gsimg: note: {msg}");
    }
}

/// A warning: something the user may want to act on. Hidden by `-q`.
pub fn warn(msg: &str) {
    if level() >= NORMAL {
        eprintln!("gsimg: warning: {msg}");
    }
}

/// An error: `gsimg: error: MSG`, shown even with `-q`.
pub fn error(msg: &str) {
    eprintln!("gsimg: error: {msg}");
}

/// A summary or status line. Hidden by `-q`.
pub fn info(msg: &str) {
    if level() >= NORMAL {
        eprintln!("gsimg: {msg}");
    }
}

/// Seconds between progress lines when stderr is not a terminal: `GSIMG_PROGRESS_SECONDS`
/// (a positive number), else 5.
pub fn line_interval() -> Duration {
    std::env::var("GSIMG_PROGRESS_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(5), Duration::from_secs_f64)
}

/// The progress of one long operation: units done of a total when the work reports them
/// ([`Progress::update`]), shown as a count or as a percentage, else the time spent.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    /// What is counted; `None`: units of no meaning of their own, shown as a percentage.
    unit: Option<&'static str>,
    bar: ProgressBar,
    start: Instant,
    counts: Mutex<Option<(usize, usize)>>,
    finished: AtomicBool,
}

impl Progress {
    /// The same, counting `unit`s (singular; an "s" is added).
    pub fn counting(label: &str, unit: &'static str) -> Progress {
        Progress::with_unit(label, Some(unit))
    }

    /// Progress of `label` shown as a percentage (the library's encoders report units of
    /// their whole work, not tiles).
    pub fn percent(label: &str) -> Progress {
        Progress::with_unit(label, None)
    }

    fn with_unit(label: &str, unit: Option<&'static str>) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("gsimg: {prefix} {spinner} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(label.to_string());
        let inner = Arc::new(Inner {
            label: label.to_string(),
            unit,
            bar,
            start: Instant::now(),
            counts: Mutex::new(None),
            finished: AtomicBool::new(false),
        });
        if level() >= NORMAL {
            let terminal = std::io::stderr().is_terminal();
            let me = Arc::downgrade(&inner);
            let interval = line_interval();
            // One thread shows the bar after a second on a terminal, or prints a line per
            // interval elsewhere; it ends with the operation.
            std::thread::spawn(move || {
                let tick = Duration::from_millis(50);
                let mut shown = false;
                let mut next_line = interval;
                loop {
                    std::thread::sleep(tick);
                    let Some(p) = me.upgrade() else { break };
                    if p.finished.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = p.start.elapsed();
                    if terminal {
                        if !shown && t >= Duration::from_secs(1) {
                            p.bar.set_draw_target(ProgressDrawTarget::stderr());
                            p.bar.enable_steady_tick(Duration::from_millis(200));
                            shown = true;
                        }
                    } else if t >= next_line {
                        eprintln!("gsimg: {}", p.line());
                        next_line += interval;
                    }
                }
            });
        }
        Progress { inner }
    }

    /// Reports `done` of `total` units.
    pub fn update(&self, done: usize, total: usize) {
        let p = &self.inner;
        let mut counts = p.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.is_none() && total > 0 {
            let count = match p.unit {
                Some(unit) => format!("{{pos}}/{{len}} {unit}s"),
                None => "{percent}%".to_string(),
            };
            p.bar.set_style(
                ProgressStyle::with_template(&format!(
                    "gsimg: {{prefix}} [{{bar:30}}] {count} {{elapsed}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        *counts = Some((done, total));
        p.bar.set_length(total as u64);
        p.bar.set_position(done as u64);
    }

    /// A callback for the library (the encoders report their work done).
    pub fn sink(&self) -> gsimg::ProgressSink {
        let me = self.clone();
        Arc::new(move |d, t| me.update(d, t))
    }

    /// Ends the display and clears its line.
    pub fn finish(&self) {
        self.inner.finished.store(true, Ordering::Relaxed);
        self.inner.bar.finish_and_clear();
    }
}

impl Inner {
    /// One line of progress: "encoding: 40% of 12 tiles, 10 s" (or "encoding: 40%, 10 s").
    fn line(&self) -> String {
        let t = self.start.elapsed().as_secs_f64();
        let counts = *self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match (counts, self.unit) {
            (Some((done, total)), Some(unit)) if total > 0 => format!(
                "{}: {}% of {total} {unit}{}, {t:.0} s",
                self.label,
                done as u128 * 100 / total as u128,
                if total == 1 { "" } else { "s" }
            ),
            (Some((done, total)), None) if total > 0 => format!(
                "{}: {}%, {t:.0} s",
                self.label,
                done as u128 * 100 / total as u128
            ),
            _ => format!("{}: {t:.0} s", self.label),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
