//! A [glycin](https://gitlab.gnome.org/GNOME/glycin) loader for `.gsi` files.
//!
//! glycin (GNOME's sandboxed image loading, used by Loupe and by newer gdk-pixbuf builds) asks a
//! loader for frames with a [`FrameRequest`]: an optional `scale` (the size the viewer will
//! show the whole picture at) and an optional `clip` (the rectangle of that scaled picture it
//! needs, for a zoomed view). A `.gsi` picture is drawn by the renderer at any size, so this
//! loader renders exactly the requested pixels at the requested scale, as glycin's SVG loader
//! does: a zoomed view stays sharp at every zoom step. Without a `scale` the picture is
//! rendered at its native size.
//!
//! Frames carry the file's own channels (gray, gray + alpha, RGB or RGBA; alpha straight), its
//! ICC profile, and its EXIF orientation as the image's transformation (glycin applies it).

use std::io::Read;

use glycin_utils::{
    ByteData, Frame, FrameRequest, ImageDetails, InitializationDetails, LoaderImplementation,
    MemoryFormat, ProcessError,
};
use gsimg::view::{Backend, Decoder};
use gsimg::{ChannelLayout, Limits, Region, Viewport};
use gufo_common::orientation::Orientation;

/// The MIME type this loader is registered for (the shared-mime-info entry's).
pub const MIME_TYPE: &str = "image/x-gsi";

/// The largest input read: a .gsi file past this is refused before it is read further.
const MAX_FILE_BYTES: u64 = 1 << 32;

/// One opened `.gsi` file: its Gaussians, decoded once, rendered for every frame request.
pub struct GsiLoader {
    decoder: Decoder,
    /// Native size.
    width: u32,
    height: u32,
}

fn expected(msg: impl std::fmt::Display) -> ProcessError {
    ProcessError::expected(&msg.to_string())
}

impl GsiLoader {
    /// Opens a `.gsi` file from its bytes and decodes its Gaussians (a corrupt file fails
    /// here, before any frame is asked for).
    pub fn from_bytes<B: ByteData>(
        bytes: Vec<u8>,
    ) -> Result<(GsiLoader, ImageDetails<B>), ProcessError> {
        let mut decoder = Decoder::from_bytes(bytes, Limits::default()).map_err(expected)?;
        // glycin's sandbox gives a loader no GPU device: render on the CPU from the start.
        decoder.set_backend(Backend::Cpu);
        decoder.prepare(None).map_err(expected)?;
        let info = decoder.info();
        let mut details = ImageDetails::new(info.width, info.height);
        details.info_format_name = Some("GSI (Gaussian splatting)".to_string());
        details.info_dimensions_text = Some(format!(
            "{} × {} native, resolution-free",
            info.width, info.height
        ));
        if info.orientation != 1 {
            let o = Orientation::try_from(u16::from(info.orientation))
                .map_err(|_| expected(format!("invalid EXIF orientation {}", info.orientation)))?;
            details.transformation_orientation = Some(o);
        }
        let (width, height) = (info.width, info.height);
        Ok((
            GsiLoader {
                decoder,
                width,
                height,
            },
            details,
        ))
    }

    /// Renders the frame `request` asks for: the whole picture at `scale` (default: native
    /// size), or the `clip` rectangle of it.
    pub fn render<B: ByteData>(
        &mut self,
        request: &FrameRequest,
    ) -> Result<Frame<B>, ProcessError> {
        let (w, h) = request.scale.unwrap_or((self.width, self.height));
        if w == 0 || h == 0 {
            return Err(expected(format!("requested scale {w}x{h} is empty")));
        }
        let mut view = Viewport::full(w, h);
        if let Some((x, y, cw, ch)) = request.clip {
            let inside = cw > 0
                && ch > 0
                && x.checked_add(cw).is_some_and(|r| r <= w)
                && y.checked_add(ch).is_some_and(|b| b <= h);
            if !inside {
                return Err(expected(format!(
                    "clip {x},{y} {cw}x{ch} is not inside the {w}x{h} frame"
                )));
            }
            view = view.with_region(Region {
                x,
                y,
                width: cw,
                height: ch,
            });
        }
        // The file's own channels, as `gsimg decode` writes them.
        let (frame, _) = self.decoder.render_frame::<u8>(&view).map_err(expected)?;
        let format = match frame.layout {
            ChannelLayout::Gray => MemoryFormat::G8,
            ChannelLayout::GrayAlpha => MemoryFormat::G8a8,
            ChannelLayout::Rgb => MemoryFormat::R8g8b8,
            ChannelLayout::Rgba => MemoryFormat::R8g8b8a8,
        };
        let texture = B::try_from_vec(frame.data).map_err(|_| ProcessError::out_of_memory())?;
        let mut out = Frame::new(frame.width, frame.height, format, texture)?;
        out.details.info_alpha_channel = Some(frame.layout.has_alpha());
        out.details.info_grayscale = Some(!frame.layout.is_color());
        out.details.info_bit_depth = Some(8);
        if let Some(icc) = self.decoder.icc_profile() {
            out.details.color_icc_profile =
                Some(B::try_from_slice(icc).map_err(|_| ProcessError::out_of_memory())?);
        }
        Ok(out)
    }
}

impl LoaderImplementation for GsiLoader {
    fn load<B: ByteData, R: Read + Send + 'static>(
        stream: R,
        mime_type: String,
        _details: InitializationDetails,
    ) -> Result<(Self, ImageDetails<B>), ProcessError> {
        if mime_type != MIME_TYPE {
            return Err(ProcessError::UnsupportedImageFormat(mime_type));
        }
        let mut bytes = Vec::new();
        stream
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| expected(format!("reading the file: {e}")))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(expected("the file is larger than 4 GiB"));
        }
        GsiLoader::from_bytes(bytes)
    }

    fn specific_frame<B: ByteData>(
        &mut self,
        frame_request: FrameRequest,
    ) -> Result<Frame<B>, ProcessError> {
        self.render(&frame_request)
    }
}
