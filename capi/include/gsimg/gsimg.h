/* gsimg: render .gsi Gaussian-splatting pictures at any size into your buffer.
 *
 * Generated from capi/src/lib.rs by cbindgen; do not edit. Link with
 * `pkg-config --cflags --libs gsimg`. */

#ifndef GSIMG_H
#define GSIMG_H

#include <stddef.h>
#include <stdint.h>

/**
 * The result of every call that can fail.
 */
typedef enum {
  /**
   * Success.
   */
  GSIMG_OK = 0,
  /**
   * A NULL pointer, a zero size, a buffer too small or an unknown enum value.
   */
  GSIMG_ERROR_INVALID_ARGUMENT = 1,
  /**
   * The file could not be read.
   */
  GSIMG_ERROR_IO = 2,
  /**
   * Not a .gsi file, corrupt, or an unsupported version.
   */
  GSIMG_ERROR_FORMAT = 3,
  /**
   * Over the decoder's limits (`gsimg_decoder_set_limits`).
   */
  GSIMG_ERROR_LIMITS = 4,
  /**
   * Cancelled by `gsimg_decoder_cancel`.
   */
  GSIMG_ERROR_CANCELLED = 5,
  /**
   * The GPU was asked for (`GSIMG_BACKEND_CUDA`) and is unavailable or failed.
   */
  GSIMG_ERROR_BACKEND = 6,
  /**
   * A bug in gsimg.
   */
  GSIMG_ERROR_INTERNAL = 7,
} GsimgStatus;

/**
 * An opened `.gsi` picture (opaque). Made by `gsimg_decoder_new_from_memory` or
 * `gsimg_decoder_new_from_file`, freed by `gsimg_decoder_free`.
 */
typedef struct GsimgDecoder GsimgDecoder;

/**
 * The pixel layout of a buffer (one of the `GSIMG_PIXEL_` values). Gray pictures are
 * replicated to R, G and B; pictures without alpha get alpha 255 (1.0).
 */
typedef uint32_t GsimgPixelFormat;

/**
 * What a picture is (`gsimg_decoder_info`).
 */
typedef struct {
  /**
   * Native width in pixels.
   */
  uint32_t width;
  /**
   * Native height in pixels.
   */
  uint32_t height;
  /**
   * Channels as stored: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
   */
  uint32_t channels;
  /**
   * 1 if the picture has alpha, else 0.
   */
  uint32_t has_alpha;
  /**
   * EXIF orientation 1 to 8 (1: none). Renders are in the stored orientation; the caller
   * applies this one when showing them.
   */
  uint32_t orientation;
  /**
   * Bytes of the ICC profile, 0 if none (`gsimg_decoder_icc_profile`).
   */
  size_t icc_profile_len;
} GsimgInfo;

/**
 * Where renders run (one of the `GSIMG_BACKEND_` values).
 */
typedef uint32_t GsimgBackend;

/**
 * R, G, B, A bytes; straight alpha.
 */
#define GSIMG_PIXEL_RGBA8 0

/**
 * R, G, B bytes (any alpha dropped).
 */
#define GSIMG_PIXEL_RGB8 1

/**
 * B, G, R, A bytes, colour premultiplied by alpha (rounded to nearest): cairo's
 * CAIRO_FORMAT_ARGB32 on little-endian machines.
 */
#define GSIMG_PIXEL_BGRA8_PREMULTIPLIED 2

/**
 * R, G, B, A as native-endian floats, straight alpha, 0 to 1 (the values before 8-bit
 * rounding).
 */
#define GSIMG_PIXEL_RGBA_F32 3

/**
 * A CUDA GPU when usable, else the CPU (the default).
 */
#define GSIMG_BACKEND_AUTO 0

/**
 * The CPU.
 */
#define GSIMG_BACKEND_CPU 1

/**
 * A CUDA GPU; renders fail with GSIMG_ERROR_BACKEND without one.
 */
#define GSIMG_BACKEND_CUDA 2

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The version of the library, e.g. "0.1.0" (a static string).
 */
const char *gsimg_version(void);

/**
 * The message of the last failed call on this thread, "" if the last call succeeded. Valid
 * until the next gsimg call on this thread.
 */
const char *gsimg_last_error(void);

/**
 * The smallest stride (bytes per row) of a buffer for `width` pixels of `fmt`; 0 if `fmt` is
 * unknown, `width` is 0 or the size overflows.
 */
size_t gsimg_min_stride(uint32_t width, GsimgPixelFormat fmt);

/**
 * Opens a `.gsi` file held in memory (the bytes are copied: `data` may be freed after the
 * call). On success `*out` is a decoder to free with `gsimg_decoder_free`; on failure it is
 * NULL.
 *
 * # Safety
 * `data` points to `len` readable bytes; `out` is valid for writes.
 */
