//! `gsimg info`: what a `.gsi` file holds and where its bytes go.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::io::read_input;
use gsimg::Limits;
use gsimg::info::Coding;

/// Describe a .gsi file: size, channels, Gaussians, bytes per section (and per attribute).
#[derive(Args)]
pub struct InfoArgs {
    /// Input .gsi file, or - for stdin.
    input: PathBuf,
    /// Also decode every tile and report the bits per attribute stream (slower: compresses
    /// each stream on its own). Without it, only the header and the tile index are read.
    #[arg(long)]
    streams: bool,
}

pub fn run(args: InfoArgs, limits: &Limits) -> Result<()> {
    let bytes = read_input(&args.input)?;
    let name = || args.input.display().to_string();
    let d = gsimg::inspect(&bytes, limits).with_context(name)?;
    let analysis = if args.streams {
        Some(gsimg::info::analyze(&bytes, limits, 19).with_context(name)?)
    } else {
        None
    };
    let h = &d.header;
    let n = h.gaussian_count;
    let pixels = h.width as f64 * h.height as f64;
    // The report is built first and written in one go: a closed stdout (`gsimg info … | head`)
    // is then one error, which main treats as a normal end.
    let mut out = String::new();
    macro_rules! say {
        ($($t:tt)*) => {
            // Writing into a String cannot fail.
            let _ = writeln!(out, $($t)*);
        };
    }
    say!("file:        {}", args.input.display());
    say!("version:     1.{}", h.version_minor);
    say!("size:        {} x {} native pixels", h.width, h.height);
    say!(
        "channels:    {:?} ({:?} colour model)",
        h.layout,
        h.color_model
    );
    say!("gaussians:   {n} ({:.4} per pixel)", n as f64 / pixels);
    let (tx, ty) = h.tiles();
    say!(
        "tiling:      cell {} px, tile {} px, {} x {} tiles",
        h.cell_size,
        h.tile_size(),
        tx,
        ty
    );
    say!(
        "file size:   {} bytes, {:.4} bits per pixel, {:.2} bits per Gaussian",
        bytes.len(),
        bytes.len() as f64 * 8.0 / pixels,
        bytes.len() as f64 * 8.0 / n.max(1) as f64
    );
    if let Some(o) = d.metadata.orientation {
        say!("orientation: {o}");
    }
    if let Some(icc) = &d.metadata.icc_profile {
        say!("icc profile: {} bytes", icc.len());
    }
    for why in &d.dropped_metadata {
        say!("dropped:     {why}");
    }
    say!("\nsections:    tag   count      bytes");
    for (tag, count, b) in &d.sections {
        say!("             {tag:<5} {count:>5} {b:>10}");
    }
    if d.coding == Coding::Context {
        say!("coding:      context-modelled rANS (version 1.1)");
    } else {
        say!("coding:      zstd attribute streams (version 1.0)");
    }
    let Some(a) = analysis else {
        return print(&out);
    };
    if d.coding == Coding::Context {
        say!("\nattribute      bits  raw bits/G  coded bits/G (exact cost of its values)");
    } else {
        say!("\nattribute      bits  raw bits/G  zstd bits/G (each stream alone)");
    }
    let streams = h.streams();
    for (i, (name, raw, packed)) in a.streams.iter().enumerate() {
        let bits = if i == 0 {
            "-".to_string()
        } else {
            streams[i - 1].bits.to_string()
        };
        say!("  {name:<12} {bits:>5} {raw:>11.2} {packed:>12.2}");
    }
    let raw: f64 = a.streams.iter().map(|s| s.1).sum();
    let packed: f64 = a.streams.iter().map(|s| s.2).sum();
    say!(
        "  {:<12} {:>5} {raw:>11.2} {packed:>12.2}",
        "total",
        h.bits_per_gaussian()
    );
    if d.coding == Coding::Context {
        // The rest of the file: coder states, the CMOD distributions, headers and framing.
        let whole = a.file_bytes as f64 * 8.0 / n.max(1) as f64;
        say!(
            "  {:<12} {:>5} {:>11} {:>12.2}",
            "other",
            "",
            "",
            whole - packed
        );
    }
    print(&out)
}

fn print(out: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}
