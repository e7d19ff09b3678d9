#!/usr/bin/env python3
"""The gdk-pixbuf loader, used the way GTK programs use it (GdkPixbuf through python3-gi).

Run by integrations/tests/run.sh, which builds the loader, registers it in a private
loaders.cache (GDK_PIXBUF_MODULE_FILE) and makes the test pictures. Every rendered pixbuf is
compared byte for byte with `gsimg decode` at the same size, loaded through gdk-pixbuf's PNG
loader (which expands gray to RGB as the loader does).

Usage: pixbuf_test.py GSIMG WORKDIR  (WORKDIR holds rgb.gsi, alpha.gsi, gray.gsi)
"""

import struct
import subprocess
import zlib

import gi

gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, GLib  # noqa: E402

from harness import GSIMG, check, decode, finish, path, same_pixels  # noqa: E402


def packed(pb):
    """The pixbuf's pixels without row padding, with (width, height, channels)."""
    w, h, n, stride = pb.get_width(), pb.get_height(), pb.get_n_channels(), pb.get_rowstride()
    data = pb.read_pixel_bytes().get_data()
    rows = b"".join(data[y * stride : y * stride + w * n] for y in range(h))
    return (w, h, n), rows


def reference(gsi, *size_args):
    """`gsimg decode` of `gsi` with the given size arguments, as gdk-pixbuf reads the PNG."""
    return packed(GdkPixbuf.Pixbuf.new_from_file(decode(gsi, "ref", *size_args)))


def same(pb, ref, what):
    same_pixels(packed(pb), ref, what)


# --- Whole-file loads at the size the application asks for --------------------------------
rgb = path("rgb.gsi")
pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(rgb, 2000, -1, True)
check(pb.get_width() == 2000, "new_from_file_at_scale(2000, -1): 2000 wide (%d)" % pb.get_width())
check(not pb.get_has_alpha() and pb.get_n_channels() == 3, "RGB file: 3-channel pixbuf")
same(pb, reference(rgb, "--width", "2000"), "rgb.gsi at width 2000")

pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(rgb, 300, 100, False)
same(pb, reference(rgb, "--width", "300", "--height", "100"), "rgb.gsi at 300x100 (aspect not kept)")

pb = GdkPixbuf.Pixbuf.new_from_file(rgb)
same(pb, reference(rgb), "rgb.gsi at native size")

alpha = path("alpha.gsi")
pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(alpha, 640, -1, True)
check(pb.get_has_alpha() and pb.get_n_channels() == 4, "file with alpha: 4-channel pixbuf")
same(pb, reference(alpha, "--width", "640"), "alpha.gsi at width 640")

gray = path("gray.gsi")
pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(gray, -1, 500, True)
check(pb.get_n_channels() == 3, "gray file: 3-channel pixbuf")
# With one side given, gdk-pixbuf truncates the other (320 * 500 / 241 = 663.9 -> 663) where
# gsimg decode rounds (664); the loader renders the size gdk-pixbuf asks for.
check(pb.get_width() == 663, "new_from_file_at_scale(-1, 500): gdk-pixbuf asks for 663x500")
same(pb, reference(gray, "--width", "663", "--height", "500"), "gray.gsi at 663x500")

fmt, w, h = GdkPixbuf.Pixbuf.get_file_info(rgb)
check(
    fmt is not None and fmt.get_name() == "gsi" and "image/x-gsi" in fmt.get_mime_types(),
    "get_file_info: format gsi, image/x-gsi",
)
check((w, h) == reference(rgb)[0][:2], "get_file_info: native size %dx%d" % (w, h))

# --- Incremental loading, as viewers and browsers feed data ---------------------------------
data = open(rgb, "rb").read()
loader = GdkPixbuf.PixbufLoader.new_with_mime_type("image/x-gsi")
prepared_at = []
loader.connect("size-prepared", lambda _l, w, h: prepared_at.append((fed[0], w, h)))
loader.set_size(777, 333)
fed = [0]
for i in range(0, len(data), 97):
    loader.write(data[i : i + 97])
    fed[0] = i + 97
loader.close()
check(
    len(prepared_at) == 1 and prepared_at[0][0] < len(data),
    "PixbufLoader: size-prepared once, after the header (%s of %d bytes)"
    % (prepared_at[0][0] if prepared_at else None, len(data)),
)
same(loader.get_pixbuf(), reference(rgb, "--width", "777", "--height", "333"), "PixbufLoader in 97-byte chunks with set_size(777, 333)")

# The size chosen in the size-prepared handler, as GTK widgets do.
loader = GdkPixbuf.PixbufLoader()
loader.connect("size-prepared", lambda l, w, h: l.set_size(w * 3, h * 3))
for i in range(0, len(data), 4096):
    loader.write(data[i : i + 4096])
loader.close()
check(loader.get_format().get_name() == "gsi", "PixbufLoader without a type: recognised by signature")
same(loader.get_pixbuf(), reference(rgb, "--scale", "3"), "set_size(3x) in size-prepared")