GsimgStatus gsimg_decoder_new_from_memory(const uint8_t *data, size_t len, GsimgDecoder **out);

/**
 * Opens a `.gsi` file by path (bytes of the platform's file name, NUL-terminated); tiles are
 * read when a render needs them. On success `*out` is a decoder to free with
 * `gsimg_decoder_free`; on failure it is NULL.
 *
 * # Safety
 * `path` is NULL or a NUL-terminated string; `out` is valid for writes.
 */
GsimgStatus gsimg_decoder_new_from_file(const char *path, GsimgDecoder **out);

/**
 * Frees a decoder; NULL is ignored. No render may be running on it.
 *
 * # Safety
 * `dec` is NULL or a decoder from this library not yet freed.
 */
void gsimg_decoder_free(GsimgDecoder *dec);

/**
 * The picture's native size, channels, alpha, orientation and ICC profile length.
 *
 * # Safety
 * `dec` is NULL or a live decoder; `out` is NULL or valid for writes.
 */
GsimgStatus gsimg_decoder_info(const GsimgDecoder *dec, GsimgInfo *out);

/**
 * The ICC profile, borrowed from the decoder (valid until it is freed): `*data` NULL and
 * `*len` 0 if the picture has none.
 *
 * # Safety
 * `dec` is NULL or a live decoder; `data` and `len` are NULL or valid for writes.
 */
GsimgStatus gsimg_decoder_icc_profile(const GsimgDecoder *dec, const uint8_t **data, size_t *len);

/**
 * Chooses where later renders run (default GSIMG_BACKEND_AUTO).
 *
 * # Safety
 * `dec` is NULL or a live decoder.
 */
GsimgStatus gsimg_decoder_set_backend(GsimgDecoder *dec, GsimgBackend backend);

/**
 * Limits of later renders: `max_pixels`, the most pixels one render may produce (default
 * 2^28), and `max_render_work`, the fixed part of the Gaussian–pixel evaluations a render may
 * do (default 2^30, plus 64 per output pixel). 0 keeps the current value.
 *
 * # Safety
 * `dec` is NULL or a live decoder.
 */
GsimgStatus gsimg_decoder_set_limits(GsimgDecoder *dec,
                                     uint64_t max_pixels,
                                     uint64_t max_render_work);

/**
 * The size that fits within `max_w × max_h` keeping the aspect ratio exactly as `gsimg decode
 * --width/--height` computes it (a max of 0 leaves that side free; both 0 give the native
 * size). May be larger than the native size.
 *
 * # Safety
 * `out_w` and `out_h` are NULL or valid for writes.
 */
GsimgStatus gsimg_fit_size(uint32_t width,
                           uint32_t height,
                           uint32_t max_w,
                           uint32_t max_h,
                           uint32_t *out_w,
                           uint32_t *out_h);

/**
 * Renders the whole picture at `out_w × out_h` (any size; the aspect ratio may differ) into
 * `buf`, rows `stride` bytes apart (at least `gsimg_min_stride(out_w, fmt)`; `buf_len` at
 * least `stride × (out_h − 1) + gsimg_min_stride(out_w, fmt)`). The pixels equal `gsimg
 * decode --width out_w --height out_h` in the same format.
 *
 * # Safety
 * `dec` is NULL or a live decoder; `buf` is NULL or valid for writes of `buf_len` bytes.
 */
GsimgStatus gsimg_decoder_render(GsimgDecoder *dec,
                                 uint32_t out_w,
                                 uint32_t out_h,
                                 GsimgPixelFormat fmt,
                                 uint8_t *buf,
                                 size_t stride,
                                 size_t buf_len);

/**
 * Renders the rectangle (`x`, `y`, `w`, `h`) of the picture zoomed so that the whole of it
 * would be `full_w × full_h` pixels: equal to `gsimg decode --width full_w --height full_h
 * --region x,y,w,h`. The buffer holds `w × h` pixels, as for `gsimg_decoder_render`.
 *
 * # Safety
 * `dec` is NULL or a live decoder; `buf` is NULL or valid for writes of `buf_len` bytes.
 */
GsimgStatus gsimg_decoder_render_region(GsimgDecoder *dec,
                                        uint32_t full_w,
                                        uint32_t full_h,
                                        uint32_t x,
                                        uint32_t y,
                                        uint32_t w,
                                        uint32_t h,
                                        GsimgPixelFormat fmt,
                                        uint8_t *buf,
                                        size_t stride,
                                        size_t buf_len);

/**
 * Cancels the render in progress on `dec` (callable from any thread): it returns
 * GSIMG_ERROR_CANCELLED soon. A render that starts later is not affected. NULL is ignored.
 *
 * # Safety
 * `dec` is NULL or a live decoder.
 */
void gsimg_decoder_cancel(GsimgDecoder *dec);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* GSIMG_H */
