/* Renders a .gsi picture through the C API at three sizes and one region of a zoomed view,
 * into buffers with padded rows, and writes each as a PAM file.
 *
 *   cc render_sizes.c $(pkg-config --cflags --libs gsimg) -o render_sizes
 *   ./render_sizes photo.gsi outdir
 *
 * Files written in outdir:
 *   fit-160x120.pam   the whole picture fitted within 160x120 (RGBA)
 *   native.pam        the whole picture at its native size (RGBA)
 *   double.pam        the whole picture at twice its native width, aspect kept (RGBA)
 *   region.pam        the rectangle 10,20 50x40 of the double-size view, as
 *                     cairo's premultiplied BGRA
 */
#include <gsimg/gsimg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes w x h pixels of 4 bytes from rows `stride` apart as a PAM file. */
static int write_pam(const char *dir, const char *name, const char *tupltype,
                     const uint8_t *px, uint32_t w, uint32_t h, size_t stride) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    return 0;
  }
  fprintf(f, "P7\nWIDTH %u\nHEIGHT %u\nDEPTH 4\nMAXVAL 255\nTUPLTYPE %s\nENDHDR\n", w, h,
          tupltype);
  for (uint32_t y = 0; y < h; y++)
    fwrite(px + (size_t)y * stride, 4, w, f);
  return fclose(f) == 0;
}

/* Renders the region (x, y, w, h) of the picture zoomed to full_w x full_h in `fmt`, with 32
 * bytes of padding at the end of each row, and writes it. */
static int render(GsimgDecoder *dec, uint32_t full_w, uint32_t full_h, uint32_t x, uint32_t y,
                  uint32_t w, uint32_t h, GsimgPixelFormat fmt, const char *dir,
                  const char *name) {
  size_t stride = gsimg_min_stride(w, fmt) + 32;
  size_t len = stride * h;
  uint8_t *buf = malloc(len);
  if (!buf)
    return 0;
  GsimgStatus st;
  if (x == 0 && y == 0 && w == full_w && h == full_h)
    st = gsimg_decoder_render(dec, w, h, fmt, buf, stride, len);
  else
    st = gsimg_decoder_render_region(dec, full_w, full_h, x, y, w, h, fmt, buf, stride, len);
  int ok = st == GSIMG_OK;
  if (!ok)
    fprintf(stderr, "%s: %s\n", name, gsimg_last_error());
  else
    ok = write_pam(dir, name,
                   fmt == GSIMG_PIXEL_RGBA8 ? "RGB_ALPHA" : "BGRA_PREMULTIPLIED", buf, w, h,
                   stride);
  free(buf);
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s FILE.gsi OUTDIR\n", argv[0]);
    return 2;
  }
  GsimgDecoder *dec = NULL;
  if (gsimg_decoder_new_from_file(argv[1], &dec) != GSIMG_OK) {
    fprintf(stderr, "%s\n", gsimg_last_error());
    return 1;
  }
  GsimgInfo info;
  gsimg_decoder_info(dec, &info);
  printf("gsimg %s: %ux%u, %u channels, alpha %u, orientation %u, ICC %zu bytes\n",
         gsimg_version(), info.width, info.height, info.channels, info.has_alpha,
         info.orientation, info.icc_profile_len);
  gsimg_decoder_set_backend(dec, GSIMG_BACKEND_CPU);

  uint32_t fw, fh, dw, dh;
  int ok = gsimg_fit_size(info.width, info.height, 160, 120, &fw, &fh) == GSIMG_OK &&
           gsimg_fit_size(info.width, info.height, 2 * info.width, 0, &dw, &dh) == GSIMG_OK;
  ok = ok && render(dec, fw, fh, 0, 0, fw, fh, GSIMG_PIXEL_RGBA8, argv[2], "fit-160x120.pam");
  ok = ok && render(dec, info.width, info.height, 0, 0, info.width, info.height,
                    GSIMG_PIXEL_RGBA8, argv[2], "native.pam");
  ok = ok && render(dec, dw, dh, 0, 0, dw, dh, GSIMG_PIXEL_RGBA8, argv[2], "double.pam");
  ok = ok && render(dec, dw, dh, 10, 20, 50, 40, GSIMG_PIXEL_BGRA8_PREMULTIPLIED, argv[2],
                    "region.pam");
  printf("fit %ux%u, double %ux%u\n", fw, fh, dw, dh);
  gsimg_decoder_free(dec);
  return ok ? 0 : 1;
}
