//! Peak memory of the encoders, estimated before a picture is decoded, so that a picture too
//! large for [`Limits::max_memory_bytes`] is refused up front with the reason instead of
//! taking the machine's memory (format-spec.md §9, ROBUSTNESS.md).
//!
//! The figures are upper fits of peaks measured on the release build (BENCHMARKS.md, "Encoder
//! memory": `/usr/bin/time -v`, and `tools/encode_memory.rs` without the check): the analytic encoder holds per pixel the float picture
//! and the integral images of its quadtree (about 60 bytes), and per Gaussian the state of
//! the colour fit and the refinement; the network encoder holds the network's activations for
//! one tile (its window of at most 2^21 pixels, [`super::NetworkOptions::max_tile_pixels`];
//! ONNX Runtime's arena returns them after each tile) and, per pixel, the float picture.

use crate::core::error::Cause;
use crate::{Error, Limits, Result};

/// Bytes every encode takes whatever the picture (program, thread pools, buffers).
const BASE: u64 = 96 << 20;
/// Analytic encoder: bytes per pixel (measured 57).
const ANALYTIC_PER_PIXEL: u64 = 64;
/// Analytic encoder: bytes per Gaussian (measured 720 to 1,100).
const ANALYTIC_PER_GAUSSIAN: u64 = 1152;
/// The analytic encoder places at most one Gaussian per this many pixels (its quadtree's
/// smallest block is 2 × 2).
const ANALYTIC_MIN_PIXELS_PER_GAUSSIAN: f64 = 4.0;
/// Network encoder: bytes of ONNX Runtime's activations per pixel of a tile's window (measured
/// 350 to 400, in its arena's chunks, for windows of 2 to 7 MP).
const NETWORK_PER_WINDOW_PIXEL: u64 = 416;
/// Network encoder: the smallest tile window [`network_window`] gives, the default of
/// [`super::NetworkOptions::max_tile_pixels`]. Each window carries a margin of the model's
/// receptive field on every side (352 pixels for the compact model), so the margins are most
/// of a small window's work: a 2^21-pixel window is about 1,450 pixels wide, its core 740.
pub const NETWORK_MIN_WINDOW: u64 = 1 << 21;
/// Network encoder: the largest tile window [`network_window`] gives (a 4,096-pixel square:
/// with the compact model's margins, 1.45 times the work of its core; larger windows save
/// little and take gigabytes more).
pub const NETWORK_MAX_WINDOW: u64 = 1 << 24;
/// Network encoder: bytes per pixel of the picture (the float picture and the decoded file,
/// the Gaussians; measured 7 to 33 beyond the tile).
const NETWORK_PER_PIXEL: u64 = 48;
/// Network encoder: bytes whatever the picture (program, ONNX Runtime and the model).
const NETWORK_BASE: u64 = 128 << 20;

/// An encoder, for [`estimate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EncoderKind {
    /// The analytic encoder at this density (Gaussians per pixel).
    Analytic {
        /// Gaussians per native pixel.
        density: f64,
    },
    /// The network encoder (compact model).
    Network,
}

/// The largest tile window (network input pixels) for the network encoder on a
/// `width × height` picture within `max_memory_bytes` of peak memory: as large as it allows beside
/// the picture (the margins around each window's core are repeated work, so fewer, larger
/// windows encode faster), within [`NETWORK_MIN_WINDOW`]..=[`NETWORK_MAX_WINDOW`].
/// The encoder uses it with [`super::NetworkOptions::memory_limit`] (as `gsimg encode`
/// does, with `Limits::max_memory_bytes`); [`estimate`] counts it.
pub fn network_window(width: u32, height: u32, max_memory_bytes: u64) -> u64 {
    let px = width as u64 * height as u64;
    let fixed = NETWORK_BASE.saturating_add(NETWORK_PER_PIXEL.saturating_mul(px));
    let room = max_memory_bytes.saturating_sub(fixed) / NETWORK_PER_WINDOW_PIXEL;
    room.clamp(NETWORK_MIN_WINDOW, NETWORK_MAX_WINDOW)
}

/// An upper estimate of the peak memory, in bytes, of encoding a `width × height` picture
/// (from its file: decoding the file is included) under `limits` (which set the network
/// encoder's tile window, `network_window`).
pub fn estimate(kind: EncoderKind, width: u32, height: u32, limits: &Limits) -> u64 {
    let px = width as u64 * height as u64;
    match kind {
        EncoderKind::Analytic { density } => {
            let gaussians = (px as f64 * density.clamp(0.0, 1.0 / ANALYTIC_MIN_PIXELS_PER_GAUSSIAN))
                .ceil() as u64;
            BASE + ANALYTIC_PER_PIXEL * px + ANALYTIC_PER_GAUSSIAN * gaussians
        }
        EncoderKind::Network => estimate_network(
            width,
            height,
            network_window(width, height, limits.max_memory_bytes),
        ),
    }
}

