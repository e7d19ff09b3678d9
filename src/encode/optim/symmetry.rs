//! The 8 symmetries of the square (flips and transposition) on pictures and on Gaussians, for
//! the upscale network's geometric self-ensemble: the network sees the picture in each of the 8
//! orientations, each field is mapped back to the picture's own frame, and the renders are
//! averaged ([`crate::FrameMean`]). The maps are exact: a field mapped back renders the
//! same pixels as the transformed picture's render, transformed back.

use crate::core::splat::Gaussian;

use crate::core::frame::Frame;

/// One of the 8 symmetries of the square: a horizontal flip, then a vertical flip, then a
/// transposition (x ↔ y), each present or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symmetry(u8);

impl Symmetry {
    /// The identity.
    pub const IDENTITY: Symmetry = Symmetry(0);

    /// All 8, the identity first.
    pub const ALL: [Symmetry; 8] = [
        Symmetry(0),
        Symmetry(1),
        Symmetry(2),
        Symmetry(3),
        Symmetry(4),
        Symmetry(5),
        Symmetry(6),
        Symmetry(7),
    ];

    /// The symmetry from its flips and transposition.
    pub fn new(flip_x: bool, flip_y: bool, transpose: bool) -> Symmetry {
        Symmetry(flip_x as u8 | (flip_y as u8) << 1 | (transpose as u8) << 2)
    }

    /// Mirrors left–right.
    pub fn flip_x(self) -> bool {
        self.0 & 1 != 0
    }

    /// Mirrors top–bottom.
    pub fn flip_y(self) -> bool {
        self.0 & 2 != 0
    }

    /// Swaps x and y (after the flips).
    pub fn transpose(self) -> bool {
        self.0 & 4 != 0
    }

