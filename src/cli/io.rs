//! Files for the command-line tool: `-` for stdin/stdout, atomic output, image encoding.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename), or
/// to stdout for `-`. On failure no file is left at `path` and the temporary file is removed.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)
            .and_then(|_| out.flush())
            .context("cannot write standard output")?;
        return Ok(());
    }
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Output image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// PNG (lossless).
    Png,
    /// JPEG, quality 92, no alpha.
    Jpeg,
    /// WebP (lossless).
    Webp,
}

impl OutFormat {
    /// The format for a file name's extension.
    pub fn from_path(path: &Path) -> Result<OutFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "png" => OutFormat::Png,
            "jpg" | "jpeg" => OutFormat::Jpeg,
            "webp" => OutFormat::Webp,
            "" => bail!(
                "{}: no extension to choose the output format by (use .png, .jpg or .webp, or --format)",
                path.display()
            ),
            e => bail!(
                "{}: unsupported output format .{e} (use .png, .jpg or .webp)",
                path.display()
            ),
        })
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
                2 => (
                    pixels
                        .chunks_exact(2)
                        .flat_map(|p| [p[0], p[0], p[0], p[1]])
                        .collect(),
                    ExtendedColorType::Rgba8,
                ),
                _ => (pixels.to_vec(), color),
            };
            let mut e = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = icc {
                let _ = e.set_icc_profile(icc.to_vec());
            }
            e.write_image(&data, width, height, color)
        }
    };
    result.context("cannot encode the output image")?;
    Ok(out)
}
