#!/usr/bin/env python3
"""The Qt image format plugin, used the way Qt programs read pictures (QImageReader, through
python3-pyqt5). Every image is compared byte for byte with `gsimg decode` at the same size.

Usage: qt_test.py GSIMG WORKDIR   (QT_PLUGIN_PATH names a directory with imageformats/libqgsi.so;
WORKDIR holds rgb.gsi, alpha.gsi and orient6.gsi from run.sh and pixbuf_test.py)
"""

from PyQt5.QtCore import QCoreApplication, QRect, QSize
from PyQt5.QtGui import QImage, QImageIOHandler, QImageReader

from harness import check, decode, finish, path, same_pixels

app = QCoreApplication([])


def packed(img):
    """(width, height, format) and the pixels without row padding."""
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    row = w * img.depth() // 8
    data = img.constBits().asstring(img.sizeInBytes())
    return (w, h, img.format()), b"".join(data[y * bpl : y * bpl + row] for y in range(h))


def reference(gsi, fmt, *size_args):
    return packed(QImage(decode(gsi, "qt-ref", *size_args)).convertToFormat(fmt))


def read(gsi, scaled=None, clip=None, auto_transform=False):
    r = QImageReader(gsi)
    r.setAutoTransform(auto_transform)
    if scaled:
        r.setScaledSize(QSize(*scaled))
    if clip:
        r.setScaledClipRect(QRect(*clip))
    img = r.read()
    return r, img


def same(img, ref, what):
    same_pixels(packed(img), ref, what)


rgb = path("rgb.gsi")
check(b"gsi" in [bytes(f) for f in QImageReader.supportedImageFormats()], "Qt lists the gsi format")
check(b"image/x-gsi" in [bytes(m) for m in QImageReader.supportedMimeTypes()], "Qt lists image/x-gsi")
r = QImageReader(rgb)
check(r.canRead() and bytes(r.format()) == b"gsi", "QImageReader recognises the file")
check(r.size() == QSize(320, 241), "size(): native 320x241 before reading")

r, img = read(rgb, scaled=(2000, 1506))
check(img.format() == QImage.Format_RGB888, "RGB file: Format_RGB888")
same(img, reference(rgb, QImage.Format_RGB888, "--width", "2000"), "setScaledSize(2000x1506)")

r, img = read(rgb, scaled=(2560, 1928), clip=(700, 500, 300, 200))
same(
    img,
    reference(rgb, QImage.Format_RGB888, "--width", "2560", "--height", "1928", "--region", "700,500,300,200"),
    "setScaledClipRect of the 8x view",
)

r, img = read(path("alpha.gsi"), scaled=(640, 482))
check(img.format() == QImage.Format_RGBA8888, "file with alpha: Format_RGBA8888 (straight alpha)")
same(img, reference(path("alpha.gsi"), QImage.Format_RGBA8888, "--width", "640"), "alpha.gsi at 640x482")

r, img = read(path("orient6.gsi"), scaled=(400, 301), auto_transform=True)
check(r.transformation() == QImageIOHandler.TransformationRotate90, "orientation 6: TransformationRotate90")
same(img, reference(path("orient6.gsi"), QImage.Format_RGB888, "--width", "400"), "orientation 6 applied by setAutoTransform")

img = QImage(rgb)
same(img, reference(rgb, QImage.Format_RGB888), "QImage(path) at native size")

data = open(rgb, "rb").read()
for name, content in [("qt-truncated.gsi", data[: len(data) // 2]), ("qt-flipped.gsi", data[:4000] + bytes([data[4000] ^ 1]) + data[4001:])]:
    open(path(name), "wb").write(content)
    r, img = read(path(name), scaled=(100, 75))
    check(img.isNull(), "%s: refused (%s)" % (name, r.errorString()))

finish("Qt")
