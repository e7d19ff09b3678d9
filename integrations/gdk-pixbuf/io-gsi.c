/* gdk-pixbuf loader for .gsi (Gaussian-splatting image) files, on gsimg's C API.
 *
 * A .gsi picture has no pixel grid of its own: it renders sharply at any size. So this loader
 * does what a raster loader cannot: it asks the application for the size it wants (the
 * size-prepared callback: gdk_pixbuf_new_from_file_at_scale, gdk_pixbuf_loader_set_size,
 * thumbnailers) and renders the picture at exactly that size. It never renders at the native
 * size to let gdk-pixbuf scale the result.
 *
 * Loading is incremental (begin_load / load_increment / stop_load): the header is read as soon
 * as its bytes arrive, so the application learns the size early (gdk_pixbuf_get_file_info stops
 * there); the picture is rendered once the whole file is in, since every tile of a .gsi file
 * can cover any part of the picture.
 *
 * Pixels: RGBA (straight alpha, as gdk-pixbuf stores it) for files with alpha, else RGB;
 * gray files are rendered as RGB. The file's EXIF orientation goes to the pixbuf's
 * "orientation" option (applications apply it with gdk_pixbuf_apply_embedded_orientation), and
 * its ICC profile to the "icc-profile" option (base64), as gdk-pixbuf's PNG and JPEG loaders do.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#define GDK_PIXBUF_ENABLE_BACKEND
#include <gdk-pixbuf/gdk-pixbuf-io.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#undef GDK_PIXBUF_ENABLE_BACKEND

#include <gsimg/gsimg.h>
#include <stdio.h>
#include <string.h>

/* The file signature (format-spec.md §2.1) and the header's place (§2.3, §4): the first
 * section follows the signature and must be HEAD; its payload holds the width and height at
 * payload offsets 4 and 8. */
static const guint8 GSI_SIGNATURE[8] = {0x89, 'G', 'S', 'I', '\r', '\n', 0x1a, '\n'};
#define GSI_SECTION_HEADER 8   /* tag + length */
#define GSI_HEAD_MIN_PAYLOAD 28 /* up to gaussian_count */
/* A HEAD longer than this is not read early (a newer minor version may append fields, but
 * not kilobytes of them); the library still reads the file at the end. */
#define GSI_HEAD_MAX_EARLY 65536

typedef struct {
    GdkPixbufModuleSizeFunc size_func;
    GdkPixbufModulePreparedFunc prepared_func;
    GdkPixbufModuleUpdatedFunc updated_func;
    gpointer user_data;

    GByteArray *data;      /* the file so far */
    gboolean size_known;   /* size_func has been called */
    gboolean failed;       /* an error was reported: nothing more is done */
    gint width, height;    /* the size asked for (after size_func) */
    guint32 native_width, native_height;
} GsiContext;

static void set_gsimg_error(GError **error, GsimgStatus status, const char *what)
{
    const char *msg = gsimg_last_error();
    GdkPixbufError code;
    switch (status) {
    case GSIMG_ERROR_FORMAT:
        code = GDK_PIXBUF_ERROR_CORRUPT_IMAGE;
        break;
    case GSIMG_ERROR_LIMITS:
        code = GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY;
        break;
    default:
        code = GDK_PIXBUF_ERROR_FAILED;
        break;
    }
    g_set_error(error, GDK_PIXBUF_ERROR, code, "%s: %s", what,
                msg != NULL && msg[0] != '\0' ? msg : "unknown error");
}

static guint32 read_u32le(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

/* CRC-32/ISO-HDLC (zlib's), bitwise: only the small HEAD section goes through it. */
static guint32 crc32_iso_hdlc(const guint8 *p, gsize n)
{
    guint32 crc = 0xffffffffu;
    for (gsize i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xffffffffu;
}

/* Asks the application for the size it wants; FALSE (with error) if it asked for nothing or
 * for a size gdk-pixbuf cannot hold. */
static gboolean ask_size(GsiContext *ctx, guint32 width, guint32 height, GError **error)
{
    if (width > G_MAXINT || height > G_MAXINT) {
        g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                    "GSI picture size %ux%u is too large", width, height);
        return FALSE;
    }
    ctx->native_width = width;
    ctx->native_height = height;
    ctx->width = (gint)width;
    ctx->height = (gint)height;
    ctx->size_known = TRUE;
    if (ctx->size_func != NULL)
        ctx->size_func(&ctx->width, &ctx->height, ctx->user_data);
    if (ctx->width <= 0 || ctx->height <= 0) {
        /* gdk_pixbuf_get_file_info asks for 0x0 once it knows the size: nothing to render. */
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_FAILED,
                            "GSI picture requested at zero width or height");
        return FALSE;
    }
    return TRUE;
}

