//! The core every other layer builds on: the Gaussian picture model, geometry, limits and
//! errors. It imports nothing else of the crate.

pub mod error;
pub mod format_error;
pub mod frame;
pub mod geometry;
pub mod limits;
pub mod progress;
pub mod splat;