    /// The size of a `width × height` picture after this symmetry.
    pub fn size(self, width: u32, height: u32) -> (u32, u32) {
        if self.transpose() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Where pixel `(x, y)` of a `width × height` picture goes.
    fn pixel(self, x: u32, y: u32, width: u32, height: u32) -> (u32, u32) {
        let x = if self.flip_x() { width - 1 - x } else { x };
        let y = if self.flip_y() { height - 1 - y } else { y };
        if self.transpose() { (y, x) } else { (x, y) }
    }

    /// The symmetry that undoes this one. Flips are their own inverses; after a transposition
    /// the horizontal flip acts vertically and the other way round, so the inverse of
    /// "flips, then transpose" swaps the two flips.
    pub fn inverse(self) -> Symmetry {
        if self.transpose() {
            Symmetry::new(self.flip_y(), self.flip_x(), true)
        } else {
            self
        }
    }

    /// Applies the symmetry to interleaved samples (`channels` per pixel) of a `width × height`
    /// picture; the result is `self.size(width, height)`.
    pub fn apply_samples<T: Copy>(
        self,
        data: &[T],
        width: u32,
        height: u32,
        channels: usize,
    ) -> Vec<T> {
        debug_assert_eq!(data.len(), width as usize * height as usize * channels);
        if self == Symmetry::IDENTITY {
            return data.to_vec();
        }
        let (w2, _) = self.size(width, height);
        let mut out = data.to_vec();
        for y in 0..height {
            for x in 0..width {
                let (x2, y2) = self.pixel(x, y, width, height);
                let src = (y as usize * width as usize + x as usize) * channels;
                let dst = (y2 as usize * w2 as usize + x2 as usize) * channels;
                out[dst..dst + channels].copy_from_slice(&data[src..src + channels]);
            }
        }
        out
    }

    /// Maps interleaved samples of the transformed picture (`self.size(width, height)`) back to
    /// the `width × height` picture's frame: the inverse of [`Symmetry::apply_samples`].
    #[cfg(any(test, feature = "unstable"))]
    pub fn unapply_samples<T: Copy>(
        self,
        data: &[T],
        width: u32,
        height: u32,
        channels: usize,
    ) -> Vec<T> {
        let (w2, h2) = self.size(width, height);
        self.inverse().apply_samples(data, w2, h2, channels)
    }

    /// The picture under this symmetry.
    pub fn apply_pixels(self, p: &Frame<f32>) -> Frame<f32> {
        let (width, height) = self.size(p.width, p.height);
        Frame {
            width,
            height,
            layout: p.layout,
            data: self.apply_samples(&p.data, p.width, p.height, p.channels()),
        }
    }

    /// Moves Gaussians of a `width × height` picture (native pixels, continuous coordinates)
    /// to the transformed picture's frame.
    pub fn apply_gaussians(self, gs: &mut [Gaussian], width: u32, height: u32) {
        let (w, h) = (width as f32, height as f32);
        for g in gs {
            if self.flip_x() {
                g.x = w - g.x;
                g.rotation = -g.rotation;
            }
            if self.flip_y() {
                g.y = h - g.y;
                g.rotation = -g.rotation;
            }
            if self.transpose() {
                std::mem::swap(&mut g.x, &mut g.y);
                g.rotation = std::f32::consts::FRAC_PI_2 - g.rotation;
            }
            g.rotation = g.rotation.rem_euclid(std::f32::consts::PI);
        }
    }

    /// Moves Gaussians fitted to the transformed picture back to the frame of the original
    /// `width × height` picture: the inverse of [`Symmetry::apply_gaussians`].
    pub fn unapply_gaussians(self, gs: &mut [Gaussian], width: u32, height: u32) {
        let (w2, h2) = self.size(width, height);
        self.inverse().apply_gaussians(gs, w2, h2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::Frame;
    use crate::core::geometry::Viewport;
    use crate::render::render_cpu;
    use crate::{ChannelLayout, Limits, SplatImage};

    fn gaussians(n: usize, w: f32, h: f32) -> Vec<Gaussian> {
        // a fixed pseudo-random set (xorshift), elongated and rotated
        let mut s = 0x9e37_79b9_u32;
        let mut r = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32
        };
        (0..n)
            .map(|_| Gaussian {
                x: r() * w,
                y: r() * h,
                scale: [0.4 + 2.0 * r(), 0.3 + 0.8 * r()],
                rotation: r() * 3.1,
                color: [r(), r(), r(), 0.0],
            })
            .collect()
    }

    #[test]
    fn samples_round_trip_and_sizes() {
        let (w, h, c) = (5u32, 3u32, 2usize);
        let data: Vec<u32> = (0..w * h * c as u32).collect();
        for s in Symmetry::ALL {
            assert_eq!(s.inverse().inverse(), s);
            let t = s.apply_samples(&data, w, h, c);
            assert_eq!(s.unapply_samples(&t, w, h, c), data, "{s:?}");
            let (w2, h2) = s.size(w, h);
            assert_eq!(w2 * h2, w * h);
            // pixel (1, 0)'s samples land where `pixel` says
            let (x2, y2) = s.pixel(1, 0, w, h);
            let at = (y2 * w2 + x2) as usize * c;
            assert_eq!(&t[at..at + c], &data[c..2 * c], "{s:?}");
        }
        let distinct: std::collections::HashSet<Vec<u32>> = Symmetry::ALL
            .iter()
            .map(|s| s.apply_samples(&data, w, h, c))
            .collect();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn gaussians_round_trip() {
        let g0 = gaussians(50, 9.0, 6.0);
        for s in Symmetry::ALL {
            let mut g = g0.clone();
            s.apply_gaussians(&mut g, 9, 6);
            s.unapply_gaussians(&mut g, 9, 6);
            for (a, b) in g.iter().zip(&g0) {
                assert!(
                    (a.x - b.x).abs() < 1e-5 && (a.y - b.y).abs() < 1e-5,
                    "{s:?}"
                );
                let (ca, cb) = (a.covariance(), b.covariance());
                assert!((ca.0 - cb.0).abs() < 1e-4, "{s:?}");
                assert!((ca.1 - cb.1).abs() < 1e-4, "{s:?}");
                assert!((ca.2 - cb.2).abs() < 1e-4, "{s:?}");
            }
        }
    }

    /// The maps commute with rendering: the moved Gaussians render the transformed picture, at
    /// any output scale, to float rounding.
    #[test]
    fn rendering_commutes_with_the_symmetries() {
        let (w, h) = (9u32, 6u32);
        let g0 = gaussians(60, w as f32, h as f32);
        let img = SplatImage::new(w, h, ChannelLayout::Rgb, g0.clone()).unwrap();
        for (ow, oh) in [(9u32, 6u32), (23, 14)] {
            let base: Frame<f32> =
                render_cpu(&img, &Viewport::full(ow, oh), &Limits::default()).unwrap();
            for s in Symmetry::ALL {
                let mut g = g0.clone();
                s.apply_gaussians(&mut g, w, h);
                let (w2, h2) = s.size(w, h);
                let moved = SplatImage::new(w2, h2, ChannelLayout::Rgb, g).unwrap();
                let (ow2, oh2) = s.size(ow, oh);
                let r: Frame<f32> =
                    render_cpu(&moved, &Viewport::full(ow2, oh2), &Limits::default()).unwrap();
                let back = s.unapply_samples(&r.data, ow, oh, 3);
                let worst = back
                    .iter()
                    .zip(&base.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "{s:?} at {ow}x{oh}: {worst}");
            }
        }
    }
}
