//! Rendering a [`SplatImage`](crate::SplatImage) at any output size, scale or region.
//!
//! A render is described by a [`Viewport`](crate::Viewport): the size of a virtual full output (the whole image
//! scaled to `width × height`, x and y scales independent) and the rectangle of it to produce.
//! The region of a render is bit-for-bit the same as the same rectangle cropped from the full
//! render. `format-spec.md` §3 is the normative rule; `core::geometry` holds the per-Gaussian math.

mod cpu;
mod fastexp;

pub use cpu::{render_cpu, render_cpu_with};
pub(crate) use fastexp::exp_neg_half;

/// Options of a render beyond what and how much ([`render_cpu_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// Set from any thread to stop the render soon (a viewer that no longer needs it): the
    /// render then returns [`Error::Cancelled`](crate::Error::Cancelled). Checked before every tile of pixels.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}
