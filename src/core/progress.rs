//! Progress of long operations (encodes, refinements, network runs over tiles): the library
//! calls a caller's hook with the work done so far, and prints nothing itself.
//!
//! An operation made of stages of different cost (placing Gaussians, colour fits, refinement
//! steps, network tiles) counts its work in units of roughly equal time: one unit is about the
//! time of one refinement step on the picture. A [`Meter`] holds the total; each stage takes
//! the next [`Part`] of it and reports its own count, which the part maps into the total, so
//! the hook sees one rising count for the whole operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A progress hook: called with (units done, units in all) as an operation advances. Within
/// one operation the total stays the same and the count of units done never falls; the last
/// call has done = total. Called on the thread doing the work, so it should return quickly
/// (e.g. store the numbers for a display thread).
pub type ProgressSink = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// The progress of one operation: a total of units, handed out to its stages as [`Part`]s.
pub struct Meter {
    sink: Option<ProgressSink>,
    total: usize,
    /// Units handed out to parts so far.
    reserved: AtomicUsize,
    /// Units reported done so far.
    done: AtomicUsize,
}

impl Meter {
    /// A meter of `total` units reporting to `sink` (nothing when `None`); reports 0 done.
    pub fn new(sink: Option<&ProgressSink>, total: usize) -> Meter {
        let total = total.max(1);
        if let Some(s) = sink {
            s(0, total);
        }
        Meter {
            sink: sink.cloned(),
            total,
            reserved: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// The next `units` units of the total, for one stage.
    pub fn part(&self, units: usize) -> Part<'_> {
        let start = self.reserved.fetch_add(units, Ordering::Relaxed);
        Part {
            meter: self,
            start: start.min(self.total),
            units: units.min(self.total - start.min(self.total)),
        }
    }

    /// Reports everything done (e.g. when an operation ends early).
    pub fn finish(&self) {
        self.advance_to(self.total);
    }

    fn advance_to(&self, done: usize) {
        let done = done.min(self.total);
        let before = self.done.fetch_max(done, Ordering::Relaxed);
        if done > before
            && let Some(s) = &self.sink
        {
            s(done, self.total);
        }
    }
}

/// One stage's share of a [`Meter`]: the stage reports its own count of steps, mapped
/// proportionally onto its units.
pub struct Part<'a> {
    meter: &'a Meter,
    start: usize,
    units: usize,
}

impl Part<'_> {
    /// `done` of the stage's `of` steps are done.
    pub fn report(&self, done: usize, of: usize) {
        let of = of.max(1);
        let d = (self.units as u128 * done.min(of) as u128 / of as u128) as usize;
        self.meter.advance_to(self.start + d);
    }

    /// The stage is done.
    pub fn finish(&self) {
        self.report(1, 1);
    }

    /// The units of this part.
    #[cfg(test)]
    pub fn units(&self) -> usize {
        self.units
    }

    /// A part of this part: its units from `offset` to `offset + units`.
    #[cfg(test)]
    pub fn sub(&self, offset: usize, units: usize) -> Part<'_> {
        self.within(offset, units, self.units)
    }

    /// A part of this part, counted in a stage's own units: of `of` units spread evenly over
    /// this part, the ones from `offset` to `offset + len`.
    pub fn within(&self, offset: usize, len: usize, of: usize) -> Part<'_> {
        let of = of.max(1) as u128;
        let at = |u: usize| (self.units as u128 * (u as u128).min(of) / of) as usize;
        let (a, b) = (at(offset), at(offset.saturating_add(len)));
        Part {
            meter: self.meter,
            start: self.start + a,
            units: b - a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(usize, usize)>>>;

    fn recorder() -> (ProgressSink, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Arc::new(move |d, t| s.lock().unwrap().push((d, t))), seen)
    }

    #[test]
    fn parts_map_their_counts_onto_one_rising_total() {
        let (sink, seen) = recorder();
        let m = Meter::new(Some(&sink), 100);
        let a = m.part(20);
        for i in 0..=4 {
            a.report(i, 4);
        }
        let b = m.part(80);
        b.sub(0, 40).report(1, 2);
        // Counted in the stage's own units: the second half of 8.
        b.within(4, 4, 8).finish();
        // A stage reporting less than before does not move the count back.
        a.report(0, 4);
        m.finish();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (0, 100),
                (5, 100),
                (10, 100),
                (15, 100),
                (20, 100),
                (40, 100),
                (100, 100)
            ]
        );
    }

    #[test]
    fn parts_beyond_the_total_are_clamped() {
        let (sink, seen) = recorder();
        let m = Meter::new(Some(&sink), 10);
        m.part(8).finish();
        let over = m.part(8);
        assert_eq!(over.units(), 2);
        over.report(5, 0);
        m.part(3).finish();
        assert_eq!(*seen.lock().unwrap(), [(0, 10), (8, 10), (10, 10)]);
    }
}
