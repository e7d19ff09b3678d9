//! # gsimg: Gaussian-splatting images
//!
//! gsimg stores a picture as a set of 2D Gaussians in a compact `.gsi` file and renders it at
//! any resolution, zoom or region. The pipeline, one module per stage:
//!
//! ```text
//! image ──encode──▶ SplatImage ──format::write──▶ .gsi bytes ──format::read──▶ SplatImage ──render──▶ pixels
//! ```
//!
//! - [`splat`]: the Gaussian image model shared by every stage;
//! - [`format`]: the `.gsi` container (no pixels, no accelerators);
//! - [`render`]: the CPU reference renderer, any output size and region;
//! - [`encode`]: encoders from pixels to Gaussians;
//! - [`view`]: the viewer's API: open a file, render any size or region into your buffer in
//!   the pixel format you draw, on the CPU or a GPU; `image_hooks` (feature `image-hooks`):
//!   `.gsi` in the `image` crate.
//!
//! ```no_run
//! # fn main() -> gsimg::Result<()> {
//! let bytes = std::fs::read("photo.gsi")?;
//! let file = gsimg::format::read(&bytes, &gsimg::Limits::default())?;
//! let view = gsimg::Viewport::scaled(file.image.width(), file.image.height(), 2.5)?;
//! let frame: gsimg::Frame<u8> = gsimg::render::render_cpu(&file.image, &view, &gsimg::Limits::default())?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cuda;
pub mod encode;
mod error;
pub mod format;
pub mod fuzzing;
#[cfg(feature = "image-hooks")]
pub mod image_hooks;
mod limits;
pub mod render;
pub mod splat;
pub mod view;

pub use error::{Error, Result};
pub use limits::Limits;
pub use render::{Frame, Region, Viewport};
pub use splat::{ChannelLayout, Gaussian, SplatImage};
