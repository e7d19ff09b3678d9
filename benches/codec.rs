//! Rate–distortion on Kodak: `cargo bench --bench codec`.
//!
//! For each rate point, every image of the set is encoded, its `.gsi` bytes counted (bpp from
//! the file size) and the file decoded and rendered at native size; RGB PSNR is computed on the
//! 8-bit output against the 8-bit original, per image, and both are averaged over the set
//! (CompressAI's protocol, as in `shared/notes/codec-anchors.md` §2).
//!
//! The compact network model (on the CPU provider) is measured too when it is found.
//! Environment:
//! - `GSIMG_KODAK`: folder of the Kodak PNGs (required);
//! - `GSIMG_DENSITIES`: comma-separated Gaussians per pixel for the analytic encoder (empty: no
//!   analytic rows); `GSIMG_REFINE`: its refinement iterations (default 40);
//!   `GSIMG_REFINE_LR`: their step sizes, `POSITION,SCALE,ROTATION,COLOUR`; `GSIMG_SPREAD`: the
//!   quadtree Gaussians' σ as a fraction of their block's side (default: the encoder's own,
//!   `analytic::SPREAD` or `REFINED_SPREAD`);
//! - `GSIMG_NET_MODEL`: the network model (default: the one `gsimg encode` finds);
//!   `GSIMG_NET_REFINE`: its refinement iterations (default 0); `GSIMG_NET_REFINE_LR`: their
//!   step sizes, `POSITION,SCALE,ROTATION,COLOUR`; `GSIMG_NET_FIT`: its colour fit, `none` or
//!   `ITERATIONS,SWEEPS`; `GSIMG_NET_DEFAULT_WRITE` (set): write with the analytic encoder's
//!   quantizers instead of the model's;
//! - `GSIMG_NET_QUALITIES`: the network's `--quality` values (default `50,90`; empty: no network
//!   rows);
//! - `GSIMG_NET_THRESHOLD`: a presence threshold (0 to 1) for the network in place of the
//!   quality's (`NetworkOptions::presence_threshold`).
//! - `GSIMG_REALLOC`: `FRACTION,ROUNDS` of both encoders' refinement
//!   (`RefineOptions::reallocate`, `rounds`; default: each encoder's own, for both 0.1 of the
//!   Gaussians before each of 4 rounds, the analytic encoder only from 0.015 per pixel).

#[path = "kodak.rs"]
mod kodak;

use std::time::Instant;

use gsimg::encode::analytic::{self, AnalyticOptions};
use gsimg::encode::network::{self, Device, ModelKind, NetworkOptions};
use gsimg::render::render_cpu;
use gsimg::{Frame, Limits, Viewport, format};

fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

/// Refinement step sizes from `var` = `POSITION,SCALE,ROTATION,COLOUR`, when set.
fn step_sizes(var: &str, o: &mut gsimg::encode::optim::refine::RefineOptions) {
    if let Ok(v) = std::env::var(var) {
        let l: Vec<f32> = v
            .split(',')
            .map(|x| x.trim().parse().expect("step sizes: 4 numbers"))
            .collect();
        assert_eq!(l.len(), 4, "{var}: POSITION,SCALE,ROTATION,COLOUR");
        (o.lr_position, o.lr_scale) = (l[0], l[1]);
        (o.lr_rotation, o.lr_color) = (l[2], l[3]);
    }
}

/// The network encoder's colour fit from `GSIMG_NET_FIT`: `none`, or `ITERATIONS,SWEEPS`
/// (default: the encoder's own).
fn net_fit() -> Option<gsimg::encode::optim::fit::FitOptions> {
    let default = NetworkOptions::default().color_fit;
    match std::env::var("GSIMG_NET_FIT").as_deref() {
        Err(_) => default,
        Ok("none") => None,
        Ok(v) => {
            let (i, s) = v
                .split_once(',')
                .expect("GSIMG_NET_FIT: none or ITERATIONS,SWEEPS");
            Some(gsimg::encode::optim::fit::FitOptions {
                iterations: i.parse().expect("GSIMG_NET_FIT: iterations"),
                sweeps: s.parse().expect("GSIMG_NET_FIT: sweeps"),
                ..default.unwrap_or_default()
            })
        }
    }
}