/* Reads the header once its bytes are in: checks the signature as soon as 8 bytes are there
 * (so a file that is not .gsi fails on the first chunk), and calls size_func once HEAD is
 * complete and its CRC matches. */
static gboolean try_read_header(GsiContext *ctx, GError **error)
{
    const guint8 *d = ctx->data->data;
    gsize n = ctx->data->len;
    if (n < sizeof GSI_SIGNATURE)
        return TRUE;
    if (memcmp(d, GSI_SIGNATURE, sizeof GSI_SIGNATURE) != 0) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                            "Not a GSI file: the signature does not match");
        return FALSE;
    }
    const gsize head = sizeof GSI_SIGNATURE;
    if (n < head + GSI_SECTION_HEADER)
        return TRUE;
    guint32 len = read_u32le(d + head + 4);
    if (memcmp(d + head, "HEAD", 4) != 0 || len < GSI_HEAD_MIN_PAYLOAD) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                            "Corrupt GSI file: it does not start with a header");
        return FALSE;
    }
    if (len > GSI_HEAD_MAX_EARLY)
        return TRUE; /* left to the library at the end */
    gsize end = head + GSI_SECTION_HEADER + len;
    if (n < end + 4)
        return TRUE;
    if (crc32_iso_hdlc(d + head, end - head) != read_u32le(d + end)) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                            "Corrupt GSI file: the header's checksum does not match");
        return FALSE;
    }
    const guint8 *p = d + head + GSI_SECTION_HEADER;
    guint32 w = read_u32le(p + 4), h = read_u32le(p + 8);
    if (p[0] != 1 || w == 0 || h == 0) {
        g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_UNKNOWN_TYPE,
                    "Unsupported GSI file (version %u.%u, %ux%u)", p[0], p[1], w, h);
        return FALSE;
    }
    return ask_size(ctx, w, h, error);
}

static gpointer gsi_begin_load(GdkPixbufModuleSizeFunc size_func,
                               GdkPixbufModulePreparedFunc prepared_func,
                               GdkPixbufModuleUpdatedFunc updated_func, gpointer user_data,
                               GError **error)
{
    (void)error;
    GsiContext *ctx = g_new0(GsiContext, 1);
    ctx->size_func = size_func;
    ctx->prepared_func = prepared_func;
    ctx->updated_func = updated_func;
    ctx->user_data = user_data;
    ctx->data = g_byte_array_new();
    return ctx;
}

static gboolean gsi_load_increment(gpointer context, const guchar *buf, guint size,
                                   GError **error)
{
    GsiContext *ctx = context;
    if (ctx->failed) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_FAILED,
                            "GSI loading already failed");
        return FALSE;
    }
    g_byte_array_append(ctx->data, buf, size);
    if (!ctx->size_known && !try_read_header(ctx, error)) {
        ctx->failed = TRUE;
        return FALSE;
    }
    return TRUE;
}

