#!/usr/bin/env python3
"""Rate-distortion of gsimg against JPEG, WebP and AVIF, measured in one run on the same pictures.

What it measures, for each folder of pictures given with --images:

* gsimg at each setting given with --gsimg, swept over its values: the `gsimg` binary (--bin)
  encodes every picture (wall clock and CPU time of the command, from reading the PNG to the file
  written), `gsimg decode` renders the file at native size, and that 8-bit render is compared
  with the 8-bit original;
* JPEG (libjpeg-turbo through Pillow, 4:2:0), WebP (libwebp, method 6) and AVIF (libavif + aom,
  speed 6, 4:2:0), each swept over its quality (--jpeg-q, --webp-q, --avif-q), through Pillow.

Protocol (the one every figure of BENCHMARKS.md's RD tables follows): RGB PSNR of the 8-bit
decode against the 8-bit original, MSE per picture -> PSNR -> mean over the pictures; bpp = file
bytes * 8 / pixels, mean over the pictures; each setting or quality gives one point (mean bpp,
mean PSNR) of its codec's curve. A codec's PSNR at a given bpp is interpolated linearly in bpp
on that curve (never extrapolated). BD-rate (Bjontegaard) is computed on log10(bpp) as a
function of PSNR, each curve interpolated with a monotone piecewise cubic (PCHIP,
Fritsch-Carlson) through its points, integrated exactly over the PSNR range both curves cover
(the range is printed with it); BD-PSNR likewise on PSNR as a function of log10(bpp). Points that
do not raise the PSNR over a cheaper point of the same curve are left out of the BD fits (they
stay in the curve tables).

The 2x display test (--display DIR, its first 8 pictures in name order, i.e. Kodak's
kodim01-08): each picture is downscaled to half size with Pillow's BOX filter (the mean of each
2x2 block), every codec encodes the half-size picture at the largest size not above --display-bytes
(default 12,000 bytes; its quality searched by bisection for each picture), gsimg renders its file
at the full size (`gsimg decode --width W --height H`), the JPEG, WebP and AVIF decodes are
upscaled to the full size with Pillow's BICUBIC, and everything is compared with the full-size
original. A gsimg setting whose template has {bytes} is given the budget directly (a target-size
option) instead of being searched over {q}; such a setting takes part in the display test only
(for RD curves, sweep the target with {q}: 'ts@4000,8000,16000:encode --target-size {q}').

Settings: --gsimg 'LABEL[@V1,V2,...]:TEMPLATE'. TEMPLATE is the gsimg command line after the
binary, with {q} standing for each value swept (default values: --gsimg-q), e.g.

    --gsimg 'default@50,60,70,80,90,95:encode --quality {q}'
    --gsimg 'refine40@50,70,90:encode --refine 40 --quality {q}'
    --gsimg 'analytic@10,30,60:encode --method analytic --quality {q}'
    --gsimg 'fast:encode --effort fast --quality {q}'

{in} and {out} stand for the input picture and the output file; when the template has neither,
they are put after its first word (`encode IN OUT ...`). A new encoder option needs no change here.

Held-out pictures: --build-heldout DIR writes the project's held-out evaluation set (the
validation split of models/data, never used for training; listed with sha256 in
benches/heldout.tsv) as PNG into DIR, from data/val when it is there, else from the pinned Debian
packages (apt-get download into data/debs/, sha256 checked against models/data/packages.tsv and
manifest.tsv), through the recipe's own loader and resize (models/data/build_dataset.py), then
centre-cropped to at most 768x512 (512x768 for portrait pictures), never resized further.

Usage (Pillow >= 12 with AVIF, numpy: `pip install -r benches/requirements.txt`):

    python3 benches/rd.py --build-heldout data/heldout
    python3 benches/rd.py --images kodak=PATH/TO/kodak --images heldout=data/heldout \\
        --display PATH/TO/kodak --gsimg 'default@50,70,90:encode --quality {q}' --json rd.json
    python3 benches/rd.py --self-test     # checks the interpolation, PCHIP and BD-rate code

--limit N takes the first N pictures of each folder (for a quick try). The Markdown report goes
to stdout, progress to stderr; --report FILE prints it again from a --json file.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BPP_POINTS = (0.25, 0.5, 0.75, 1.0)
IMAGE_EXT = (".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

DEFAULT_JPEG_Q = "2,4,6,8,10,15,20,30,40,50,60,70,80,90"
DEFAULT_WEBP_Q = "0,5,10,20,30,40,50,60,70,80,90"
DEFAULT_AVIF_Q = "10,20,30,40,50,60,70,80,90"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Curves: interpolation, PCHIP, Bjontegaard
# ---------------------------------------------------------------------------------------------
def interp_at(points, x):
    """Linear interpolation of y at x on points [(x, y)] sorted by x; None outside their range.
    Equal x values (identical files at several qualities) are averaged first."""
    if not points:
        return None
    merged = {}
    for px, py in points:
        merged.setdefault(px, []).append(py)
    pts = sorted((px, sum(v) / len(v)) for px, v in merged.items())
    if x < pts[0][0] or x > pts[-1][0]:
        return None
    if len(pts) == 1:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def monotone_points(points):
    """The points (rate, quality) sorted by rate that raise the quality over every cheaper one:
    what a Bjontegaard fit can use (a curve needs quality strictly increasing with rate)."""
    out = []
    for r, q in sorted(points):
        if not out or (q > out[-1][1] and r > out[-1][0]):
            out.append((r, q))
    return out


class Pchip:
    """Monotone piecewise cubic Hermite interpolant (Fritsch-Carlson slopes, as in VCEG/JVET
    BD-rate tools), with its exact integral. xs strictly increasing, at least 2 points."""

    def __init__(self, xs, ys):
        if len(xs) < 2 or any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError("Pchip needs >= 2 strictly increasing x")
        self.x, self.y = list(xs), list(ys)
        h = [b - a for a, b in zip(xs, xs[1:])]
        delta = [(ys[k + 1] - ys[k]) / h[k] for k in range(len(h))]
        n = len(xs)
        d = [0.0] * n
        if n == 2:
            d = [delta[0], delta[0]]
        else:
            for k in range(1, n - 1):
                if delta[k - 1] * delta[k] <= 0:
                    d[k] = 0.0
                else:
                    w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
                    d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
            d[0] = self._end(h[0], h[1], delta[0], delta[1])
            d[-1] = self._end(h[-1], h[-2], delta[-1], delta[-2])
        self.h, self.d = h, d

    @staticmethod
    def _end(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if s * d0 <= 0:
            return 0.0
        if d0 * d1 <= 0 and abs(s) > 3 * abs(d0):
            return 3 * d0
        return s

    def _seg(self, x):
        k = 0
        while k < len(self.h) - 1 and x > self.x[k + 1]:
            k += 1
        return k

    def __call__(self, x):
        k = self._seg(x)
        h, t = self.h[k], (x - self.x[k]) / self.h[k]
        return ((2 * t**3 - 3 * t**2 + 1) * self.y[k] + (t**3 - 2 * t**2 + t) * h * self.d[k]
                + (-2 * t**3 + 3 * t**2) * self.y[k + 1] + (t**3 - t**2) * h * self.d[k + 1])

    def _partial(self, k, t):
        """Integral over [x_k, x_k + t h_k] of segment k."""
        h = self.h[k]
        return h * ((t**4 / 2 - t**3 + t) * self.y[k] + (t**4 / 4 - 2 * t**3 / 3 + t**2 / 2) * h * self.d[k]
                    + (-t**4 / 2 + t**3) * self.y[k + 1] + (t**4 / 4 - t**3 / 3) * h * self.d[k + 1])

    def antiderivative(self, x):
        """Integral from x_0 to x (x within [x_0, x_n])."""
        k = self._seg(x)
        return sum(self._partial(j, 1.0) for j in range(k)) + self._partial(k, (x - self.x[k]) / self.h[k])

    def integral(self, a, b):
        return self.antiderivative(b) - self.antiderivative(a)


def bd_rate(ref, test):
    """Bjontegaard delta rate of `test` against `ref` (curves of (bpp, PSNR) points), in percent
    (negative: fewer bits for the same PSNR), with the PSNR range it was taken over; None where
    the curves share no PSNR range or one has fewer than 2 usable points."""
    r, t = monotone_points(ref), monotone_points(test)
    if len(r) < 2 or len(t) < 2:
        return None
    lo, hi = max(r[0][1], t[0][1]), min(r[-1][1], t[-1][1])
    if hi <= lo:
        return None
    fr = Pchip([q for _, q in r], [math.log10(b) for b, _ in r])
    ft = Pchip([q for _, q in t], [math.log10(b) for b, _ in t])
    avg = (ft.integral(lo, hi) - fr.integral(lo, hi)) / (hi - lo)
    return {"percent": (10**avg - 1) * 100, "psnr_lo": lo, "psnr_hi": hi}


def bd_psnr(ref, test):
    """Bjontegaard delta PSNR (dB, positive: better) over the log-rate range both curves cover."""
    r, t = monotone_points(ref), monotone_points(test)
    if len(r) < 2 or len(t) < 2:
        return None
    lr = [math.log10(b) for b, _ in r]
    lt = [math.log10(b) for b, _ in t]
    lo, hi = max(lr[0], lt[0]), min(lr[-1], lt[-1])
    if hi <= lo:
        return None
    fr, ft = Pchip(lr, [q for _, q in r]), Pchip(lt, [q for _, q in t])
    return {"db": (ft.integral(lo, hi) - fr.integral(lo, hi)) / (hi - lo), "bpp_lo": 10**lo, "bpp_hi": 10**hi}


def psnr_of_mse(mse):
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


# ---------------------------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------------------------
def self_test():
    fails = []

    def check(name, got, want, tol):
        ok = got is not None and abs(got - want) <= tol
        log(f"  {'ok  ' if ok else 'FAIL'} {name}: {got} (want {want} +- {tol})")
        if not ok:
            fails.append(name)

    log("self-test")
    pts = [(0.2, 25.0), (0.4, 28.0), (0.8, 31.0), (1.6, 34.0)]
    check("linear interpolation between points", interp_at(pts, 0.6), 29.5, 1e-12)
    check("interpolation at a point", interp_at(pts, 0.8), 31.0, 1e-12)
    log(f"  {'ok  ' if interp_at(pts, 0.1) is None and interp_at(pts, 2.0) is None else 'FAIL'}"
        " no extrapolation outside the measured range")
    if interp_at(pts, 0.1) is not None or interp_at(pts, 2.0) is not None:
        fails.append("extrapolation")
    check("equal-bpp points averaged", interp_at([(0.5, 30.0), (0.5, 32.0), (1.0, 33.0)], 0.5), 31.0, 1e-12)
    check("PSNR of MSE 65.025", psnr_of_mse(65.025), 30.0, 1e-9)
    # PCHIP: exact on straight lines, its integral exact for them; monotone data stays monotone.
    p = Pchip([0.0, 1.0, 3.0, 4.0], [1.0, 3.0, 7.0, 9.0])
    check("PCHIP reproduces a line", p(2.5), 6.0, 1e-12)
    check("PCHIP integral of a line over [0.5, 3.5]", p.integral(0.5, 3.5), 15.0, 1e-12)
    q = Pchip([0.0, 1.0, 2.0, 5.0], [0.0, 0.1, 5.0, 5.2])
    xs = [i * 0.01 for i in range(501)]
    vals = [q(x) for x in xs]
    mono = all(b >= a - 1e-12 for a, b in zip(vals, vals[1:]))
    log(f"  {'ok  ' if mono else 'FAIL'} PCHIP keeps monotone data monotone")
    if not mono:
        fails.append("pchip monotone")
    # The integral against a fine Riemann sum of the interpolant itself.
    riemann = sum(q(0.3 + (i + 0.5) * 4.4 / 20000) for i in range(20000)) * 4.4 / 20000
    check("PCHIP integral = midpoint sum over [0.3, 4.7]", q.integral(0.3, 4.7), riemann, 1e-6)
    # BD-rate: a curve that needs 20 % fewer bits for every PSNR is -20 %, whatever its shape and
    # points; one that needs 25 % more is +25 %. Only the common PSNR range counts.
    ref = [(b, 20 + 8 * math.log2(b / 0.1) - 0.4 * math.log2(b / 0.1) ** 2) for b in (0.12, 0.25, 0.5, 0.9, 1.7)]
    check("BD-rate of a curve 0.8x the rate", bd_rate(ref, [(b * 0.8, q) for b, q in ref])["percent"], -20.0, 1e-9)
    check("BD-rate of a curve 1.25x the rate", bd_rate(ref, [(b * 1.25, q) for b, q in ref])["percent"], 25.0, 1e-9)
    # Over a partial overlap the fit of the shorter curve has other end slopes, so only a curve
    # whose log-rate is linear in PSNR (which PCHIP reproduces exactly) gives an exact answer.
    lin = [(b, 20 + 10 * math.log10(b / 0.1)) for b in (0.12, 0.25, 0.5, 0.9, 1.7)]
    res = bd_rate(lin, [(b * 0.8, q) for b, q in lin[1:4]])
    check("BD-rate over a partial overlap", res["percent"], -20.0, 1e-9)
    check("  its range starts at the shorter curve's", res["psnr_lo"], lin[1][1], 1e-12)
    check("BD-PSNR of a curve 0.5 dB higher", bd_psnr(ref, [(b, q + 0.5) for b, q in ref])["db"], 0.5, 1e-9)
    check("BD-rate against itself", bd_rate(ref, ref)["percent"], 0.0, 1e-12)
    # A point that does not raise the PSNR is left out of the fit (the network's identical files).
    flat = ref + [(ref[-1][0] * 1.3, ref[-1][1] - 0.2)]
    check("BD-rate ignores a costlier, worse point", bd_rate(ref, [(b * 0.8, q) for b, q in flat])["percent"], -20.0, 1e-9)
    ok_none = bd_rate(ref, [(5.0, 60.0), (6.0, 61.0)]) is None
    log(f"  {'ok  ' if ok_none else 'FAIL'} BD-rate is None without a common PSNR range")
    if not ok_none:
        fails.append("no overlap")
    if fails:
        log(f"self-test FAILED: {', '.join(fails)}")
        return 1
    log("self-test passed")
    return 0


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------
def load_rgb_array(path):
    from PIL import Image
    import numpy as np
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def list_pictures(folder, limit=None):
    d = Path(folder)
    if not d.is_dir():
        sys.exit(f"rd.py: {folder}: not a folder")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXT and p.is_file())
    if not files:
        sys.exit(f"rd.py: {folder}: no pictures ({', '.join(IMAGE_EXT)})")
    return files[:limit] if limit else files


def mse(a, b):
    import numpy as np
    if a.shape != b.shape:
        raise ValueError(f"decoded size {b.shape[1]}x{b.shape[0]} != original {a.shape[1]}x{a.shape[0]}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


# ---------------------------------------------------------------------------------------------
# Codecs through Pillow
# ---------------------------------------------------------------------------------------------
ANCHORS = {
    "JPEG": ("JPEG", lambda q: {"quality": q, "subsampling": "4:2:0"}),
    "WebP": ("WEBP", lambda q: {"quality": q, "method": 6}),
    "AVIF": ("AVIF", lambda q: {"quality": q, "speed": 6, "subsampling": "4:2:0"}),
}


def pillow_encode(arr, codec, q):
    """(file bytes, decoded RGB array, encode seconds) of `arr` through Pillow."""
    from PIL import Image
    import numpy as np
    fmt, kw = ANCHORS[codec]
    im = Image.fromarray(arr)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    im.save(buf, fmt, **kw(q))
    dt = time.perf_counter() - t0
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as d:
        dec = np.asarray(d.convert("RGB"))
    return data, dec, dt


def codec_versions():
    import PIL
    from PIL import features
    v = {"Pillow": PIL.__version__}
    for name, feat in (("libjpeg-turbo", "libjpeg_turbo"), ("libwebp", "webp"), ("libavif", "avif")):
        try:
            v[name] = features.version(feat)
        except Exception:  # noqa: BLE001 - a missing feature is reported as such
            v[name] = None
    return v


# ---------------------------------------------------------------------------------------------
# gsimg
# ---------------------------------------------------------------------------------------------
class Setting:
    """One --gsimg setting: a label, the values swept and the command template."""

    def __init__(self, spec, default_values):
        head, sep, template = spec.partition(":")
        if not sep or not template.strip():
            sys.exit(f"rd.py: --gsimg '{spec}': expected LABEL[@V1,V2,...]:TEMPLATE")
        label, at, values = head.partition("@")
        self.label = label.strip()
        self.template = template.strip()
        if not self.label:
            sys.exit(f"rd.py: --gsimg '{spec}': empty label")
        self.values = [v.strip() for v in (values if at else default_values).split(",") if v.strip()]
        if "{q}" not in self.template:
            self.values = [""]
        self.target_size = "{bytes}" in self.template

    def argv(self, binary, src, dst, q="", nbytes=None):
        return expand(binary, shlex.split(self.template), src, dst, q=q, bytes=nbytes)


def expand(binary, words, src, dst, **subs):
    if not any("{in}" in w for w in words) and not any("{out}" in w for w in words):
        words = words[:1] + ["{in}", "{out}"] + words[1:]
    table = {"in": str(src), "out": str(dst)}
    table.update({k: "" if v is None else str(v) for k, v in subs.items()})
    out = [binary]
    for w in words:
        for k, v in table.items():
            w = w.replace("{" + k + "}", v)
        out.append(w)
    return out


def run_timed(argv):
    """Runs argv; (wall seconds, CPU seconds of the child) or exits with its error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"rd.py: failed ({r.returncode}): {shlex.join(argv)}\n{r.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def gsimg_encode(binary, setting, src, work, q=None, nbytes=None):
    """Encodes src; (file bytes, wall s, CPU s)."""
    dst = Path(work) / "out.gsi"
    if dst.exists():
        dst.unlink()
    wall, cpu = run_timed(setting.argv(binary, src, dst, q=q, nbytes=nbytes))
    return dst.read_bytes(), wall, cpu


