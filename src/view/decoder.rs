//! [`Decoder`]: a `.gsi` file opened for a viewer.

use std::io::Read;
use std::path::Path;

use super::pixels::{self, PixelFormat};
use super::{Backend, CancelHandle, Device, Fallback, FallbackCallback, Rendered, Renderer};
use crate::cuda::GpuImage;
use crate::format::{self, FileSource, Source};
use crate::{Frame, Region, Sample, Viewport};
use crate::{Limits, Result, SplatImage};

/// The bytes of an opened file: in memory, or read on demand from a file.
enum Bytes {
    Memory(Vec<u8>),
    File(FileSource),
}

impl Source for Bytes {
    fn len(&self) -> u64 {
        match self {
            Bytes::Memory(b) => b.len() as u64,
            Bytes::File(f) => f.len(),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Bytes::Memory(b) => (&b[..]).read_at(offset, buf),
            Bytes::File(f) => f.read_at(offset, buf),
        }
    }
}

/// What a picture is, before any pixel is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Info {
    /// Native width in pixels (the size the picture was encoded from).
    pub width: u32,
    /// Native height in pixels.
    pub height: u32,
    /// Channels as stored: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub channels: u32,
    /// Whether the picture has an alpha channel.
    pub has_alpha: bool,
    /// EXIF orientation 1 to 8 (1: none) a viewer applies when showing the picture; renders
    /// are in the stored orientation ([`orient_frame`](super::orient_frame)).
    pub orientation: u8,
    /// Number of Gaussians.
    pub gaussians: u64,
}

/// The Gaussians decoded so far, and what they can render.
struct Decoded {
    image: SplatImage,
    /// `None`: the whole picture; else the view whose region they were decoded for.
    view: Option<Viewport>,
}

impl Decoded {
    /// Whether rendering `view` from these Gaussians gives the whole picture's pixels.
    fn covers(&self, view: &Viewport) -> bool {
        let Some(v) = &self.view else { return true };
        let (a, b) = (&v.region, &view.region);
        v.width == view.width
            && v.height == view.height
            && b.x >= a.x
            && b.y >= a.y
            && b.x as u64 + b.width as u64 <= a.x as u64 + a.width as u64
            && b.y as u64 + b.height as u64 <= a.y as u64 + a.height as u64
    }
}