/* Renders the whole file at the size asked for and hands the pixbuf to the application. */
static gboolean render_file(GsiContext *ctx, GError **error)
{
    GsimgDecoder *dec = NULL;
    GsimgStatus st = gsimg_decoder_new_from_memory(ctx->data->data, ctx->data->len, &dec);
    g_byte_array_set_size(ctx->data, 0); /* the decoder holds its own copy */
    if (st != GSIMG_OK) {
        set_gsimg_error(error, st, "Could not read the GSI file");
        return FALSE;
    }
    gboolean ok = FALSE;
    GdkPixbuf *pixbuf = NULL;
    GsimgInfo info;
    st = gsimg_decoder_info(dec, &info);
    if (st != GSIMG_OK) {
        set_gsimg_error(error, st, "Could not read the GSI file");
        goto out;
    }
    if (!ctx->size_known) {
        if (!ask_size(ctx, info.width, info.height, error))
            goto out;
    } else if (info.width != ctx->native_width || info.height != ctx->native_height) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                            "Corrupt GSI file: inconsistent header");
        goto out;
    }

    gboolean alpha = info.has_alpha != 0;
    pixbuf = gdk_pixbuf_new(GDK_COLORSPACE_RGB, alpha, 8, ctx->width, ctx->height);
    if (pixbuf == NULL) {
        g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY,
                    "Not enough memory for a %dx%d GSI picture", ctx->width, ctx->height);
        goto out;
    }
    gsize byte_len = gdk_pixbuf_get_byte_length(pixbuf);
    st = gsimg_decoder_render(dec, (uint32_t)ctx->width, (uint32_t)ctx->height,
                              alpha ? GSIMG_PIXEL_RGBA8 : GSIMG_PIXEL_RGB8,
                              gdk_pixbuf_get_pixels(pixbuf),
                              (size_t)gdk_pixbuf_get_rowstride(pixbuf), byte_len);
    if (st != GSIMG_OK) {
        set_gsimg_error(error, st, "Could not render the GSI picture");
        goto out;
    }

    if (info.orientation >= 2 && info.orientation <= 8) {
        char value[2] = {(char)('0' + info.orientation), '\0'};
        gdk_pixbuf_set_option(pixbuf, "orientation", value);
    }
    const uint8_t *icc = NULL;
    size_t icc_len = 0;
    if (info.icc_profile_len > 0 && gsimg_decoder_icc_profile(dec, &icc, &icc_len) == GSIMG_OK &&
        icc != NULL && icc_len > 0) {
        gchar *b64 = g_base64_encode(icc, icc_len);
        gdk_pixbuf_set_option(pixbuf, "icc-profile", b64);
        g_free(b64);
    }

    if (ctx->prepared_func != NULL)
        ctx->prepared_func(pixbuf, NULL, ctx->user_data);
    if (ctx->updated_func != NULL)
        ctx->updated_func(pixbuf, 0, 0, ctx->width, ctx->height, ctx->user_data);
    ok = TRUE;

out:
    if (pixbuf != NULL)
        g_object_unref(pixbuf);
    gsimg_decoder_free(dec);
    return ok;
}

static gboolean gsi_stop_load(gpointer context, GError **error)
{
    GsiContext *ctx = context;
    gboolean ok;
    if (ctx->failed) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_FAILED,
                            "GSI loading already failed");
        ok = FALSE;
    } else if (ctx->data->len < sizeof GSI_SIGNATURE) {
        g_set_error_literal(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                            "Truncated GSI file");
        ok = FALSE;
    } else if (!ctx->size_known && !try_read_header(ctx, error)) {
        ok = FALSE;
    } else {
        ok = render_file(ctx, error);
    }
    g_byte_array_unref(ctx->data);
    g_free(ctx);
    return ok;
}

G_MODULE_EXPORT void fill_vtable(GdkPixbufModule *module);
G_MODULE_EXPORT void fill_info(GdkPixbufFormat *info);

G_MODULE_EXPORT void fill_vtable(GdkPixbufModule *module)
{
    module->begin_load = gsi_begin_load;
    module->stop_load = gsi_stop_load;
    module->load_increment = gsi_load_increment;
}

G_MODULE_EXPORT void fill_info(GdkPixbufFormat *info)
{
    static GdkPixbufModulePattern signature[] = {
        {"\x89GSI\r\n\x1a\n", NULL, 100},
        {NULL, NULL, 0},
    };
    static gchar *mime_types[] = {"image/x-gsi", NULL};
    static gchar *extensions[] = {"gsi", NULL};

    info->name = "gsi";
    info->signature = signature;
    info->description = "Gaussian-splatting image (gsimg)";
    info->mime_types = mime_types;
    info->extensions = extensions;
    info->flags = GDK_PIXBUF_FORMAT_THREADSAFE;
    info->license = "MIT";
}
