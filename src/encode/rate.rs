//! Rate control: a file of a requested size, for any encoder with a knob that moves its size
//! monotonically (the analytic encoder's Gaussian density, the network encoder's Gaussian
//! count).
//!
//! The search evaluates the encoder at a knob value, then moves the knob by the ratio of the
//! target to the size it got (sizes are nearly proportional to the Gaussian count; after two
//! evaluations, by the secant of log size against log knob), and once the target is bracketed
//! interpolates between the nearest sizes on either side. A size cap is never
//! exceeded: the result is the largest file under it.

use crate::format::Encoded;
use crate::{Error, Result};

/// The quality every encoder takes: 1 (smallest files) to 100 (best pictures), 50 the
/// default. It is the one knob of the command line's `--quality` and of the encoders' options,
/// and this type is the one place that maps it to each encoder's settings:
///
/// - the analytic encoder: the Gaussian density, geometrically from 1/400 per pixel at 1 to
///   1/5 at 100 (`Quality::analytic_density`);
/// - the network encoder, whose model has one trained rate at 50: without refinement (the
///   default on a CPU), below 50 a share of its Gaussians (`Quality::network_keep_fraction`)
///   and fewer bits; above 50 Gaussians added where the render's error is largest, 2.2 %
///   more each step up to 3 times the model's count at 100
///   (`Quality::network_count_factor`), then the colours fitted, with a lower presence
///   threshold (`Quality::network_presence_threshold`) and one more bit of chroma from 80
///   (`Quality::network_precision`). Every step moves rate and PSNR up together (on Kodak,
///   means of 0.12 bpp at 1, 0.63 at 50 and 2.2 at 100; BENCHMARKS.md, "Rate control
///   (network encoder)"); with refinement, whose rounds prune and densify toward
///   a count, from 0.12 to 5 times the model's own count
///   (`Quality::refined_count_factor`) at the precision of `Quality::refined_precision`.
///
/// Rate targets ([`RateTarget`]) search the same counts for a size instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quality(u8);

/// The most Gaussians a refined network quality asks for, as a multiple of the model's own
/// count (at 100; also the top of a refined rate search's range).
pub const MAX_COUNT_FACTOR: f64 = 5.0;

/// The fewest Gaussians a refined network quality keeps (at 1), as a multiple of the model's
/// own count.
pub const MIN_REFINED_FACTOR: f64 = 0.12;

/// The quality above which the network encoder without refinement adds Gaussians where the
/// error is (`Quality::network_count_factor`): the model's own rate. From there every quality
/// step adds Gaussians, so each one moves the file and the picture (lowering the presence
/// threshold alone changes few Gaussians per step: a few percent of the file from 50 to 75,
/// and PSNR can fall by thousandths of a dB from one step to the next).
pub const NETWORK_DENSIFY_FROM: u8 = 50;

/// The most Gaussians the network encoder without refinement writes (at quality 100), as a
/// multiple of the model's own count at the quality's presence threshold (also the top of its
/// rate search's range).
pub const MAX_NETWORK_FACTOR: f64 = 3.0;

/// The lowest presence threshold a network quality reaches (at 95 and above). Below it are the
/// slots the model rated absent, whose parameters training never rendered: lower thresholds
/// double the file for almost no gain, then lose quality.
pub const QUALITY_THRESHOLD_FLOOR: f32 = 0.05;

impl Quality {
    /// The default quality.
    pub const DEFAULT: Quality = Quality(50);

    /// A quality from 1 to 100, or [`Error::InvalidParameter`].
    pub fn new(quality: u8) -> Result<Self> {
        if (1..=100).contains(&quality) {
            Ok(Quality(quality))
        } else {
            Err(Error::invalid(
                "quality",
                format!("{quality} (allowed: 1 to 100)"),
            ))
        }
    }

    /// The value, 1 to 100.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The analytic encoder's Gaussians per pixel: 1/400 at 1, geometrically up to 1/5 at 100.
    pub(crate) fn analytic_density(self) -> f64 {
        let t = (self.0 as f64 - 1.0) / 99.0;
        (1.0f64 / 400.0) * (80.0f64).powf(t)
    }

    /// The share of the network's Gaussians kept without refinement: all from 50 up; below,
    /// from 5 % at 1 geometrically up to all at 50, the least valuable dropped first.
    pub(crate) fn network_keep_fraction(self) -> f64 {
        if self.0 >= 50 {
            1.0
        } else {
            0.05f64.powf((50 - self.0) as f64 / 49.0)
        }
    }

