//! The tools' shared quality measure (included with `#[path]`; not a program itself).

use anyhow::Result;
use gsimg::render::render_cpu;
use gsimg::{Frame, Limits, SplatImage, Viewport};

/// 8-bit RGB PSNR of a file's native render against the picture (the codec-anchors protocol:
/// per-picture MSE of the 8-bit samples).
pub fn psnr8(px: &Frame<f32>, image: &SplatImage) -> Result<f64> {
    let frame: Frame<u8> = render_cpu(
        image,
        &Viewport::full(px.width, px.height),
        &Limits::default(),
    )?;
    let mut se = 0f64;
    for (a, b) in frame.data.iter().zip(&px.data) {
        let d = *a as f64 - (*b as f64 * 255.0).round();
        se += d * d;
    }
    Ok(10.0 * (255.0f64 * 255.0 / (se / frame.data.len() as f64)).log10())
}
