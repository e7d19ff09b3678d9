//! Resource limits, checked before any allocation that a file or a request controls.

/// Upper bounds on what a file or a render request may make gsimg allocate or compute.
///
/// Every limit is checked *before* the allocation or the work it guards, so a tiny hostile file
/// that claims huge dimensions or counts is refused at once. The defaults suit an image viewer on
/// a desktop machine; tighten them for untrusted input on small devices (the fuzz targets do).
/// `format-spec.md` §9 lists the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum native width and height of an image, in pixels. Default: 65,535.
    pub max_dimension: u32,
    /// Maximum native pixel count (width × height). Default: 2^28 (268 megapixels).
    pub max_native_pixels: u64,
    /// Maximum number of Gaussians in one image. Default: 2^26 (67 million).
    pub max_gaussians: u64,
    /// Maximum size of one section's payload, and of one tile's decompressed data, in bytes.
    /// Default: 2^30 (1 GiB).
    pub max_section_bytes: u64,
    /// Maximum number of pixels in one render's output region. Default: 2^28 (16384 × 16384).
    pub max_output_pixels: u64,
    /// Maximum width or height of the virtual full output a region is cut from. Default: 2^20.
    pub max_output_dimension: u32,
    /// Gaussian–pixel evaluations any render may do, whatever its size: the fixed part of the
    /// render-work limit ([`Limits::render_work_limit`]), so a file of huge overlapping
    /// Gaussians cannot hang the caller. Default: 2^30 (with the per-pixel part at 4096 × 4096,
    /// 2^31 in all: about 3 s of the CPU renderer on two cores, ROBUSTNESS.md; milliseconds on
    /// a GPU).
    pub max_render_work: u64,
    /// Evaluations a render may do per pixel of its output region, on top of
    /// `max_render_work`. Real pictures need 5 to 12 (each output pixel is reached by that many
    /// Gaussians' 3σ boxes). Default: 64.
    pub max_render_work_per_pixel: u64,
    /// Maximum bytes of memory one decode or render may allocate for Gaussians, their
    /// projections and per-tile lists; also the most an encode may need by its estimate
    /// ([`encode::estimate_memory`](crate::encode::estimate_memory), checked by `gsimg encode`
    /// before decoding the picture). Default: 2^32 (4 GiB).
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_dimension: 65_535,
            max_native_pixels: 1 << 28,
            max_gaussians: 1 << 26,
            max_section_bytes: 1 << 30,
            max_output_pixels: 1 << 28,
            max_output_dimension: 1 << 20,
            max_render_work: 1 << 30,
            max_render_work_per_pixel: 64,
            max_memory_bytes: 1 << 32,
        }
    }
}

impl Limits {
    /// Limits with no practical bound (for trusted input and tests). Arithmetic still cannot
    /// overflow: every field stays below 2^62.
    pub fn unlimited() -> Self {
        Limits {
            max_dimension: u32::MAX,
            max_native_pixels: 1 << 62,
            max_gaussians: 1 << 62,
            max_section_bytes: u32::MAX as u64,
            max_output_pixels: 1 << 62,
            max_output_dimension: u32::MAX,
            max_render_work: 1 << 62,
            max_render_work_per_pixel: 1 << 20,
            max_memory_bytes: 1 << 62,
        }
    }

    /// The most work (Gaussian–pixel evaluations, as the CPU renderer counts them) a render of
    /// `region_pixels` output pixels may do: `max_render_work + max_render_work_per_pixel ×
    /// region_pixels`.
    pub fn render_work_limit(&self, region_pixels: u64) -> u64 {
        self.max_render_work
            .saturating_add(self.max_render_work_per_pixel.saturating_mul(region_pixels))
    }

    pub(crate) fn check(&self, what: &'static str, value: u64, limit: u64) -> crate::Result<()> {
        if value > limit {
            Err(crate::Error::LimitsExceeded { what, value, limit })
        } else {
            Ok(())
        }
    }
}