    /// The network encoder's Gaussian count without refinement, as a multiple of the model's
    /// own count (at the quality's presence threshold): below 50 the share kept
    /// (`Quality::network_keep_fraction`); at `NETWORK_DENSIFY_FROM` (50) the model's own;
    /// above, Gaussians added where the error is, geometrically up to `MAX_NETWORK_FACTOR`
    /// times the count at 100 (2.2 % more per quality step).
    pub(crate) fn network_count_factor(self) -> f64 {
        if self.0 <= NETWORK_DENSIFY_FROM {
            self.network_keep_fraction()
        } else {
            let t = (self.0 - NETWORK_DENSIFY_FROM) as f64 / (100 - NETWORK_DENSIFY_FROM) as f64;
            MAX_NETWORK_FACTOR.powf(t)
        }
    }

    /// The refined network encoder's Gaussian budget, as a multiple of the model's own count:
    /// geometrically from `MIN_REFINED_FACTOR` at 1 to `MAX_COUNT_FACTOR` at 100 (0.77 at
    /// 50: pruning the network's least valuable Gaussians and refining the rest gives a
    /// better picture for its bits than refining all of them).
    pub(crate) fn refined_count_factor(self) -> f64 {
        let t = (self.0 as f64 - 1.0) / 99.0;
        MIN_REFINED_FACTOR * (MAX_COUNT_FACTOR / MIN_REFINED_FACTOR).powf(t)
    }

    /// Bits added to (positive) or removed from (negative) the refined network encoder's
    /// precision of positions, scales, rotations, luma and chroma (the analytic encoder's
    /// quantizers, [`WriteOptions::default`](crate::format::WriteOptions)): one fewer each below
    /// 30, two fewer below 10, none from 30 up. At low rates more Gaussians with coarser
    /// values give the better picture, from about 0.8 bpp up the default precision does (on
    /// held-out pictures, refined: at 0.12 bpp 2 bits fewer and twice the Gaussians gave
    /// +9 dB; at 0.8 bpp one fewer and 1.3 times as many ±0.0 dB, one more −0.4 dB; at 2.1
    /// bpp one fewer −0.5 dB, one more −0.4 dB; BENCHMARKS.md).
    pub(crate) fn refined_precision(self) -> [i8; 5] {
        let drop = match self.0 {
            0..10 => 2,
            10..30 => 1,
            _ => 0,
        };
        [-drop; 5]
    }

    /// The network's presence threshold for a model whose trained threshold is `trained`: that
    /// threshold up to 50; above, lowered to `1 − quality/100` when that is lower, but never
    /// below `QUALITY_THRESHOLD_FLOOR` (so 95 to 100 keep the same Gaussians of the model's).
    pub(crate) fn network_presence_threshold(self, trained: f32) -> f32 {
        if self.0 > 50 {
            trained.min((1.0 - self.0 as f32 / 100.0).max(QUALITY_THRESHOLD_FLOOR))
        } else {
            trained
        }
    }

    /// Bits added to (positive) or removed from (negative) the network model's own precision of
    /// positions, scales, rotations, luma and chroma: below 50 all fall together, up to 3 bits
    /// at 1; from 50 to 79 the model's own; from 80 one more bit of chroma. Above
    /// `NETWORK_DENSIFY_FROM` more Gaussians pay better than finer values: on held-out
    /// pictures at twice the network's count, one more bit of chroma gave 2.1 dB per added bit
    /// per pixel, as many as more Gaussians there, of positions 0.9, of scales 0.5, of
    /// rotations and luma nothing.
    pub(crate) fn network_precision(self) -> [i8; 5] {
        let q = self.0;
        if q < 50 {
            let drop = ((50 - q) as f64 / 49.0 * 3.0).round() as i8;
            [-drop; 5]
        } else {
            [0, 0, 0, 0, i8::from(q >= 80)]
        }
    }
}

impl Default for Quality {
    fn default() -> Self {
        Quality::DEFAULT
    }
}

/// What size a file should have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateTarget {
    /// Bits per native pixel; the file lands within `BPP_TOLERANCE` of it when the encoder
    /// can reach it.
    Bpp(f64),
    /// At most this many bytes (and within `BPP_TOLERANCE` below it when reachable).
    Bytes(u64),
}

/// Relative tolerance of a rate target.
pub const BPP_TOLERANCE: f64 = 0.03;

/// Most encodes one search may run.
pub const MAX_ROUNDS: usize = 12;