/// An upper estimate of the peak memory, in bytes, of the network encoder on a
/// `width × height` picture run in tile windows of at most `window` pixels.
pub fn estimate_network(width: u32, height: u32, window: u64) -> u64 {
    // The padded picture (to the compact model's multiple of 16) is what a window can hold.
    let padded = width.div_ceil(16) as u64 * 16 * (height.div_ceil(16) as u64 * 16);
    let px = width as u64 * height as u64;
    NETWORK_BASE + NETWORK_PER_WINDOW_PIXEL * padded.min(window) + NETWORK_PER_PIXEL * px
}

/// Refuses, before the picture is decoded, an encode whose [`estimate`] is over
/// `limits.max_memory_bytes`: the error gives the estimate and the limit.
pub fn check(kind: EncoderKind, width: u32, height: u32, limits: &Limits) -> Result<()> {
    let need = estimate(kind, width, height, limits);
    if need > limits.max_memory_bytes {
        let name = match kind {
            EncoderKind::Analytic { .. } => "the analytic encoder",
            EncoderKind::Network => "the network encoder",
        };
        return Err(Error::invalid(
            "picture size",
            format!(
                "{width}x{height}: {name} would need about {:.1} GiB, over the memory limit of \
                 {:.1} GiB (Limits::max_memory_bytes)",
                need as f64 / (1u64 << 30) as f64,
                limits.max_memory_bytes as f64 / (1u64 << 30) as f64
            ),
        ));
    }
    Ok(())
}

/// The width and height of a picture file (PNG, JPEG, …) from its header alone.
pub fn picture_size(bytes: &[u8]) -> Result<(u32, u32)> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::InputImage(Cause::with_source(e.to_string(), e)))?;
    if reader.format().is_none() {
        return Err(Error::InputImage(super::input::UNRECOGNIZED.into()));
    }
    reader
        .into_dimensions()
        .map_err(|e| Error::InputImage(Cause::with_source(e.to_string(), e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_cover_the_measured_peaks_and_refuse_16000_squared() {
        // Peaks measured (BENCHMARKS.md): (kind, width, height, bytes).
        let q50 = crate::encode::analytic::AnalyticOptions::with_quality(50)
            .unwrap()
            .density;
        let measured = [
            (
                EncoderKind::Analytic { density: q50 },
                1536,
                1024,
                189_392 << 10,
            ),
            (
                EncoderKind::Analytic { density: q50 },
                3072,
                2048,
                533_140 << 10,
            ),
            (
                EncoderKind::Analytic { density: 1.0 },
                768,
                512,
                206_628 << 10,
            ),
        ];
        let limits = Limits::default();
        for (kind, w, h, peak) in measured {
            let e = estimate(kind, w, h, &limits);
            assert!(
                e >= peak && e < peak * 2,
                "{kind:?} {w}x{h}: {e} for {peak}"
            );
        }
        // A photo resized to 1, 4, 12 and 24 MP (BENCHMARKS.md), in windows of at most 2^21
        // pixels, then of `network_window`'s size under the default limit (`gsimg encode`).
        let network = [
            (1224, 816, NETWORK_MIN_WINDOW, 504 << 20),
            (2448, 1632, NETWORK_MIN_WINDOW, 830 << 20),
            (4240, 2832, NETWORK_MIN_WINDOW, 1337 << 20),
            (6000, 4000, NETWORK_MIN_WINDOW, 1220 << 20),
            (2448, 1632, network_window(2448, 1632, 1 << 32), 1762 << 20),
            (4240, 2832, network_window(4240, 2832, 1 << 32), 3101 << 20),
        ];
        for (w, h, window, peak) in network {
            let e = estimate_network(w, h, window);
            assert!(
                e >= peak && e < peak * 2,
                "{w}x{h} in {window}: {e} for {peak}"
            );
        }
        // The windows grow with the limit, and keep the estimate within it.
        for (w, h) in [(1224, 816), (2448, 1632), (4240, 2832), (6000, 4000)] {
            let window = network_window(w, h, limits.max_memory_bytes);
            assert!((NETWORK_MIN_WINDOW..=NETWORK_MAX_WINDOW).contains(&window));
            assert!(estimate(EncoderKind::Network, w, h, &limits) <= limits.max_memory_bytes);
            assert_eq!(network_window(w, h, 768 << 20), NETWORK_MIN_WINDOW);
        }
        for kind in [EncoderKind::Analytic { density: q50 }, EncoderKind::Network] {
            let e = check(kind, 16000, 16000, &limits).unwrap_err().to_string();
            assert!(e.contains("max_memory_bytes") && e.contains("GiB"), "{e}");
        }
        // 24 MP pictures are accepted by both encoders.
        check(EncoderKind::Analytic { density: q50 }, 6000, 4000, &limits).unwrap();
        check(EncoderKind::Network, 6000, 4000, &limits).unwrap();
    }
}
