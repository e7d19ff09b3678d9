//! `.gsi` in the `image` crate (feature `image-hooks`): an [`ImageDecoder`] and a one-call
//! registration, so `image::open("photo.gsi")` and [`image::ImageReader`] open `.gsi` files in
//! any program built on `image`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! gsimg::image_hooks::register();
//! let picture = image::open("photo.gsi")?; // rendered at its native size
//!
//! // Or at the size it will be shown: a .gsi file renders sharp at any size.
//! use gsimg::image_hooks::GsiDecoder;
//! let decoder = GsiDecoder::new(std::fs::File::open("photo.gsi")?)?.fit_within(3840, 2160)?;
//! let big = image::DynamicImage::from_decoder(decoder)?;
//! # Ok(()) }
//! ```
//!
//! Pixels are the picture's own channels (gray, gray + alpha, RGB or RGBA, 8 bits), equal to
//! what `gsimg decode` writes at the same size. Renders run on [`Backend::Auto`](crate::view::Backend)
//! (a CUDA GPU when usable, else the CPU), under [`Limits::default`](crate::Limits).

use std::io::Read;
use std::sync::OnceLock;

use image::error::{
    DecodingError, ImageFormatHint, LimitError, LimitErrorKind, ParameterError, ParameterErrorKind,
};
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageDecoderRect, ImageError, ImageResult};

use crate::format::consts::SIGNATURE;
use crate::view::{self, Decoder};
use crate::{Error, Limits};
use crate::{Region, Viewport};

/// Registers the `.gsi` decoder with the `image` crate: by extension (`image::open`) and by
/// signature (`ImageReader::with_guessed_format`, `image::load_from_memory`). Calling it again
/// does nothing. Returns whether gsimg's decoder is the one registered for `.gsi` (false when
/// another was registered for the extension first).
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let ours = image::hooks::register_decoding_hook(
            "gsi".into(),
            Box::new(|r| Ok(Box::new(GsiDecoder::new(r)?))),
        );
        if ours {
            image::hooks::register_format_detection_hook("gsi".into(), &SIGNATURE, None);
        }
        ours
    })
}

/// An [`ImageDecoder`] for `.gsi` files that renders at a size of the caller's choice (the
/// native size unless [`GsiDecoder::with_target_size`] or [`GsiDecoder::fit_within`] says
/// otherwise); [`ImageDecoderRect`] renders any rectangle of that size.
#[derive(Debug)]
pub struct GsiDecoder {
    dec: Decoder,
    width: u32,
    height: u32,
}

impl GsiDecoder {
    /// Opens a `.gsi` file from a reader under the default [`Limits`].
    pub fn new(reader: impl Read) -> ImageResult<GsiDecoder> {
        Self::with_limits(reader, Limits::default())
    }

    /// Opens a `.gsi` file from a reader under `limits`.
    pub fn with_limits(reader: impl Read, limits: Limits) -> ImageResult<GsiDecoder> {
        Ok(Self::from_decoder(
            Decoder::from_reader(reader, limits).map_err(image_error)?,
        ))
    }

    /// Wraps an opened [`Decoder`] (its backend and limits are kept).
    pub fn from_decoder(dec: Decoder) -> GsiDecoder {
        let info = dec.info();
        GsiDecoder {
            dec,
            width: info.width,
            height: info.height,
        }
    }

    /// The picture's native size.
    pub fn native_size(&self) -> (u32, u32) {
        let info = self.dec.info();
        (info.width, info.height)
    }

    /// Renders the whole picture at `width × height` (any aspect ratio).
    pub fn with_target_size(mut self, width: u32, height: u32) -> ImageResult<GsiDecoder> {
        Viewport::full(width, height)
            .validate(self.dec.limits())
            .map_err(image_error)?;
        (self.width, self.height) = (width, height);
        Ok(self)
    }

    /// Renders the whole picture at the largest size within `max_w × max_h` that keeps its
    /// aspect ratio ([`view::fit_size`]; 0 leaves a side free).
    pub fn fit_within(self, max_w: u32, max_h: u32) -> ImageResult<GsiDecoder> {
        let (w, h) = self.native_size();
        let (w, h) = view::fit_size(w, h, max_w, max_h).map_err(image_error)?;
        self.with_target_size(w, h)
    }

    /// The viewer decoder underneath.
    pub fn decoder(&mut self) -> &mut Decoder {
        &mut self.dec
    }

    fn render(&mut self, view: &Viewport, buf: &mut [u8], row_pitch: usize) -> ImageResult<()> {
        let (frame, _) = self.dec.render_frame::<u8>(view).map_err(image_error)?;
        let row = frame.width as usize * frame.channels();
        let need = row_pitch
            .checked_mul(frame.height.saturating_sub(1) as usize)
            .and_then(|n| n.checked_add(row));
        if row_pitch < row || need.is_none_or(|n| buf.len() < n) {
            return Err(ImageError::Parameter(ParameterError::from_kind(
                ParameterErrorKind::DimensionMismatch,
            )));
        }
        for (src, dst) in frame.data.chunks_exact(row).zip(buf.chunks_mut(row_pitch)) {
            dst[..row].copy_from_slice(src);
        }
        Ok(())
    }
}

impl ImageDecoder for GsiDecoder {
    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn color_type(&self) -> ColorType {
        match self.dec.info().channels {
            1 => ColorType::L8,
            2 => ColorType::La8,
            3 => ColorType::Rgb8,
            _ => ColorType::Rgba8,
        }
    }

    fn icc_profile(&mut self) -> ImageResult<Option<Vec<u8>>> {
        Ok(self.dec.icc_profile().map(<[u8]>::to_vec))
    }

    fn orientation(&mut self) -> ImageResult<Orientation> {
        Ok(
            Orientation::from_exif(self.dec.info().orientation)
                .unwrap_or(Orientation::NoTransforms),
        )
    }

    fn set_limits(&mut self, limits: image::Limits) -> ImageResult<()> {
        limits.check_support(&image::LimitSupport::default())?;
        limits.check_dimensions(self.width, self.height)?;
        if let Some(max) = limits.max_alloc {
            if self.total_bytes() > max {
                return Err(ImageError::Limits(LimitError::from_kind(
                    LimitErrorKind::InsufficientMemory,
                )));
            }
            let mut l = *self.dec.limits();
            l.max_memory_bytes = l.max_memory_bytes.min(max);
            self.dec.set_limits(l);
        }
        Ok(())
    }

    fn read_image(mut self, buf: &mut [u8]) -> ImageResult<()> {
        let view = Viewport::full(self.width, self.height);
        let pitch = self.width as usize * self.color_type().bytes_per_pixel() as usize;
        self.render(&view, buf, pitch)
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

impl ImageDecoderRect for GsiDecoder {
    fn read_rect(
        &mut self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        buf: &mut [u8],
        row_pitch: usize,
    ) -> ImageResult<()> {
        let view = Viewport::full(self.width, self.height).with_region(Region {
            x,
            y,
            width,
            height,
        });
        self.render(&view, buf, row_pitch)
    }
}

/// gsimg's error as the `image` crate's, by fault class. A limit a file or a size exceeds is a
/// decoding error with gsimg's message (which limit, how much): `image`'s own limit errors
/// carry no message.
fn image_error(e: Error) -> ImageError {
    match e {
        Error::Io(e) => ImageError::IoError(e),
        Error::InvalidParameter { .. } => ImageError::Parameter(ParameterError::from_kind(
            ParameterErrorKind::Generic(e.to_string()),
        )),
        e => ImageError::Decoding(DecodingError::new(ImageFormatHint::Name("gsi".into()), e)),
    }
}