impl RateTarget {
    /// Checks the target's value.
    pub fn validate(&self) -> Result<()> {
        match *self {
            RateTarget::Bpp(b) if !(b > 0.0 && b <= 64.0) => Err(Error::invalid(
                "target bits per pixel",
                format!("{b} (allowed: above 0, at most 64)"),
            )),
            RateTarget::Bytes(0) => Err(Error::invalid("target size", "0 bytes (allowed: ≥ 1)")),
            _ => Ok(()),
        }
    }

    /// The target in bytes for a picture of `pixels` native pixels.
    pub fn bytes(&self, pixels: f64) -> f64 {
        match *self {
            RateTarget::Bpp(b) => b * pixels / 8.0,
            RateTarget::Bytes(n) => n as f64,
        }
    }

    fn accepts(&self, bytes: f64, pixels: f64) -> bool {
        let t = self.bytes(pixels);
        match self {
            RateTarget::Bpp(_) => (bytes / t - 1.0).abs() <= BPP_TOLERANCE,
            RateTarget::Bytes(_) => bytes <= t && bytes >= t * (1.0 - BPP_TOLERANCE),
        }
    }
}

/// A file from `search` and whether it met the target.
#[derive(Debug, Clone)]
pub struct RateResult {
    /// The file.
    pub encoded: Encoded,
    /// Whether its size is within the target's tolerance (else it is the nearest the encoder
    /// reached, and under a size cap).
    pub on_target: bool,
    /// Encodes run.
    pub rounds: usize,
}

/// Finds a knob value `t` in `[lo, hi]` (file size increasing with `t`, roughly in proportion)
/// whose file meets `target`, starting from `t0`. `encode(t)` encodes at `t`.
pub fn search(
    target: RateTarget,
    pixels: f64,
    (lo, hi): (f64, f64),
    t0: f64,
    mut encode: impl FnMut(f64) -> Result<Encoded>,
) -> Result<RateResult> {
    target.validate()?;
    let want = target.bytes(pixels);
    let is_cap = matches!(target, RateTarget::Bytes(_));
    // The nearest evaluations under and over the target: (t, bytes, file).
    let mut under: Option<(f64, f64, Encoded)> = None;
    let mut over: Option<(f64, f64, Encoded)> = None;
    let mut t = t0.clamp(lo, hi);
    let mut last: Option<(f64, f64)> = None;
    let mut rounds = 0;
    while rounds < MAX_ROUNDS {
        let e = encode(t)?;
        rounds += 1;
        let b = e.bytes.len() as f64;
        if target.accepts(b, pixels) {
            return Ok(RateResult {
                encoded: e,
                on_target: true,
                rounds,
            });
        }
        if b <= want {
            if under.as_ref().is_none_or(|u| t > u.0) {
                under = Some((t, b, e));
            }
        } else if over.as_ref().is_none_or(|o| t < o.0) {
            over = Some((t, b, e));
        }
        let next = match (&under, &over) {
            (Some(u), Some(o)) => {
                // Interpolate in log size between the bracket's ends.
                let f = (want.ln() - u.1.ln()) / (o.1.ln() - u.1.ln());
                let n = u.0 + (o.0 - u.0) * f.clamp(0.05, 0.95);
                if (o.0 - u.0).abs() <= (hi - lo) * 1e-6 {
                    break;
                }
                n
            }
            // Not bracketed yet: a secant step in log size against log knob from the last two
            // evaluations (slope kept within 0.2 to 2), or, after the first, size taken as
            // proportional to the knob; aiming a little under a cap.
            _ => {
                let aim = if is_cap { want * 0.985 } else { want };
                let slope = match last {
                    Some((lt, lb)) if (t.ln() - f64::ln(lt)).abs() > 1e-9 => {
                        ((b.ln() - f64::ln(lb)) / (t.ln() - f64::ln(lt))).clamp(0.2, 2.0)
                    }
                    _ => 1.0,
                };
                (t * ((aim.ln() - b.ln()) / slope).exp()).clamp(lo, hi)
            }
        };
        last = Some((t, b));
        if next == t {
            break; // at a bound of the knob
        }
        t = next;
    }
    // Off target: the largest file under the target, else (a rate only) the smallest over it.
    match (under, over) {
        (Some(u), _) => Ok(RateResult {
            encoded: u.2,
            on_target: false,
            rounds,
        }),
        (None, Some(o)) if !is_cap => Ok(RateResult {
            encoded: o.2,
            on_target: false,
            rounds,
        }),
        (None, Some(o)) => Err(Error::invalid(
            "target size",
            format!(
                "{} bytes: the smallest file this encoder made has {} bytes",
                want as u64, o.1 as u64
            ),
        )),
        (None, None) => unreachable!("at least one encode ran"),
    }
}
