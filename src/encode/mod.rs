//! Encoders: pixels to Gaussians.