/// A `.gsi` picture opened for viewing: its [`Info`], then renders at any size or region into
/// the caller's buffer.
///
/// Opening reads the header, the metadata and the tile index only. The first render decodes
/// the Gaussians and keeps them (36 bytes each), so later renders at other zooms or regions
/// only render; on a GPU the upload is kept too. [`Decoder::prepare`] decodes only the tiles
/// one view needs instead (a one-shot render of a small part of a large file).
///
/// Renders run on the [`Backend`] chosen with [`Decoder::set_backend`] (default
/// [`Backend::Auto`]); the same call serves the CPU and the GPU, with the same pixels up to the
/// GPU's rounding. A render can be cancelled from another thread through
/// [`Decoder::cancel_handle`].
pub struct Decoder {
    file: format::Decoder<Bytes>,
    limits: Limits,
    backend: Backend,
    renderer: Option<Renderer>,
    /// The set-up fallback, reported with the next render.
    pending: Option<Fallback>,
    decoded: Option<Decoded>,
    upload: Option<GpuImage>,
    cancel: CancelHandle,
    on_fallback: Option<FallbackCallback>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("info", &self.info())
            .field("backend", &self.backend)
            .field("decoded", &self.decoded.is_some())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Opens a `.gsi` file held in memory.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>, limits: Limits) -> Result<Decoder> {
        Self::new(Bytes::Memory(bytes.into()), limits)
    }

    /// Opens a `.gsi` file from a reader (read to its end first).
    pub fn from_reader(mut reader: impl Read, limits: Limits) -> Result<Decoder> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        Self::from_bytes(bytes, limits)
    }

    /// Opens a `.gsi` file by path; tiles are read from the file when a render needs them.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Decoder> {
        Self::new(Bytes::File(FileSource::open(path)?), limits)
    }

    fn new(bytes: Bytes, limits: Limits) -> Result<Decoder> {
        Ok(Decoder {
            file: format::Decoder::new(bytes, limits)?,
            limits,
            backend: Backend::Auto,
            renderer: None,
            pending: None,
            decoded: None,
            upload: None,
            cancel: CancelHandle::default(),
            on_fallback: None,
        })
    }

    /// The picture's size, channels and orientation.
    pub fn info(&self) -> Info {
        let h = self.file.header();
        let channels = h.layout.channels() as u32;
        Info {
            width: h.width,
            height: h.height,
            channels,
            has_alpha: channels == 2 || channels == 4,
            orientation: self
                .file
                .metadata()
                .orientation
                .filter(|o| (1..=8).contains(o))
                .unwrap_or(1),
            gaussians: h.gaussian_count,
        }
    }

    /// The ICC colour profile of the rendered channels, if the file has one.
    pub fn icc_profile(&self) -> Option<&[u8]> {
        self.file.metadata().icc_profile.as_deref()
    }

    /// Metadata the file carries but the reader dropped (an ICC profile too large or not a
    /// profile), with the reason of each; the picture renders without it.
    pub fn dropped_metadata(&self) -> &[String] {
        self.file.dropped_metadata()
    }

    /// The limits of renders.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the limits of later renders (the file was opened under the earlier ones).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Chooses where later renders run (the GPU is opened at the next render).
    pub fn set_backend(&mut self, backend: Backend) {
        if backend != self.backend {
            self.backend = backend;
            self.renderer = None;
            self.pending = None;
            self.upload = None;
        }
    }

    /// The backend asked for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Calls `callback` for each fallback of [`Backend::Auto`] to the CPU, as it happens, besides
    /// reporting it in the render's [`Rendered`].
    pub fn on_fallback(&mut self, callback: impl Fn(&Fallback) + Send + Sync + 'static) {
        self.on_fallback = Some(Box::new(callback));
    }

    /// A handle that cancels this decoder's render in progress from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Sets up the backend now rather than at the first render, and says where renders will
    /// go. [`Backend::Cuda`] without a usable GPU is an error; [`Backend::Auto`] then reports a
    /// fallback (to the callback now, and in the next render's [`Rendered`]).
    pub fn device(&mut self) -> Result<Device> {
        Ok(self.renderer()?.device())
    }

    fn renderer(&mut self) -> Result<&Renderer> {
        if self.renderer.is_none() {
            let r = Renderer::new(self.backend)?;
            if let Some(f) = r.setup_fallback() {
                if let Some(cb) = &self.on_fallback {
                    cb(f);
                }
                self.pending = Some(f.clone());
            }
            self.renderer = Some(r);
        }
        Ok(self.renderer.as_ref().expect("set up above"))
    }

    /// Decodes the Gaussians `view` needs (all of them for `None`) and keeps them for the
    /// renders that follow; renders of other views decode the whole picture. Cancellable.
    pub fn prepare(&mut self, view: Option<&Viewport>) -> Result<()> {
        self.cancel.clear();
        self.decode(view)
    }

    fn decode(&mut self, view: Option<&Viewport>) -> Result<()> {
        let cancel = Some(self.cancel.flag());
        let image = match view {
            None => self.file.decode_all_with(cancel)?,
            Some(v) => {
                v.validate(&self.limits)?;
                let tiles = self.file.tiles_for(v);
                self.file.decode_tiles_with(&tiles, cancel)?
            }
        };
        self.upload = None;
        self.decoded = Some(Decoded {
            image,
            view: view.copied(),
        });
        Ok(())
    }

    /// Drops the decoded Gaussians and their GPU upload (the next render decodes again).
    pub fn release(&mut self) {
        self.decoded = None;
        self.upload = None;
    }

    /// Renders `view` in the picture's own channels (1–4, [`Info::channels`]), 8-bit or float:
    /// the frame `gsimg decode` writes.
    pub fn render_frame<T: Sample>(&mut self, view: &Viewport) -> Result<(Frame<T>, Rendered)> {
        self.cancel.clear();
        view.validate(&self.limits)?;
        if !self.decoded.as_ref().is_some_and(|d| d.covers(view)) {
            self.decode(None)?;
        }
        self.renderer()?;
        let (renderer, decoded) = (
            self.renderer.as_ref().expect("set up above"),
            self.decoded.as_ref().expect("decoded above"),
        );
        let (frame, mut rendered) = renderer.render_cached(
            &decoded.image,
            &mut self.upload,
            view,
            &self.limits,
            Some(self.cancel.flag()),
        )?;
        if let (Some(f), Some(cb)) = (&rendered.fallback, &self.on_fallback) {
            cb(f);
        }
        if rendered.fallback.is_none() {
            rendered.fallback = self.pending.take();
        }
        Ok((frame, rendered))
    }

    /// Renders `view` into `buf` as `fmt`, rows `stride` bytes apart (at least
    /// [`PixelFormat::min_stride`] of the region's width; bytes between rows are left as they
    /// are). `buf` must hold [`required_len`](super::required_len) bytes.
    pub fn render_into(
        &mut self,
        view: &Viewport,
        fmt: PixelFormat,
        buf: &mut [u8],
        stride: usize,
    ) -> Result<Rendered> {
        let r = view.region;
        pixels::check_buffer(r.width, r.height, fmt, buf, stride)?;
        if fmt.is_float() {
            let (frame, rendered) = self.render_frame::<f32>(view)?;
            pixels::write_f32(&frame, buf, stride);
            Ok(rendered)
        } else {
            let (frame, rendered) = self.render_frame::<u8>(view)?;
            pixels::write_u8(&frame, fmt, buf, stride);
            Ok(rendered)
        }
    }

    /// The whole picture at `width × height` (any aspect ratio; [`fit_size`](super::fit_size)
    /// keeps the picture's): the pixels of `gsimg decode --width W --height H`.
    pub fn render(
        &mut self,
        width: u32,
        height: u32,
        fmt: PixelFormat,
        buf: &mut [u8],
        stride: usize,
    ) -> Result<Rendered> {
        self.render_into(&Viewport::full(width, height), fmt, buf, stride)
    }

    /// The rectangle `region` of the picture zoomed to `full_w × full_h`: the pixels of
    /// `gsimg decode --width full_w --height full_h --region X,Y,W,H`.
    pub fn render_region(
        &mut self,
        full_w: u32,
        full_h: u32,
        region: Region,
        fmt: PixelFormat,
        buf: &mut [u8],
        stride: usize,
    ) -> Result<Rendered> {
        let view = Viewport::full(full_w, full_h).with_region(region);
        self.render_into(&view, fmt, buf, stride)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_is_send() {
        fn send<T: Send>() {}
        send::<Decoder>();
        send::<CancelHandle>();
    }

    #[test]
    fn coverage_of_a_region_decode() {
        let v = Viewport::full(100, 80).with_region(Region {
            x: 10,
            y: 10,
            width: 50,
            height: 20,
        });
        let image = SplatImage::new(10, 8, crate::ChannelLayout::Rgb, Vec::new()).unwrap();
        let d = Decoded {
            image,
            view: Some(v),
        };
        let inner = v.with_region(Region {
            x: 20,
            y: 10,
            width: 40,
            height: 20,
        });
        assert!(d.covers(&v) && d.covers(&inner));
        assert!(!d.covers(&Viewport::full(100, 80)));
        assert!(!d.covers(&Viewport::full(200, 160).with_region(v.region)));
    }
}
