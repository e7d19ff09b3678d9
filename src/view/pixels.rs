//! Pixel formats of a caller's buffer, and the one conversion from a render's 1–4 channels.

use crate::Frame;
use crate::{Error, Result};

/// The layout of the pixels [`Decoder::render_into`](super::Decoder::render_into) writes.
///
/// A `.gsi` picture stores 1 to 4 channels (gray, gray + alpha, RGB, RGBA). Every format here is
/// made from the 8-bit or float render in those channels by one rule:
///
/// - gray is replicated to R, G and B;
/// - a picture without alpha gets alpha 255 (1.0 in floats);
/// - [`Rgb8`](PixelFormat::Rgb8) drops the alpha of a picture that has one (straight values, as
///   the PNG `gsimg decode` writes, without compositing);
/// - [`Bgra8Premultiplied`](PixelFormat::Bgra8Premultiplied) multiplies each 8-bit colour by the
///   8-bit alpha and rounds to nearest: `(c · a + 127) / 255` in integers (the same as cairo's and
///   pixman's `c · a / 255` rounding), so it equals premultiplying the PNG `gsimg decode` writes;
/// - [`RgbaF32`](PixelFormat::RgbaF32) holds the blended values of `format-spec.md` §3.4 clamped
///   to [0, 1], before the 8-bit rounding of §3.5 (`u8 = floor(v · 255 + ½)`).
///
/// 8-bit formats equal, byte for byte, what `gsimg decode` writes at the same size and region
/// (after the replication above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// R, G, B, A bytes; straight (not premultiplied) alpha.
    Rgba8,
    /// R, G, B bytes.
    Rgb8,
    /// B, G, R, A bytes with colour premultiplied by alpha: cairo's `CAIRO_FORMAT_ARGB32` (and
    /// Qt's `Format_ARGB32_Premultiplied`) on a little-endian machine.
    Bgra8Premultiplied,
    /// R, G, B, A as native-endian `f32`, straight alpha, 0 to 1.
    RgbaF32,
}

impl PixelFormat {
    /// Bytes per pixel: 4, 3, 4 or 16.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgba8 | PixelFormat::Bgra8Premultiplied => 4,
            PixelFormat::Rgb8 => 3,
            PixelFormat::RgbaF32 => 16,
        }
    }

    /// The smallest row stride for `width` pixels, in bytes; `None` if it overflows `usize`.
    pub fn min_stride(self, width: u32) -> Option<usize> {
        (width as usize).checked_mul(self.bytes_per_pixel())
    }

    /// Whether the format is made from a float render ([`RgbaF32`](PixelFormat::RgbaF32)).
    pub(crate) fn is_float(self) -> bool {
        self == PixelFormat::RgbaF32
    }
}

/// The bytes a `width × height` picture needs in a buffer with rows `stride` bytes apart: the
/// last row needs only its pixels. Checks the stride.
pub fn required_len(width: u32, height: u32, fmt: PixelFormat, stride: usize) -> Result<usize> {
    let row = fmt
        .min_stride(width)
        .ok_or_else(|| Error::invalid("buffer", "the row size overflows the address space"))?;
    if stride < row {
        return Err(Error::invalid(
            "stride",
            format!(
                "{stride} bytes is less than the {row} bytes of a {width}-pixel row of {fmt:?}"
            ),
        ));
    }
    stride
        .checked_mul(height.saturating_sub(1) as usize)
        .and_then(|n| n.checked_add(row))
        .ok_or_else(|| Error::invalid("buffer", "its size overflows the address space"))
}

/// Checks that `buf` holds a `width × height` picture of `fmt` with rows `stride` apart.
pub(crate) fn check_buffer(
    width: u32,
    height: u32,
    fmt: PixelFormat,
    buf: &[u8],
    stride: usize,
) -> Result<()> {
    let need = required_len(width, height, fmt, stride)?;
    if buf.len() < need {
        return Err(Error::invalid(
            "buffer",
            format!(
                "{} bytes for a {width}x{height} picture of {fmt:?} with stride {stride}, which \
                 needs {need}",
                buf.len()
            ),
        ));
    }
    Ok(())
}

/// 8-bit premultiplication, rounded to nearest: `round(c · a / 255)`.
#[inline]
pub fn premultiply(c: u8, a: u8) -> u8 {
    ((c as u32 * a as u32 + 127) / 255) as u8
}