fn main() {
    let files = kodak::kodak_files();
    let densities: Vec<f64> = std::env::var("GSIMG_DENSITIES")
        .unwrap_or_else(|_| "0.005,0.01,0.02,0.04,0.08".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("GSIMG_DENSITIES: numbers"))
        .collect();
    let limits = Limits::default();
    let images: Vec<_> = files
        .iter()
        .map(|p| {
            gsimg::encode::load_image(&std::fs::read(p).unwrap(), &limits)
                .unwrap()
                .pixels
        })
        .collect();
    println!(
        "{} images of {}, {} threads",
        images.len(),
        kodak::kodak_dir(),
        rayon::current_num_threads()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>9} {:>12}",
        "encoder", "Gaussians", "bpp", "PSNR", "encode s/img"
    );
    let report = |name: &str, encode: &dyn Fn(&gsimg::Frame<f32>) -> format::Encoded| {
        let (mut bpp, mut psnr, mut gauss, mut secs) = (0.0, 0.0, 0.0, 0.0);
        for px in &images {
            let t = Instant::now();
            let enc = encode(px);
            secs += t.elapsed().as_secs_f64();
            let file = format::read(&enc.bytes, &limits).unwrap();
            let frame: Frame<u8> =
                render_cpu(&file.image, &Viewport::full(px.width, px.height), &limits).unwrap();
            bpp += enc.bytes.len() as f64 * 8.0 / (px.width as f64 * px.height as f64);
            psnr += psnr_u8(&frame.data, &px.to_u8().data);
            gauss += file.image.gaussian_count() as f64;
        }
        let n = images.len() as f64;
        println!(
            "{name:<22} {:>10.0} {:>10.4} {:>9.2} {:>12.2}",
            gauss / n,
            bpp / n,
            psnr / n,
            secs / n
        );
    };
    let refine: usize =
        std::env::var("GSIMG_REFINE").map_or(40, |v| v.parse().expect("GSIMG_REFINE: a number"));
    // GSIMG_REALLOC = FRACTION,ROUNDS: move Gaussians to the error before each refinement round
    // (both encoders; RefineOptions::reallocate / rounds)
    let realloc: Option<(f32, usize)> = std::env::var("GSIMG_REALLOC").ok().map(|v| {
        let (f, r) = v.split_once(',').expect("GSIMG_REALLOC: FRACTION,ROUNDS");
        (
            f.parse().expect("GSIMG_REALLOC: fraction"),
            r.parse().expect("GSIMG_REALLOC: rounds"),
        )
    });
    let moves = |o: &mut gsimg::encode::optim::refine::RefineOptions| {
        if let Some((f, r)) = realloc {
            (o.reallocate, o.rounds) = (f, r);
        }
    };
    let tag = realloc.map_or(String::new(), |(f, r)| format!(", move {f} × {r}"));
    for d in densities {
        report(&format!("analytic d={d} refine {refine}{tag}"), &|px| {
            let mut o = AnalyticOptions {
                density: d,
                ..Default::default()
            };
            o.refine.iterations = refine;
            if let Ok(v) = std::env::var("GSIMG_SPREAD") {
                o.spread = Some(v.parse().expect("GSIMG_SPREAD: a number"));
            }
            moves(&mut o.refine);
            step_sizes("GSIMG_REFINE_LR", &mut o.refine);
            analytic::encode(px, &o).unwrap()
        });
    }
    // The compact network model, when it and ONNX Runtime are available.
    let model = match std::env::var("GSIMG_NET_MODEL") {
        Ok(path) => Ok(std::path::PathBuf::from(path)),
        Err(_) => network::locate_model(ModelKind::Compact),
    };
    match model {
        Err(e) => println!("(no network rows: {e})"),
        Ok(model) => {
            let refine: usize = std::env::var("GSIMG_NET_REFINE")
                .map_or(0, |v| v.parse().expect("GSIMG_NET_REFINE: a number"));
            // GSIMG_NET_QUALITIES: comma-separated --quality values (default 50,90)
            let qualities: Vec<u8> = std::env::var("GSIMG_NET_QUALITIES")
                .unwrap_or_else(|_| "50,90".into())
                .split(',')
                .filter(|q| !q.trim().is_empty())
                .map(|q| {
                    q.trim()
                        .parse()
                        .expect("GSIMG_NET_QUALITIES: numbers 1 to 100")
                })
                .collect();
            for q in qualities {
                let mut o = NetworkOptions {
                    installed: true,
                    model: Some(model.clone()),
                    device: Device::Cpu,
                    color_fit: net_fit(),
                    quality: q,
                    ..NetworkOptions::default()
                };
                o.refine.iterations = refine;
                step_sizes("GSIMG_NET_REFINE_LR", &mut o.refine);
                moves(&mut o.refine);
                // GSIMG_NET_THRESHOLD: a presence threshold in place of the quality's
                if let Ok(t) = std::env::var("GSIMG_NET_THRESHOLD") {
                    o.presence_threshold = Some(t.parse().expect("GSIMG_NET_THRESHOLD: 0 to 1"));
                }
                let enc = o.build();
                match enc {
                    Ok(enc) => report(&format!("network q{q} refine {refine}{tag}"), &|px| {
                        if std::env::var_os("GSIMG_NET_DEFAULT_WRITE").is_some() {
                            enc.encode_with(px, &gsimg::format::WriteOptions::default())
                                .unwrap()
                        } else {
                            enc.encode(px).unwrap()
                        }
                    }),
                    Err(e) => println!("(no network rows: {e})"),
                }
            }
        }
    }
}