# --- EXIF orientation -----------------------------------------------------------------------
def with_orientation(src, dst, orientation):
    """Copies a .gsi file, adding a `meta` section (format-spec.md §8) with key 2 after HEAD."""
    b = open(src, "rb").read()
    head_len = struct.unpack_from("<I", b, 12)[0]
    end = 8 + 8 + head_len + 4
    payload = bytes([2]) + struct.pack("<I", 1) + bytes([orientation])
    body = b"meta" + struct.pack("<I", len(payload)) + payload
    section = body + struct.pack("<I", zlib.crc32(body))
    open(dst, "wb").write(b[:end] + section + b[end:])


orient = path("orient6.gsi")
with_orientation(rgb, orient, 6)
pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(orient, 400, -1, True)
check(pb.get_option("orientation") == "6", "orientation 6: pixbuf option 'orientation' = 6")
same(
    pb.apply_embedded_orientation(),
    reference(orient, "--width", "400"),
    "orientation 6 applied by gdk_pixbuf_apply_embedded_orientation",
)
pb = GdkPixbuf.Pixbuf.new_from_file(rgb)
check(pb.get_option("orientation") is None, "no orientation in the file: no option")


# --- ICC profile ------------------------------------------------------------------------------
def minimal_icc():
    """A 132-byte ICC profile: the 128-byte header (size, version 2.1, a display RGB profile,
    'acsp') and an empty tag table; enough for gsimg's checks and to be carried through."""
    h = bytearray(128)
    struct.pack_into(">I", h, 0, 132)
    struct.pack_into(">I", h, 8, 0x02100000)
    h[12:16], h[16:20], h[20:24], h[36:40] = b"mntr", b"RGB ", b"XYZ ", b"acsp"
    return bytes(h) + struct.pack(">I", 0)


def png_with_icc(src, dst, icc):
    """Copies a PNG, adding an iCCP chunk after IHDR."""
    b = open(src, "rb").read()
    ihdr_end = 8 + 8 + struct.unpack_from(">I", b, 8)[0] + 4
    body = b"iCCP" + b"test\0\0" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    open(dst, "wb").write(b[:ihdr_end] + chunk + b[ihdr_end:])


icc = minimal_icc()
png_with_icc(path("alpha.png"), path("icc.png"), icc)
subprocess.run([GSIMG, "-q", "--force", "encode", "--method", "analytic", "--effort", "fast", path("icc.png"), path("icc.gsi")], check=True)
pb = GdkPixbuf.Pixbuf.new_from_file_at_scale(path("icc.gsi"), 100, -1, True)
opt = pb.get_option("icc-profile")
check(opt is not None and GLib.base64_decode(opt) == icc, "ICC profile: pixbuf option 'icc-profile' holds the file's profile")
check(GdkPixbuf.Pixbuf.new_from_file(rgb).get_option("icc-profile") is None, "no ICC profile in the file: no option")


# --- Bad input: a GError, never a crash -----------------------------------------------------
def must_fail(name, content, what):
    p = path(name)
    open(p, "wb").write(content)
    try:
        GdkPixbuf.Pixbuf.new_from_file_at_scale(p, 200, -1, True)
        check(False, "%s: refused" % what)
    except GLib.Error as e:
        check(e.domain == "gdk-pixbuf-error-quark", "%s: GError (%s)" % (what, e.message))


flipped = bytearray(data)
flipped[len(data) // 2] ^= 0x20
must_fail("flipped.gsi", bytes(flipped), "a flipped bit in a tile")
must_fail("truncated.gsi", data[: len(data) // 2], "a truncated file")
must_fail("header-only.gsi", data[:40], "a file cut inside the header")
must_fail("badhead.gsi", data[:8] + b"XXXX" + data[12:], "a file without HEAD")
must_fail("empty.gsi", b"", "an empty .gsi file")
must_fail("sigonly.gsi", data[:8], "the signature alone")

loader = GdkPixbuf.PixbufLoader.new_with_mime_type("image/x-gsi")
try:
    loader.write(b"\x89PNG\r\n\x1a\n" + bytes(100))
    loader.close()
    check(False, "PixbufLoader fed a PNG as image/x-gsi: refused")
except GLib.Error as e:
    check(True, "PixbufLoader fed a PNG as image/x-gsi: GError on write (%s)" % e.message)

# --- The thumbnailer (the .thumbnailer file's command) --------------------------------------
thumb = path("thumb.png")
subprocess.run(["gdk-pixbuf-thumbnailer", "-s", "256", rgb, thumb], check=True)
pb = GdkPixbuf.Pixbuf.new_from_file(thumb)
check(max(pb.get_width(), pb.get_height()) == 256, "gdk-pixbuf-thumbnailer -s 256: %dx%d" % (pb.get_width(), pb.get_height()))
same(pb, reference(rgb, "--width", str(pb.get_width()), "--height", str(pb.get_height())), "thumbnail rendered at its size")

finish("gdk-pixbuf")
