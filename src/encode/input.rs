//! Reading input pictures: any format the `image` crate decodes here (PNG, JPEG, WebP, TIFF, BMP,
//! GIF's first frame), EXIF orientation applied, ICC profile kept, into float pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::core::frame::Frame;
use crate::core::splat::ChannelLayout;
use crate::core::error::Cause;
use crate::{Error, Limits, Result};

/// The error of a file that is no picture gsimg reads.
pub(crate) const UNRECOGNIZED: &str =
    "unrecognized image format (supported: PNG, JPEG, WebP, TIFF, BMP, GIF)";

/// A decoded input file.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The pixels, EXIF orientation already applied.
    pub pixels: Frame<f32>,
    /// The embedded ICC profile, if any.
    pub icc_profile: Option<Vec<u8>>,
    /// Why the file's ICC profile was dropped (too large, or not an ICC profile:
    /// `crate::format::icc_profile_problem`), for the caller to report.
    pub icc_dropped: Option<String>,
}

/// Decodes an image file held in memory. Fully opaque alpha is dropped; 16-bit samples keep
/// their precision.
pub fn load_image(bytes: &[u8], limits: &Limits) -> Result<LoadedImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::InputImage(Cause::with_source(e.to_string(), e)))?;
    if reader.format().is_none() {
        return Err(Error::InputImage(UNRECOGNIZED.into()));
    }
    let mut il = image::Limits::default();
    il.max_image_width = Some(limits.max_dimension);
    il.max_image_height = Some(limits.max_dimension);
    il.max_alloc = Some(
        limits
            .max_native_pixels
            .saturating_mul(8)
            .min(limits.max_memory_bytes),
    );
    reader.limits(il);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::InputImage(Cause::with_source(e.to_string(), e)))?;
    let (w, h) = decoder.dimensions();
    limits.check(
        "input pixel count",
        w as u64 * h as u64,
        limits.max_native_pixels,
    )?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut icc_profile = decoder.icc_profile().ok().flatten();
    let icc_dropped = icc_profile
        .as_deref()
        .and_then(crate::format::icc_profile_problem);
    if icc_dropped.is_some() {
        icc_profile = None;
    }
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| Error::InputImage(Cause::with_source(e.to_string(), e)))?;
    img.apply_orientation(orientation);
    Ok(LoadedImage {
        pixels: from_dynamic(&img),
        icc_profile,
        icc_dropped,
    })
}

/// Converts a decoded image to float pixels, dropping alpha that is fully opaque.
pub fn from_dynamic(img: &DynamicImage) -> Frame<f32> {
    let (width, height) = (img.width(), img.height());
    let color = img.color();
    let has_alpha = color.has_alpha();
    let gray = !color.has_color();
    let mut layout = match (gray, has_alpha) {
        (true, false) => ChannelLayout::Gray,
        (true, true) => ChannelLayout::GrayAlpha,
        (false, false) => ChannelLayout::Rgb,
        (false, true) => ChannelLayout::Rgba,
    };
    let data: Vec<f32> = match layout {
        ChannelLayout::Gray => img.to_luma32f().into_raw(),
        ChannelLayout::GrayAlpha => img.to_luma_alpha32f().into_raw(),
        ChannelLayout::Rgb => img.to_rgb32f().into_raw(),
        ChannelLayout::Rgba => img.to_rgba32f().into_raw(),
    };
    let mut p = Frame {
        width,
        height,
        layout,
        data,
    };
    if has_alpha
        && p.data
            .chunks_exact(p.channels())
            .all(|px| px[px.len() - 1] >= 1.0)
    {
        layout = if gray {
            ChannelLayout::Gray
        } else {
            ChannelLayout::Rgb
        };
        p = p.to_layout(layout);
    }
    p
}