/// Writes an 8-bit render (1–4 channels) into `buf` as `fmt` (not [`PixelFormat::RgbaF32`]).
/// The buffer was checked by [`check_buffer`].
pub(crate) fn write_u8(frame: &Frame<u8>, fmt: PixelFormat, buf: &mut [u8], stride: usize) {
    let (w, c) = (frame.width as usize, frame.channels());
    if w == 0 {
        return;
    }
    let bpp = fmt.bytes_per_pixel();
    for (src, dst) in frame.data.chunks_exact(w * c).zip(buf.chunks_mut(stride)) {
        for (s, d) in src
            .chunks_exact(c)
            .zip(dst[..w * bpp].chunks_exact_mut(bpp))
        {
            let (r, g, b, a) = rgba(s);
            match fmt {
                PixelFormat::Rgba8 => d.copy_from_slice(&[r, g, b, a]),
                PixelFormat::Rgb8 => d.copy_from_slice(&[r, g, b]),
                PixelFormat::Bgra8Premultiplied => {
                    d.copy_from_slice(&[premultiply(b, a), premultiply(g, a), premultiply(r, a), a])
                }
                PixelFormat::RgbaF32 => unreachable!("float formats come from float renders"),
            }
        }
    }
}

/// Writes a float render (1–4 channels) into `buf` as [`PixelFormat::RgbaF32`], clamped to
/// [0, 1]. The buffer was checked by [`check_buffer`].
pub(crate) fn write_f32(frame: &Frame<f32>, buf: &mut [u8], stride: usize) {
    let (w, c) = (frame.width as usize, frame.channels());
    if w == 0 {
        return;
    }
    for (src, dst) in frame.data.chunks_exact(w * c).zip(buf.chunks_mut(stride)) {
        for (s, d) in src.chunks_exact(c).zip(dst[..w * 16].chunks_exact_mut(16)) {
            let (r, g, b, a) = rgba(s);
            for (k, v) in [r, g, b, a].into_iter().enumerate() {
                d[4 * k..4 * k + 4].copy_from_slice(&v.clamp(0.0, 1.0).to_ne_bytes());
            }
        }
    }
}

/// One pixel of 1–4 channels as R, G, B, A: gray replicated, alpha opaque when missing.
#[inline]
fn rgba<T: Copy + Opaque>(s: &[T]) -> (T, T, T, T) {
    match *s {
        [v] => (v, v, v, T::OPAQUE),
        [v, a] => (v, v, v, a),
        [r, g, b] => (r, g, b, T::OPAQUE),
        [r, g, b, a, ..] => (r, g, b, a),
        [] => (T::OPAQUE, T::OPAQUE, T::OPAQUE, T::OPAQUE),
    }
}

trait Opaque {
    const OPAQUE: Self;
}

impl Opaque for u8 {
    const OPAQUE: u8 = 255;
}

impl Opaque for f32 {
    const OPAQUE: f32 = 1.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channels: usize, data: Vec<u8>) -> Frame<u8> {
        Frame {
            width: 2,
            height: 1,
            layout: crate::ChannelLayout::from_channels(channels).unwrap(),
            data,
        }
    }

    #[test]
    fn conversion_rules() {
        let mut buf = [0u8; 10];
        write_u8(&frame(1, vec![7, 200]), PixelFormat::Rgba8, &mut buf, 8);
        assert_eq!(buf[..8], [7, 7, 7, 255, 200, 200, 200, 255]);
        write_u8(
            &frame(2, vec![100, 128, 9, 0]),
            PixelFormat::Rgb8,
            &mut buf,
            6,
        );
        assert_eq!(buf[..6], [100, 100, 100, 9, 9, 9]);
        let f = frame(4, vec![255, 128, 1, 128, 10, 20, 30, 0]);
        write_u8(&f, PixelFormat::Bgra8Premultiplied, &mut buf, 8);
        assert_eq!(buf[..8], [1, 64, 128, 128, 0, 0, 0, 0]);
    }

    #[test]
    fn premultiply_rounds_to_nearest() {
        for c in 0..=255u8 {
            for a in 0..=255u8 {
                let exact = c as f64 * a as f64 / 255.0;
                assert_eq!(premultiply(c, a), exact.round() as u8, "{c} {a}");
            }
        }
    }

    #[test]
    fn strides_and_lengths() {
        assert_eq!(required_len(3, 2, PixelFormat::Rgb8, 10).unwrap(), 19);
        assert!(required_len(3, 2, PixelFormat::Rgb8, 8).is_err());
        assert_eq!(PixelFormat::RgbaF32.min_stride(5), Some(80));
        assert!(PixelFormat::RgbaF32.min_stride(u32::MAX).is_some());
        let short = [0u8; 18];
        assert!(check_buffer(3, 2, PixelFormat::Rgb8, &short, 10).is_err());
        assert!(check_buffer(3, 2, PixelFormat::Rgb8, &short[..], 9).is_ok());
    }
}