def gsimg_decode(binary, decode_template, gsi_bytes, work, width=None, height=None):
    src = Path(work) / "dec.gsi"
    src.write_bytes(gsi_bytes)
    dst = Path(work) / "dec.png"
    if dst.exists():
        dst.unlink()
    words = shlex.split(decode_template)
    if width is not None:
        words += ["--width", str(width), "--height", str(height)]
    run_timed(expand(binary, words, src, dst))
    return load_rgb_array(dst)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def point_summary(per_picture):
    n = len(per_picture)
    out = {
        "bpp": sum(p["bpp"] for p in per_picture) / n,
        "psnr": sum(p["psnr"] for p in per_picture) / n,
        "bytes": sum(p["bytes"] for p in per_picture) / n,
    }
    if "wall_s" in per_picture[0]:
        out["encode_wall_s_median"] = statistics.median(p["wall_s"] for p in per_picture)
        out["encode_cpu_s_median"] = statistics.median(p["cpu_s"] for p in per_picture)
    return out


def measure_set(name, files, args, settings, work):
    originals = [load_rgb_array(f) for f in files]
    pixels = [a.shape[0] * a.shape[1] for a in originals]
    curves = {}
    for codec, qs in (("JPEG", args.jpeg_q), ("WebP", args.webp_q), ("AVIF", args.avif_q)):
        pts = []
        for q in qs:
            per = []
            for f, a, px in zip(files, originals, pixels):
                data, dec, dt = pillow_encode(a, codec, q)
                per.append({"picture": f.name, "bytes": len(data), "bpp": len(data) * 8 / px,
                            "psnr": psnr_of_mse(mse(a, dec)), "encode_inproc_s": dt})
            s = point_summary(per)
            s["encode_inproc_s_median"] = statistics.median(p["encode_inproc_s"] for p in per)
            pts.append({"value": q, **s, "pictures": per})
            log(f"[{name}] {codec} q{q}: {s['bpp']:.4f} bpp {s['psnr']:.2f} dB")
        curves[codec] = {"kind": "anchor", "points": pts}
    for st in settings:
        if st.target_size:
            log(f"[{name}] gsimg {st.label}: a {{bytes}} template is for the display test only (sweep with {{q}})")
            continue
        pts = []
        for v in st.values:
            per = []
            for f, a, px in zip(files, originals, pixels):
                data, wall, cpu = gsimg_encode(args.bin, st, f, work, q=v)
                dec = gsimg_decode(args.bin, args.decode, data, work)
                per.append({"picture": f.name, "bytes": len(data), "bpp": len(data) * 8 / px,
                            "psnr": psnr_of_mse(mse(a, dec)), "wall_s": wall, "cpu_s": cpu})
            s = point_summary(per)
            pts.append({"value": v, **s, "pictures": per})
            log(f"[{name}] gsimg {st.label} {v}: {s['bpp']:.4f} bpp {s['psnr']:.2f} dB, "
                f"median {s['encode_wall_s_median']:.2f} s wall / {s['encode_cpu_s_median']:.2f} s CPU")
        curves[st.label] = {"kind": "gsimg", "template": st.template, "points": pts}
    return {"name": name, "pictures": [f.name for f in files], "curves": curves}


