#!/usr/bin/env python3
"""JPEG rate-distortion on Kodak, the reference gsimg's codec is compared with.

Protocol of shared/notes/codec-anchors.md §2 ([M] rows): Pillow's JPEG encoder (libjpeg-turbo,
default 4:2:0 subsampling), one quality for all 24 images, bpp from the file size, RGB PSNR of
the 8-bit decode, both averaged over the images. Prints the curve, and with --at, JPEG's PSNR
interpolated linearly at the given bpp values.

    python3 benches/jpeg_kodak.py [--kodak DIR] [--at 0.25,0.5,1.0]

Needs Pillow and numpy (pip install -r benches/requirements.txt).
"""
import argparse
import io
import os

import numpy as np
from PIL import Image


def curve(kodak):
    files = sorted(f for f in os.listdir(kodak) if f.endswith(".png"))
    images = [np.asarray(Image.open(os.path.join(kodak, f)).convert("RGB")) for f in files]
    rows = []
    for q in list(range(1, 10)) + list(range(10, 96, 5)):
        bpp, psnr = 0.0, 0.0
        for im in images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=q)
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
            mse = np.mean((dec - im.astype(np.float64)) ** 2)
            bpp += len(buf.getvalue()) * 8 / (im.shape[0] * im.shape[1])
            psnr += 10 * np.log10(255.0**2 / max(mse, 1e-12))
        rows.append((q, bpp / len(images), psnr / len(images)))
    return rows, len(images)


def at(rows, x):
    pts = sorted((b, p) for _, b, p in rows)
    if x < pts[0][0] or x > pts[-1][0]:
        return None
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= x <= b1:
            return p0 + (p1 - p0) * (x - b0) / (b1 - b0)
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--kodak", default=os.path.join(here, "..", "..", "shared", "bench", "kodak"))
    ap.add_argument("--at", default="", help="comma-separated bpp values to interpolate at")
    a = ap.parse_args()
    rows, n = curve(a.kodak)
    import PIL

    print(f"JPEG (Pillow {PIL.__version__}, libjpeg-turbo, 4:2:0) on {n} Kodak images")
    print(f"{'quality':>8} {'bpp':>8} {'PSNR':>8}")
    for q, b, p in rows:
        print(f"{q:>8} {b:>8.4f} {p:>8.2f}")
    if a.at:
        print("\ninterpolated:")
        for x in (float(v) for v in a.at.split(",")):
            v = at(rows, x)
            print(f"  {x:.4f} bpp: " + ("outside the curve" if v is None else f"{v:.2f} dB"))


if __name__ == "__main__":
    main()
