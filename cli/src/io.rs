//! Files for the command-line tool: `-` for stdin, output picture formats and their encoding
//! (writing the output file: [`output`](super::output)).

use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{ExtendedColorType, ImageEncoder};

/// Reads a whole input file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        return Ok(buf);
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Output picture formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// PNG (lossless).
    Png,
    /// JPEG, quality 92, no alpha.
    Jpeg,
    /// WebP (lossless).
    Webp,
    /// TIFF (lossless, uncompressed).
    Tiff,
    /// BMP (uncompressed).
    Bmp,
}

/// The extensions of each format, the first the usual one.
const EXTENSIONS: [(OutFormat, &[&str]); 5] = [
    (OutFormat::Png, &["png"]),
    (OutFormat::Jpeg, &["jpg", "jpeg"]),
    (OutFormat::Webp, &["webp"]),
    (OutFormat::Tiff, &["tif", "tiff"]),
    (OutFormat::Bmp, &["bmp"]),
];

const KNOWN: &str = ".png, .jpg, .webp, .tif or .bmp";

impl OutFormat {
    /// The format of a file name's extension: `Ok(None)` without an extension.
    fn of_extension(path: &Path) -> Result<Option<OutFormat>> {
        let Some(ext) = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
        else {
            return Ok(None);
        };
        match EXTENSIONS.iter().find(|(_, e)| e.contains(&ext.as_str())) {
            Some((f, _)) => Ok(Some(*f)),
            None => bail!(
                "{}: unsupported output format .{ext} (use {KNOWN}, or --format)",
                path.display()
            ),
        }
    }

    fn extension(self) -> &'static str {
        EXTENSIONS
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("", |(_, e)| e[0])
    }

    /// The output format: `--format` if given, else the output's extension (PNG for stdout).
    /// A `--format` that contradicts the extension (`--format png` onto `x.jpg`) is refused
    /// unless `force`, with a warning then.
    pub fn choose(format: Option<OutFormat>, path: &Path, force: bool) -> Result<OutFormat> {
        if path.as_os_str() == "-" {
            return Ok(format.unwrap_or(OutFormat::Png));
        }
        let by_name = match (format, OutFormat::of_extension(path)) {
            // A name gsimg does not know (`out.dat`, a device) takes the format given.
            (Some(f), Err(_)) => return Ok(f),
            (_, r) => r?,
        };
        match (format, by_name) {
            (Some(f), Some(e)) if f != e => {
                let msg = format!(
                    "--format {} does not match the output name {} (a .{} file)",
                    f.extension(),
                    path.display(),
                    e.extension()
                );
                if !force {
                    crate::usage!("{msg}; rename the output, or use --force to write it anyway");
                }
                crate::report::warn(&msg);
                Ok(f)
            }
            (Some(f), _) | (None, Some(f)) => Ok(f),
            (None, None) => bail!(
                "{}: no extension to choose the output format by (use {KNOWN}, or --format)",
                path.display()
            ),
        }
    }
}

/// Encodes 8-bit pixels of 1 to 4 channels.
pub fn encode_image(
    format: OutFormat,
    width: u32,
    height: u32,
    channels: usize,
    pixels: &[u8],
    icc: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let color = match channels {
        1 => ExtendedColorType::L8,
        2 => ExtendedColorType::La8,
        3 => ExtendedColorType::Rgb8,
        _ => ExtendedColorType::Rgba8,
    };
    let mut out = Vec::new();
    let result = match format {
        OutFormat::Png => {
            let mut e = image::codecs::png::PngEncoder::new(&mut out);
            if let Some(icc) = icc {
                let _ = e.set_icc_profile(icc.to_vec());
            }
            e.write_image(pixels, width, height, color)
        }
        OutFormat::Jpeg => {
            // JPEG has no alpha: drop it.
            let (data, color) = match channels {
                2 => (
                    pixels.chunks_exact(2).map(|p| p[0]).collect(),
                    ExtendedColorType::L8,
                ),
                4 => (
                    pixels
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect(),
                    ExtendedColorType::Rgb8,
                ),
                _ => (pixels.to_vec(), color),
            };
            let mut e = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92);
            if let Some(icc) = icc {
                let _ = e.set_icc_profile(icc.to_vec());
            }
            e.write_image(&data, width, height, color)
        }
        OutFormat::Webp => {
            // The WebP encoder takes RGB(A) only.
            let (data, color) = match channels {
                1 => (
                    pixels.iter().flat_map(|&v| [v, v, v]).collect(),
                    ExtendedColorType::Rgb8,
                ),
                2 => (gray_alpha_to_rgba(pixels), ExtendedColorType::Rgba8),
                _ => (pixels.to_vec(), color),
            };
            let mut e = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = icc {
                let _ = e.set_icc_profile(icc.to_vec());
            }
            e.write_image(&data, width, height, color)
        }
        OutFormat::Tiff | OutFormat::Bmp => {
            // Neither encoder keeps gray + alpha as such: write it as RGBA.
            let (data, color) = match channels {
                2 => (gray_alpha_to_rgba(pixels), ExtendedColorType::Rgba8),
                _ => (pixels.to_vec(), color),
            };
            if format == OutFormat::Tiff {
                let mut e = image::codecs::tiff::TiffEncoder::new(std::io::Cursor::new(&mut out));
                if let Some(icc) = icc {
                    let _ = e.set_icc_profile(icc.to_vec());
                }
                e.write_image(&data, width, height, color)
            } else {
                image::codecs::bmp::BmpEncoder::new(&mut out)
                    .write_image(&data, width, height, color)
            }
        }
    };
    result.context("cannot encode the output image")?;
    Ok(out)
}

/// Gray + alpha samples as RGBA (for encoders without a gray + alpha layout).
fn gray_alpha_to_rgba(pixels: &[u8]) -> Vec<u8> {
    pixels
        .chunks_exact(2)
        .flat_map(|p| [p[0], p[0], p[0], p[1]])
        .collect()
}
