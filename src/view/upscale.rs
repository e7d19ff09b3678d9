//! [`upscale`]: a raster picture to any size through the upscale network and a render.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Device, Fallback, Rendered, Renderer};
use crate::encode::optim::symmetry::Symmetry;
use crate::encode::{NetworkEncoder, Provider};
use crate::{Error, Limits, Result};
use crate::{Frame, FrameMean, Viewport};

/// Network passes of an ensemble upscale ([`UpscaleOptions::ensemble`]): the picture in each
/// of its 8 orientations (the 4 rotations, mirrored or not).
pub const ENSEMBLE_PASSES: usize = Symmetry::ALL.len();

/// Options of [`upscale`] beyond the picture and the size.
#[derive(Default, Clone, Copy)]
pub struct UpscaleOptions<'a> {
    /// Run the network on all 8 orientations of the picture and average the renders: a little
    /// sharper (+0.1 to +0.2 dB), 8 times the work.
    pub ensemble: bool,
    /// Called before each network pass with (pass, passes): 1 pass, or 8 with `ensemble`.
    pub on_pass: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// Called for each fallback of the renderer from the GPU to the CPU.
    pub on_fallback: Option<&'a (dyn Fn(&Fallback) + Sync)>,
    /// Set from another thread to stop: between passes and the network's tiles, within a
    /// network run (ONNX Runtime's terminate flag, between the graph's nodes), and during
    /// renders ([`Error::Cancelled`]).
    pub cancel: Option<&'a AtomicBool>,
}

impl std::fmt::Debug for UpscaleOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpscaleOptions")
            .field("ensemble", &self.ensemble)
            .finish_non_exhaustive()
    }
}

/// An upscaled picture and what made it.
#[derive(Debug, Clone)]
pub struct Upscaled {
    /// The pixels, in the input's channels.
    pub frame: Frame<u8>,
    /// Gaussians the network made (of the first pass; every pass makes as many).
    pub gaussians: u64,
    /// The execution provider that ran the network.
    pub provider: Provider,
    /// Network runs (tiles) of one pass.
    pub tiles: usize,
    /// Seconds in the network, all passes.
    pub network_seconds: f64,
    /// Where the renders ran: the CPU if any of them did (no GPU, or a fallback).
    pub device: Device,
    /// The first fallback to the CPU, if any.
    pub fallback: Option<Fallback>,
}

/// Upscales `pixels` to `view` (usually the whole picture at a larger size; any size or region
/// works): the network `encoder` (an upscale model) turns the picture into Gaussians, and
/// `renderer` renders them at `view`. With `ensemble`, the renders of the 8 orientations are
/// averaged in floats before the 8-bit rounding.
pub fn upscale(
    encoder: &NetworkEncoder,
    pixels: &Frame<f32>,
    view: &Viewport,
    renderer: &Renderer,
    limits: &Limits,
    options: &UpscaleOptions,
) -> Result<Upscaled> {
    view.validate(limits)?;
    let symmetries: &[Symmetry] = if options.ensemble {
        &Symmetry::ALL
    } else {
        &[Symmetry::IDENTITY]
    };
    let mut mean = None;
    if symmetries.len() > 1 {
        let r = view.region;
        mean = Some(FrameMean::new(r.width, r.height, pixels.layout, limits)?);
    }
    let cancelled = || options.cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let mut result: Option<Upscaled> = None;
    let note = |rendered: Rendered, result: &mut Upscaled| {
        if rendered.device == Device::Cpu {
            result.device = Device::Cpu;
        }
        if let Some(f) = rendered.fallback {
            if let Some(cb) = options.on_fallback {
                cb(&f);
            }
            result.fallback.get_or_insert(f);
        }
    };
    for (k, &sym) in symmetries.iter().enumerate() {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        if let Some(cb) = options.on_pass {
            cb(k, symmetries.len());
        }
        let out = match options.cancel {
            Some(c) => encoder.gaussians_cancellable(pixels, sym, c)?,
            None => encoder.gaussians_under(pixels, sym)?,
        };
        let r = result.get_or_insert(Upscaled {
            frame: Frame {
                width: 0,
                height: 0,
                layout: pixels.layout,
                data: Vec::new(),
            },
            gaussians: out.image.gaussian_count() as u64,
            provider: out.provider,
            tiles: out.tiles,
            network_seconds: 0.0,
            device: renderer.device(),
            fallback: None,
        });
        r.network_seconds += out.network_seconds;
        match mean.as_mut() {
            None => {
                let (frame, rendered) =
                    renderer.render(&out.image, view, limits, options.cancel)?;
                note(rendered, r);
                r.frame = frame;
            }
            Some(m) => {
                let (frame, rendered) =
                    renderer.render::<f32>(&out.image, view, limits, options.cancel)?;
                note(rendered, r);
                m.add(&frame)?;
            }
        }
    }
    let mut result = result.ok_or_else(|| Error::invalid("symmetries", "none to upscale under"))?;
    if let Some(m) = mean {
        result.frame = m.mean();
    }
    Ok(result)
}