def curve_xy(curve):
    return [(p["bpp"], p["psnr"]) for p in curve["points"]]


def search_budget(size_of, lo, hi, budget):
    """Bisects the integer quality in [lo, hi] for the largest file not above budget (sizes
    assumed to grow with quality); returns the chosen quality and every size seen."""
    seen = {}

    def size(q):
        if q not in seen:
            seen[q] = size_of(q)
        return seen[q]

    if size(lo) <= budget:
        a, b = lo, hi
        if size(hi) <= budget:
            a = hi
        while b - a > 1:
            m = (a + b) // 2
            if size(m) <= budget:
                a = m
            else:
                b = m
    fitting = [q for q, s in seen.items() if s <= budget]
    best = max(fitting, key=lambda q: (seen[q], q)) if fitting else min(seen, key=lambda q: seen[q])
    return best, seen


def display_test(files, args, settings, work):
    """The 2x display test: per codec the mean bytes and full-size PSNR at the budget, and for
    each gsimg setting the anchors at that setting's own bytes, picture by picture (equal bytes
    even where gsimg cannot get down to the budget)."""
    from PIL import Image
    import numpy as np
    budget = args.display_bytes
    pics = []
    for f in files:
        full = load_rgb_array(f)
        H, W = full.shape[:2]
        half_img = Image.fromarray(full).resize((W // 2, H // 2), Image.Resampling.BOX)
        png = Path(work) / f"half-{len(pics)}.png"
        half_img.save(png)
        pics.append({"name": f.name, "full": full, "half": np.asarray(half_img), "png": png, "W": W, "H": H})

    def anchor(pic, codec, limit):
        cache = {}

        def size_of(q):
            cache[q] = pillow_encode(pic["half"], codec, q)
            return len(cache[q][0])

        q, _ = search_budget(size_of, 1 if codec == "JPEG" else 0, 100, limit)
        data, dec, _ = cache[q]
        up = np.asarray(Image.fromarray(dec).resize((pic["W"], pic["H"]), Image.Resampling.BICUBIC))
        return {"picture": pic["name"], "value": q, "bytes": len(data), "psnr": psnr_of_mse(mse(pic["full"], up))}

    def gsimg_at(pic, st):
        if st.target_size:
            q, data = budget, gsimg_encode(args.bin, st, pic["png"], work, nbytes=budget)[0]
        else:
            cache = {}

            def size_of(q):
                cache[q] = gsimg_encode(args.bin, st, pic["png"], work, q=q)[0]
                return len(cache[q])

            q, _ = search_budget(size_of, args.display_range[0], args.display_range[1], budget)
            data = cache[q]
        up = gsimg_decode(args.bin, args.decode, data, work, width=pic["W"], height=pic["H"])
        return {"picture": pic["name"], "value": q, "bytes": len(data), "psnr": psnr_of_mse(mse(pic["full"], up))}

    def summary(per):
        return {"bytes": sum(p["bytes"] for p in per) / len(per),
                "over_budget": sum(p["bytes"] > budget for p in per),
                "psnr": sum(p["psnr"] for p in per) / len(per), "pictures": per}

    rows = {}
    for codec in ANCHORS:
        per = [anchor(pic, codec, budget) for pic in pics]
        for p in per:
            log(f"[2x] {codec} {p['picture']}: q {p['value']}, {p['bytes']} B, {p['psnr']:.2f} dB")
        rows[codec] = summary(per)
    for st in settings:
        if st.label not in args.display_gsimg:
            continue
        per = []
        same = {c: [] for c in ANCHORS}
        for pic in pics:
            g = gsimg_at(pic, st)
            per.append(g)
            for c in ANCHORS:
                same[c].append(anchor(pic, c, g["bytes"]))
            log(f"[2x] {st.label} {pic['name']}: q {g['value']}, {g['bytes']} B, {g['psnr']:.2f} dB; at its "
                "bytes " + ", ".join(f"{c} {same[c][-1]['psnr']:.2f}" for c in ANCHORS))
        rows[st.label] = summary(per)
        rows[st.label]["anchors_at_same_bytes"] = {c: summary(v) for c, v in same.items()}
    return {"budget_bytes": budget, "pictures": [f.name for f in files], "rows": rows}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fmt(x, spec=".2f", none="–"):
    return none if x is None else format(x, spec)


def machine_info():
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": model, "cores": cores, "os": platform.platform(), "load_at_start": load}


def gsimg_version(binary):
    try:
        v = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        v = "?"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if rev:
            v += f" (source tree at commit {rev}{', with uncommitted changes' if dirty else ''})"
    except OSError:
        pass
    return v


def report(res):
    out = []
    m = res["machine"]
    out.append(f"Measured {res['date']} on {m['cpu']}, {m['cores']} cores ({m['os']}; load average "
               f"{fmt(m['load_at_start'])} at the start); {res['gsimg']}; "
               + ", ".join(f"{k} {v}" for k, v in res["codecs"].items()) + ".")
    out.append("")
    out.append(f"    {res['command']}")
    out.append("")
    for s in res["sets"]:
        curves = s["curves"]
        n = len(s["pictures"])
        out.append(f"**{s['name']}** ({n} pictures). PSNR (dB) at each rate, linear in bpp on the "
                   "mean curve (– outside the measured range); BD-rate on log-bpp over PSNR, "
                   "PCHIP, over the PSNR range both curves cover; encode time: median per picture, "
                   "wall clock of the command (CPU time of the process in parentheses).")
        out.append("")
        head = "| codec / setting | " + " | ".join(f"{b} bpp" for b in BPP_POINTS)
        head += " | bpp range | BD-rate vs JPEG | BD-rate vs WebP | BD-PSNR vs JPEG | BD-PSNR vs WebP | encode s |"
        out.append(head)
        out.append("|---" * (len(BPP_POINTS) + 7) + "|")
        for label, c in curves.items():
            xy = curve_xy(c)
            cells = [fmt(interp_at(xy, b)) for b in BPP_POINTS]
            rng = f"{min(x for x, _ in xy):.3f}–{max(x for x, _ in xy):.3f}"
            bds = []
            for ref in ("JPEG", "WebP"):
                r = c["bd"].get(f"rate_vs_{ref}")
                bds.append("–" if r is None else f"{r['percent']:+.1f} % ({r['psnr_lo']:.1f}–{r['psnr_hi']:.1f} dB)")
            for ref in ("JPEG", "WebP"):
                r = c["bd"].get(f"psnr_vs_{ref}")
                bds.append("–" if r is None else f"{r['db']:+.2f}")
            if c["kind"] == "gsimg":
                walls = [p["wall_s"] for pt in c["points"] for p in pt["pictures"]]
                cpus = [p["cpu_s"] for pt in c["points"] for p in pt["pictures"]]
                t = f"{statistics.median(walls):.2f} ({statistics.median(cpus):.2f})"
                name = f"gsimg {label}"
            else:
                t = "–"
                name = label
            out.append(f"| {name} | " + " | ".join(cells) + f" | {rng} | " + " | ".join(bds) + f" | {t} |")
        out.append("")
        out.append("Every point (mean over the pictures; JPEG / WebP / AVIF there: their PSNR at that point's "
                   "bpp; pictures above JPEG: of the pictures whose own JPEG curve reaches the bpp of "
                   "their file, those where this point's PSNR is higher):")
        out.append("")
        out.append("| codec / setting | value | bpp | PSNR | JPEG there | WebP there | AVIF there | pictures above JPEG | encode s |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for label, c in curves.items():
            for p in c["points"]:
                there = [fmt(interp_at(curve_xy(curves[a]), p["bpp"])) if a != label else "–"
                         for a in ("JPEG", "WebP", "AVIF")]
                if c["kind"] == "gsimg":
                    t = f"{p['encode_wall_s_median']:.2f} ({p['encode_cpu_s_median']:.2f})"
                    name = f"gsimg {label}"
                else:
                    t = f"{p['encode_inproc_s_median']:.3f}*"
                    name = label
                out.append(f"| {name} | {'–' if p['value'] in ('', None) else p['value']} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                           + " | ".join(there) + f" | {above_jpeg(curves, label, p)} | {t} |")
        out.append("")
        out.append("\\* JPEG, WebP, AVIF: median time of Pillow's encoder alone, from pixels in memory.")
        out.append("")
    if res.get("display"):
        d = res["display"]
        out.append(f"**2× display** ({len(d['pictures'])} pictures: {d['pictures'][0]} to "
                   f"{d['pictures'][-1]}, downscaled to half size with Pillow's BOX filter, each encoded "
                   f"at the largest size ≤ {d['budget_bytes']:,} bytes, shown at full size: gsimg "
                   "rendered by `gsimg decode --width W --height H`, the others decoded and upscaled "
                   "with Pillow's BICUBIC; PSNR against the full-size original):")
        out.append("")
        out.append("| codec / setting | mean bytes | pictures over the budget | PSNR (dB) at full size | "
                   + " | ".join(f"{c} + bicubic at the same bytes" for c in ANCHORS) + " |")
        out.append("|---" * (4 + len(ANCHORS)) + "|")
        for label, r in d["rows"].items():
            if label in ANCHORS:
                out.append(f"| {label} + bicubic | {r['bytes']:,.0f} | {r['over_budget']} | {r['psnr']:.2f} | "
                           + " | ".join("–" for _ in ANCHORS) + " |")
            else:
                same = r.get("anchors_at_same_bytes", {})
                out.append(f"| gsimg {label} | {r['bytes']:,.0f} | {r['over_budget']} | {r['psnr']:.2f} | "
                           + " | ".join(f"{same[c]['psnr']:.2f} ({same[c]['bytes']:,.0f} B)" if c in same else "–"
                                        for c in ANCHORS) + " |")
        out.append("")
        out.append("A codec whose smallest file is above the budget is shown with that file (counted as over the "
                   "budget). \"At the same bytes\": each anchor searched again, picture by picture, for the "
                   "largest file not above that gsimg file, so the comparison is at equal bytes either way.")
        out.append("")
    return "\n".join(out)


def above_jpeg(curves, label, point):
    """'n/m': of the m pictures whose own JPEG curve reaches this point's bpp for that picture,
    the n where this point's PSNR is higher."""
    if label == "JPEG" or "JPEG" not in curves:
        return "–"
    per_jpeg = {}
    for p in curves["JPEG"]["points"]:
        for pic in p["pictures"]:
            per_jpeg.setdefault(pic["picture"], []).append((pic["bpp"], pic["psnr"]))
    wins = total = 0
    for pic in point["pictures"]:
        j = interp_at(per_jpeg.get(pic["picture"], []), pic["bpp"])
        if j is not None:
            total += 1
            wins += pic["psnr"] > j
    return f"{wins}/{total}"


def add_bd(sets):
    for s in sets:
        c = s["curves"]
        for label, cur in c.items():
            cur["bd"] = {}
            for ref in ("JPEG", "WebP"):
                if ref == label or ref not in c:
                    continue
                cur["bd"][f"rate_vs_{ref}"] = bd_rate(curve_xy(c[ref]), curve_xy(cur))
                cur["bd"][f"psnr_vs_{ref}"] = bd_psnr(curve_xy(c[ref]), curve_xy(cur))


# ---------------------------------------------------------------------------------------------
# Held-out set
# ---------------------------------------------------------------------------------------------
HELDOUT_LIST = HERE / "heldout.tsv"
HELDOUT_FIELDS = ["name", "val_file", "package", "path", "source_sha256", "crop", "size", "pixels_sha256"]
CROP_W, CROP_H = 768, 512
RECIPE_MAX_SIDE = 1024  # build_dataset.py's default --max-side, which data/val was built with


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def centre_crop_box(w, h):
    cw, ch = (CROP_W, CROP_H) if w >= h else (CROP_H, CROP_W)
    cw, ch = min(cw, w), min(ch, h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return x0, y0, x0 + cw, y0 + ch


def val_rows():
    man = read_tsv(REPO / "models/data/manifest.tsv")
    return [r for r in man if r["split"] == "val"]


def recipe_module():
    """The dataset recipe (models/data/build_dataset.py), loaded from its file: its own loader
    and resize give the same pixels as data/val."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dataset", REPO / "models/data/build_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deb_for(pkg, data_dir):
    pk = {r["package"]: r for r in read_tsv(REPO / "models/data/packages.tsv")}[pkg]
    debs = data_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    f = debs / pk["deb"]
    if not f.exists():
        arg = f"{pkg}={pk['version']}"
        log(f"$ apt-get download {arg}")
        if subprocess.run(["apt-get", "download", arg], cwd=debs).returncode != 0:
            log("apt-get download failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], check=True)
            if subprocess.run(["apt-get", "download", arg], cwd=debs).returncode != 0:
                sys.exit(f"rd.py: apt-get download {arg} failed (the pinned version may have left the archive)")
    got = hashlib.sha256(f.read_bytes()).hexdigest()
    if got != pk["deb_sha256"]:
        sys.exit(f"rd.py: {f}: sha256 {got} != {pk['deb_sha256']} in models/data/packages.tsv")
    return f


def extract_member(deb, member, dest):
    """Writes `member` (a path inside the package) of `deb` to dest."""
    import tarfile
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    data = None
    with tarfile.open(fileobj=p.stdout, mode="r|") as tf:
        for ti in tf:
            if ti.name.lstrip("./") == member and ti.isfile():
                data = tf.extractfile(ti).read()
                break
        shutil.copyfileobj(p.stdout, open(os.devnull, "wb"))  # let dpkg-deb finish its stream
    p.stdout.close()
    p.wait()
    if data is None:
        sys.exit(f"rd.py: {member} not found in {deb}")
    dest.write_bytes(data)


def heldout_source(row, data_dir, tmp):
    """The recipe's output picture of a validation row (a PIL RGB image), checked by sha256."""
    from PIL import Image
    built = data_dir / "val" / row["file"]
    if built.exists() and sha256_bytes(built.read_bytes()) == row["sha256"]:
        with Image.open(built) as im:
            return im.convert("RGB")
    bd = recipe_module()
    deb = deb_for(row["package"], data_dir)
    src = Path(tmp) / Path(row["path"]).name
    extract_member(deb, row["path"], src)
    got = hashlib.sha256(src.read_bytes()).hexdigest()
    if got != row["source_sha256"]:
        sys.exit(f"rd.py: {row['path']} in {deb.name}: sha256 {got} != {row['source_sha256']} (manifest)")
    rgb, _, _ = bd.load_rgb(str(src))
    out = bd.resize_out(rgb, RECIPE_MAX_SIDE)
    if sha256_bytes(out.tobytes()) != row["pixels_sha256"]:
        import PIL
        sys.exit(f"rd.py: {row['file']}: the recipe's pixels differ from models/data/manifest.tsv "
                 f"(Pillow {PIL.__version__}; the manifest was made with Pillow {bd.PINNED['Pillow']})")
    return out


def build_heldout(out_dir, update_list=False):
    """Writes the held-out pictures as PNG into out_dir; checks them against benches/heldout.tsv
    (or rewrites that list with --update-heldout-list)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = REPO / "data"
    listed = {r["name"]: r for r in read_tsv(HELDOUT_LIST)} if HELDOUT_LIST.exists() else {}
    if not listed and not update_list:
        sys.exit(f"rd.py: {HELDOUT_LIST} missing (make it with --update-heldout-list)")
    rows = []
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in val_rows():
            name = Path(r["file"]).stem + ".png"
            if listed and name not in listed and not update_list:
                continue
            img = heldout_source(r, data_dir, tmp)
            box = centre_crop_box(*img.size)
            crop = img.crop(box)
            sha = sha256_bytes(crop.tobytes())
            rows.append({"name": name, "val_file": r["file"], "package": r["package"], "path": r["path"],
                         "source_sha256": r["source_sha256"], "crop": ",".join(map(str, box)),
                         "size": f"{crop.width}x{crop.height}", "pixels_sha256": sha})
            if not update_list and listed[name]["pixels_sha256"] != sha:
                bad.append(name)
                continue
            dst = out_dir / name
            if not (dst.exists() and sha256_bytes(load_rgb_array(dst).tobytes()) == sha):
                crop.save(dst)
            log(f"held-out: {name} {crop.width}x{crop.height}")
    if bad:
        import PIL
        sys.exit(f"rd.py: pixels differ from benches/heldout.tsv for {', '.join(bad)} (Pillow "
                 f"{PIL.__version__}; the list was made from data/val as built with the recipe's pinned Pillow)")
    if update_list:
        with open(HELDOUT_LIST, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=HELDOUT_FIELDS, delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        log(f"wrote {HELDOUT_LIST} ({len(rows)} pictures)")
    missing = set(listed) - {r["name"] for r in rows}
    if missing and not update_list:
        sys.exit(f"rd.py: not in the validation split of models/data/manifest.tsv: {', '.join(sorted(missing))}")
    log(f"held-out set: {len(rows)} pictures in {out_dir}")


# ---------------------------------------------------------------------------------------------
def qlist(s):
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}': expected comma-separated integers")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", action="append", default=[], metavar="[NAME=]DIR",
                    help="a folder of pictures to measure (repeatable)")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "gsimg"), help="the gsimg binary")
    ap.add_argument("--gsimg", action="append", default=[], metavar="LABEL[@V,...]:TEMPLATE",
                    help="a gsimg setting (repeatable); see the module docstring")
    ap.add_argument("--gsimg-q", default="50,70,90", help="values swept by settings that give none")
    ap.add_argument("--decode", default="decode {in} {out}", help="gsimg's decode command template")
    ap.add_argument("--jpeg-q", type=qlist, default=qlist(DEFAULT_JPEG_Q))
    ap.add_argument("--webp-q", type=qlist, default=qlist(DEFAULT_WEBP_Q))
    ap.add_argument("--avif-q", type=qlist, default=qlist(DEFAULT_AVIF_Q))
    ap.add_argument("--display", metavar="DIR", help="run the 2x display test on DIR's first --display-count pictures")
    ap.add_argument("--display-count", type=int, default=8)
    ap.add_argument("--display-bytes", type=int, default=12000)
    ap.add_argument("--display-range", type=qlist, default=[1, 100], metavar="LO,HI",
                    help="the {q} range searched for the display budget (default 1,100)")
    ap.add_argument("--display-gsimg", default=None,
                    help="comma-separated labels of the settings in the display test (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="first N pictures of each folder only")
    ap.add_argument("--json", metavar="FILE", help="also write every figure (per picture too) as JSON")
    ap.add_argument("--build-heldout", metavar="DIR", help="write the held-out pictures into DIR first")
    ap.add_argument("--update-heldout-list", action="store_true", help="rewrite benches/heldout.tsv")
    ap.add_argument("--self-test", action="store_true", help="check the curve code and exit")
    ap.add_argument("--report", metavar="JSON", help="print the Markdown report of an earlier run's --json file")
    args = ap.parse_args()

    if args.self_test:
        sys.exit(self_test())
    if args.report:
        res = json.loads(Path(args.report).read_text())
        add_bd(res["sets"])
        print(report(res))
        return
    if args.build_heldout:
        build_heldout(args.build_heldout, args.update_heldout_list)
        if not args.images and not args.display:
            return
    if not args.images and not args.display:
        ap.error("nothing to do: give --images DIR and/or --display DIR")
    try:
        from PIL import features
        import numpy  # noqa: F401
    except ImportError:
        sys.exit("rd.py needs Pillow and numpy: pip install -r benches/requirements.txt")
    if not features.check("avif"):
        sys.exit("rd.py: this Pillow has no AVIF support (Pillow >= 11.3 wheels have it)")
    if args.json and Path(args.json).exists():
        sys.exit(f"rd.py: {args.json} exists (not overwritten)")
    if len(args.display_range) != 2 or args.display_range[0] > args.display_range[1]:
        ap.error("--display-range: expected LO,HI")
    settings = [Setting(s, args.gsimg_q) for s in args.gsimg]
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels) or set(labels) & set(ANCHORS):
        sys.exit("rd.py: --gsimg labels must be unique and differ from JPEG, WebP, AVIF")
    args.display_gsimg = labels if args.display_gsimg is None else [v for v in args.display_gsimg.split(",") if v]
    if settings and not (Path(args.bin).is_file() and os.access(args.bin, os.X_OK)):
        sys.exit(f"rd.py: {args.bin}: no gsimg binary there (cargo build --release, or --bin PATH)")

    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python3", os.path.relpath(sys.argv[0]) if not os.path.isabs(sys.argv[0])
                               else sys.argv[0]] + sys.argv[1:]),
        "machine": machine_info(),
        "gsimg": gsimg_version(args.bin) if settings else None,
        "codecs": codec_versions(),
        "sets": [],
    }
    sets = []  # every folder is checked before the first measurement
    for spec in args.images:
        name, eq, folder = spec.partition("=")
        if not eq:
            name, folder = Path(spec).name, spec
        sets.append((name, list_pictures(folder, args.limit)))
    display = list_pictures(args.display)[: args.display_count] if args.display else None
    with tempfile.TemporaryDirectory(prefix="gsimg-rd-") as work:
        for name, files in sets:
            res["sets"].append(measure_set(name, files, args, settings, work))
        if display:
            res["display"] = display_test(display, args, settings, work)
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    add_bd(res["sets"])
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
