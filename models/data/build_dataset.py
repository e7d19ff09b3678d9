#!/usr/bin/env python3
"""Build gsimg's encoder training set from photographs shipped in Debian packages.

Steps (see models/data/README.md for the rationale and the thresholds):

1. `apt-get download` the pinned package versions in PACKAGES into data/debs/ (cached),
2. `dpkg -x` them into data/raw/<package>/ (and unpack the JPEG streams of Enlightenment's .edj
   theme files: unpack_edj),
3. collect candidate images under each package's include pattern,
4. filter: exact duplicates, evaluation-set names, explicit excludes, short side < 256 px,
   transparency, few colours (palette art, screenshots, masks), near-empty / mostly-black images,
   large flat areas, smaller pre-scaled copies of one wallpaper, anything that matches an image of
   the evaluation sets (--eval-dir: Kodak, Set5, Set14), and near-duplicates,
5. split whole name families into train and val (packages marked "train_only" go to train and
   leave the validation set as it would be without them),
6. write the kept images as 8-bit RGB, long side <= --max-side (Lanczos, never upscaled), lossless
   (WebP or PNG, whichever is smaller in total), into data/train/ and data/val/,
7. write models/data/manifest.tsv, models/data/rejected.tsv and models/data/packages.tsv.

Determinism: the package versions are pinned, every step is a pure function of the .deb contents, the
Pillow/numpy versions are pinned in requirements.txt, files are visited in sorted order and every
tie is broken by name. `--check` rebuilds and compares every sha256 with the committed manifest.

Requires Python >= 3.11, numpy and Pillow (models/data/requirements.txt), and apt-get + dpkg.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

try:
    import numpy as np
    from PIL import Image, ImageOps
    import PIL
except ImportError:  # pragma: no cover
    sys.exit("build_dataset.py needs numpy and Pillow: "
             "python3 -m pip install -r models/data/requirements.txt")

Image.MAX_IMAGE_PIXELS = None  # the wallpapers are large but trusted (Debian packages)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Versions the committed manifest was made with: other versions of the encoders give other bytes.
PINNED = {"Pillow": "11.0.0", "numpy": "2.1.3"}

# ---------------------------------------------------------------------------------------------
# Sources: (package, pinned version, include regex on the path inside the package, options)
# options: "min_short": a larger minimum short side for that package's files matching "min_short_re"
# ---------------------------------------------------------------------------------------------
PACKAGES = [
    ("plasma-workspace-wallpapers", "4:5.27.5-2",
     r"^usr/share/wallpapers/[^/]+/contents/images(_dark)?/[^/]+$", {}),
    ("mate-backgrounds", "1.26.0-1", r"^usr/share/backgrounds/mate/", {}),
    ("ukui-wallpapers", "20.04.3-1.1", r"^usr/share/backgrounds/", {}),
    ("gnome-backgrounds", "43.1-1", r"^usr/share/backgrounds/gnome/", {}),
    ("lomiri-wallpapers-20.04", "20.04.0-2", r"^usr/share/backgrounds/", {}),
    ("lomiri-wallpapers-16.04", "20.04.0-2", r"^usr/share/backgrounds/", {}),
    ("lomiri-wallpapers", "20.04.0-2", r"^usr/share/backgrounds/", {}),
    ("opencv-doc", "4.6.0+dfsg-12", r"^usr/share/doc/opencv-doc/examples/", {}),
    ("python3-skimage", "0.19.3-8", r"^usr/lib/python3/dist-packages/skimage/data/", {}),
    # landscapes: panorama tiles (sky transparent); nebulae: astronomy photos, only the large ones
    ("stellarium-data", "0.22.2-1", r"^usr/share/stellarium/(landscapes|nebulae)/",
     {"min_short_re": r"/nebulae/", "min_short": 1000}),
    ("debian-edu-artwork", "2.12.4-1~deb12u1", r"^usr/share/", {}),
    ("debian-edu-artwork-buster", "2.12.4-1~deb12u1", r"^usr/share/", {}),
    ("debian-edu-artwork-emerald", "2.12.4-1~deb12u1", r"^usr/share/", {}),
    ("debian-edu-artwork-homeworld", "2.12.4-1~deb12u1", r"^usr/share/", {}),
    ("debian-edu-artwork-softwaves", "2.12.4-1~deb12u1", r"^usr/share/", {}),
    ("debian-edu-artwork-spacefun", "20220131-1", r"^usr/share/", {}),
    ("desktop-base", "12.0.6+nmu1~deb12u1", r"^usr/share/", {}),
    ("sway-backgrounds", "1.7-6", r"^usr/share/backgrounds/", {}),
    # Training only ("train_only": never in validation, and not counted for its size), so that the
    # validation pictures are those of the packages above, and validation figures stay comparable
    # with models trained before these two packages were added.
    # enlightenment-data: photographs inside Eet (.edj) theme files; each holds the picture as
    # plain JPEG streams at several sizes, of which unpack_edj() writes the largest colour one
    # as FILE.edj.jpg beside FILE.edj (those .jpg files are this package's candidates).
    ("enlightenment-data", "0.25.4-2", r"^usr/share/enlightenment/data/backgrounds/[^/]+\.edj\.jpg$",
     {"train_only": True, "edj": True}),
    # scikit-learn's two sample photographs (china, flower)
    ("python3-sklearn", "1.2.1+dfsg-1", r"^usr/lib/python3/dist-packages/sklearn/datasets/images/",
     {"train_only": True}),
]
PKG_ORDER = {p[0]: i for i, p in enumerate(PACKAGES)}

# Explicit exclusions (regex on "package/path"), each with its reason.
EXCLUDES = [
    (r"^opencv-doc/.*/examples/data/(left|right)\d+\.jpg$",
     "camera-calibration chessboard sequence (26 near-identical grey frames)"),
    (r"^opencv-doc/.*(_mask\.png|/trimaps/.*|/output_mattes/.*|GT\.png)$",
     "mask / ground-truth map, not a photograph"),
    (r"^opencv-doc/.*/examples/data/(pic\d|digits|ellipses|blox|gradient|chessboard)\.(png|jpg)$",
     "synthetic test pattern, not a photograph"),
    (r"^opencv-doc/.*/ximgproc/stanford\.png$", "screenshot of a map"),
    (r"^python3-skimage/.*/data/(color|logo|clock_motion|phantom|chessboard_\w+)\.(png|tif)$",
     "synthetic test image or logo, not a photograph"),
    (r"^desktop-base/.*(/login/sddm-preview[^/]*|/previews/[^/]*)$",
     "screenshot of a login screen / desktop"),
    (r"^stellarium-data/.*_(fog|illum)_[^/]*$", "fog / illumination map of a landscape, not a photograph"),
]

IMG_EXT = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".gif")

# Names of evaluation images (Set5, Set14, Kodak): a candidate with this stem is never used.
EVAL_NAMES = {"baboon", "mandrill", "butterfly", "lena", "lenna", "pepper", "peppers", "barbara",
              "zebra", "monarch", "comic", "face", "flowers", "foreman", "man", "ppt3", "bridge",
              "coastguard", "baby", "bird", "head", "woman"}

# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------
MIN_SHORT = 256            # px, short side of the source
MAX_TRANSPARENT_CROP = 0.5  # transparent images: keep the largest opaque band if it has >= 50 % area
MIN_COLOURS_RGB = 2048     # distinct RGB triplets in the source (colour images)
MIN_LEVELS_GREY = 128      # distinct grey levels in the source (grey images)
MIN_LUMA_STD = 12.0        # std of luma (0..255) at output size
MAX_DARK_FRAC = 0.75       # fraction of output pixels with luma < 16
MAX_FLAT_FRAC = 0.40       # fraction of 16x16 output blocks whose luma range is <= 2
DUP_NCC = 0.95             # 16x16 grey thumbnails (whole image or centre square): near-duplicate
FAMILY_DUP = 0.60          # same name family (variants, stereo/sequence frames): max(|grey NCC|,
#                            gradient-magnitude NCC) of 16x16 thumbnails above this: a variant
EVAL_NCC = 0.95            # 16x16 grey thumbnails, 8 orientations: matches an evaluation image
EVAL_CROP_NCC = 0.90       # multi-scale template match (band-passed verification): a (resized) crop
VAL_FRACTION = 0.09
VAL_SALT = b"gsimg-val-v1:"
MIN_REGION = 96            # px: crops smaller than this (short side, in the larger image) are not sought
COARSE_T = 16              # px, template short side of the coarse crop search
COARSE_NCC = 0.75          # coarse hits above this are verified (the best 3)
FINE_T = 64                # px, template short side of the verification
SCALE_STEP = 2 ** (1 / 8)


_T0 = None


def log(*a):
    import time
    global _T0
    _T0 = _T0 or time.monotonic()
    print(f"[{time.monotonic() - _T0:6.0f}s]", *a, file=sys.stderr, flush=True)


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Download and extraction
# ---------------------------------------------------------------------------------------------
def deb_name(pkg: str, ver: str) -> str:
    return f"{pkg}_{ver.replace(':', '%3a')}_all.deb"


def download(debs: Path, offline: bool) -> list[tuple[str, str, Path]]:
    debs.mkdir(parents=True, exist_ok=True)
    missing = [(p, v) for p, v, _, _ in PACKAGES if not (debs / deb_name(p, v)).exists()]
    if missing and offline:
        sys.exit(f"--offline but missing in {debs}: {', '.join(deb_name(p, v) for p, v in missing)}")
    if missing:
        args = ["apt-get", "download"] + [f"{p}={v}" for p, v in missing]
        log("$", " ".join(args))
        r = subprocess.run(args, cwd=debs)
        if r.returncode != 0:
            log("apt-get download failed; running apt-get update and retrying")
            subprocess.run(["apt-get", "update"], check=True)
            r = subprocess.run(args, cwd=debs)
            if r.returncode != 0:
                sys.exit("apt-get download failed. The pinned versions in PACKAGES may have left the "
                         "archive (a Debian point release): update them and rebuild the manifest.")
    out = []
    for p, v, _, _ in PACKAGES:
        f = debs / deb_name(p, v)
        if not f.exists():
            sys.exit(f"missing {f} after apt-get download")
        got = subprocess.run(["dpkg-deb", "-f", str(f), "Package", "Version"], check=True,
                             capture_output=True, text=True).stdout.split("\n")
        if got[0].split(": ", 1)[1] != p or got[1].split(": ", 1)[1] != v:
            sys.exit(f"{f}: unexpected control fields {got}")
        out.append((p, v, f))
    return out


def jpeg_end(data: bytes, start: int) -> int | None:
    """End (exclusive) of the JPEG stream whose SOI (FF D8) is at `start`, found by walking its
    marker segments (so an EXIF thumbnail inside APP1 is skipped) and, after each start of scan,
    the entropy-coded bytes up to the next marker; None if the stream is malformed or cut."""
    n = len(data)
    i = start + 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0xD9:  # EOI
            return i + 2
        if m == 0x01 or 0xD0 <= m <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if m == 0xDA:  # start of scan: FF 00 (stuffed), FF D0-D7 (restarts), FF FF (fill) are data
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return None
                nx = data[j + 1]
                if nx == 0xFF:
                    i = j + 1
                elif nx == 0x00 or 0xD0 <= nx <= 0xD7:
                    i = j + 2
                else:
                    i = j
                    break
    return None


def jpeg_streams(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every complete top-level JPEG stream in `data`, in order."""
    out, i = [], 0
    while (s := data.find(b"\xff\xd8\xff", i)) >= 0:
        e = jpeg_end(data, s)
        if e is None:
            i = s + 3
            continue
        out.append((s, e))
        i = e
    return out


def unpack_edj(root: Path) -> None:
    """For each Eet theme file (*.edj) under root: writes its largest colour JPEG stream, byte for
    byte, as <name>.edj.jpg beside it (none if it holds no colour JPEG, as Enlightenment's
    Squiggle files; grey streams, such as Paper-Flower's alpha planes, are passed over). Ties go
    to the first stream."""
    for f in sorted(root.rglob("*.edj")):
        data = f.read_bytes()
        best, best_px = None, 0
        for s, e in jpeg_streams(data):
            try:
                with Image.open(io.BytesIO(data[s:e])) as im:
                    px = im.size[0] * im.size[1] if im.mode in ("RGB", "YCbCr", "CMYK") else 0
            except Exception:
                continue
            if px > best_px:
                best, best_px = (s, e), px
        out = f.with_name(f.name + ".jpg")
        if best is None:
            out.unlink(missing_ok=True)
        elif not out.exists() or out.read_bytes() != data[best[0]:best[1]]:
            out.write_bytes(data[best[0]:best[1]])


def extract(raw: Path, debs: list[tuple[str, str, Path]]) -> dict[str, str]:
    """Extracts each .deb into raw/<pkg> (skipped when the stamp matches), then unpacks the .edj
    files of the packages that have them. Returns pkg -> deb sha256."""
    shas = {}
    pkg_opts = {p: o for p, _, _, o in PACKAGES}
    for p, v, f in debs:
        sha = sha256_file(f)
        shas[p] = sha
        d = raw / p
        stamp = raw / f".{p}.stamp"
        if d.exists() and stamp.exists() and stamp.read_text() == sha:
            continue
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(f), str(d)], check=True)
        stamp.write_text(sha)
    for p, _, _ in debs:
        if pkg_opts[p].get("edj"):
            unpack_edj(raw / p)
    return shas


def collect(raw: Path) -> tuple[list[dict], list[dict]]:
    cands, rejected = [], []
    for p, v, inc, opts in PACKAGES:
        root = raw / p
        inc_re = re.compile(inc)
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for fn in sorted(files):
                if not fn.lower().endswith(IMG_EXT):
                    continue
                full = Path(dirpath) / fn
                rel = full.relative_to(root).as_posix()
                if not inc_re.search(rel):
                    continue
                c = {"pkg": p, "ver": v, "path": rel, "file": str(full), "opts": opts}
                if full.is_symlink() or not full.is_file():
                    c.update(sha="-", size="-")
                    rejected.append(dict(c, reason="symlink or not a regular file"))
                    continue
                cands.append(c)
    return cands, rejected


# ---------------------------------------------------------------------------------------------
# Image loading (shared by analysis and output so both see the same pixels)
# ---------------------------------------------------------------------------------------------
def opaque_crop(alpha: np.ndarray):
    """Largest band of fully opaque rows, then of fully opaque columns inside it. (x0, y0, x1, y1)."""
    def longest_run(flags):
        best, start, bs = 0, None, 0
        for i, f in enumerate(list(flags) + [False]):
            if f and start is None:
                start = i
            elif not f and start is not None:
                if i - start > best:
                    best, bs = i - start, start
                start = None
        return bs, bs + best
    op = alpha == 255
    y0, y1 = longest_run(op.all(axis=1))
    if y1 <= y0:
        return None
    x0, x1 = longest_run(op[y0:y1].all(axis=0))
    if x1 <= x0:
        return None
    return x0, y0, x1, y1


def load_rgb(path: str):
    """Returns (RGB uint8 PIL image, source size (w, h), note) or raises ValueError(reason)."""
    im = Image.open(path)
    im.load()
    if getattr(im, "n_frames", 1) > 1:
        raise ValueError(f"multi-frame file ({im.n_frames} frames)")
    im = ImageOps.exif_transpose(im)
    src_size = im.size
    note = []
    if min(src_size) < MIN_SHORT:
        raise ValueError(f"short side {min(src_size)} < {MIN_SHORT} px")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
        note.append(f"{mode}->8bit")
        mode = "L"
    if mode == "F":
        raise ValueError("floating-point image")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[:, :, 3]
        if alpha.min() < 255:
            box = opaque_crop(alpha)
            w, h = src_size
            if box is None:
                raise ValueError("transparent: no opaque region")
            x0, y0, x1, y1 = box
            frac = (x1 - x0) * (y1 - y0) / (w * h)
            if frac < MAX_TRANSPARENT_CROP or min(x1 - x0, y1 - y0) < MIN_SHORT:
                raise ValueError(f"transparent: largest opaque region {x1 - x0}x{y1 - y0} "
                                 f"({frac:.0%} of the image)")
            rgba = rgba.crop(box)
            note.append(f"cropped to opaque region {x0},{y0},{x1},{y1}")
        rgb = rgba.convert("RGB")
    elif mode == "RGB":
        rgb = im
    else:
        rgb = im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV
    if mode not in ("RGB", "RGBA"):
        note.append(f"from mode {mode}")
    return rgb, src_size, note


def output_size(size, max_side):
    w, h = size
    s = max(w, h)
    if s <= max_side:
        return w, h
    return max(1, round(w * max_side / s)), max(1, round(h * max_side / s))


def resize_out(rgb: Image.Image, max_side: int) -> Image.Image:
    ow, oh = output_size(rgb.size, max_side)
    if (ow, oh) == rgb.size:
        return rgb
    return rgb.resize((ow, oh), Image.Resampling.LANCZOS)


def luma(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def grey_img(rgb: Image.Image) -> Image.Image:
    return rgb.convert("L")


def thumb16(gimg: Image.Image) -> np.ndarray:
    return np.asarray(gimg.resize((16, 16), Image.Resampling.BOX), dtype=np.float64)


def grad_thumb16(gimg: Image.Image) -> np.ndarray:
    a = np.asarray(gimg.resize((64, 64), Image.Resampling.BOX), dtype=np.float64)
    gy, gx = np.gradient(a)
    return np.hypot(gx, gy).reshape(16, 4, 16, 4).mean(axis=(1, 3))


def centre_square(gimg: Image.Image) -> Image.Image:
    w, h = gimg.size
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return gimg.crop((x0, y0, x0 + s, y0 + s))


def analysis_grey(gimg: Image.Image) -> np.ndarray:
    """Grey copy used by the crop search (uint8 to keep hundreds of them in memory)."""
    return np.asarray(gimg, dtype=np.uint8)


def analyse(c: dict, max_side: int) -> dict:
    """Worker: hashes, loads, measures one candidate."""
    r = {"sha": sha256_file(Path(c["file"]))}
    try:
        with Image.open(c["file"]) as im0:
            r["size"] = "%dx%d" % im0.size
            r["fmt"] = im0.format
        rgb, src_size, note = load_rgb(c["file"])
    except ValueError as e:
        r["reject"] = str(e)
        return r
    except Exception as e:  # unreadable / truncated
        # The message names the file; keep it relative to the package root so the
        # committed lists do not depend on where the build folder is.
        msg = str(e).replace(os.fspath(c["file"]), c["path"])
        r["reject"] = f"unreadable: {type(e).__name__}: {msg}"
        return r
    r["size"] = "%dx%d" % src_size
    r["note"] = note
    opts = c["opts"]
    if "min_short" in opts and re.search(opts["min_short_re"], c["path"]) and \
            min(rgb.size) < opts["min_short"]:
        r["reject"] = f"short side {min(rgb.size)} < {opts['min_short']} px (per-package rule)"
        return r
    a = np.asarray(rgb)
    grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
    packed = (a[..., 0].astype(np.uint32) << 16) | (a[..., 1].astype(np.uint32) << 8) | a[..., 2]
    ncol = int(np.count_nonzero(np.bincount(packed.ravel(), minlength=1 << 24)))
    del packed
    out = resize_out(rgb, max_side)
    o = np.asarray(out)
    y = luma(o)
    H, W = y.shape
    bh, bw = H // 16, W // 16
    blocks = y[: bh * 16, : bw * 16].reshape(bh, 16, bw, 16)
    rng = blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))
    g = grey_img(out)
    r.update(
        grey=grey, colours=ncol, out_size="%dx%d" % out.size, pixels=out.size[0] * out.size[1],
        src_pixels=rgb.size[0] * rgb.size[1],
        luma_std=float(y.std()), dark=float((y < 16).mean()), flat=float((rng <= 2).mean()),
        t_whole=thumb16(g), t_centre=thumb16(centre_square(g)), t_grad=grad_thumb16(g),
        an=analysis_grey(g),
    )
    return r


# ---------------------------------------------------------------------------------------------
# Similarity
# ---------------------------------------------------------------------------------------------
def nvec(a: np.ndarray):
    v = a.astype(np.float64).ravel()
    v = v - v.mean()
    n = np.linalg.norm(v)
    return v / n if n > 1e-6 else None


def dihedral(a: np.ndarray):
    for k in range(4):
        r = np.rot90(a, k)
        yield r
        yield r[:, ::-1]


def blur(a: np.ndarray) -> np.ndarray:
    """[1 4 6 4 1]/16 binomial blur (sigma ~1 px), reflected borders: tolerates sub-pixel shifts."""
    k = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    p = np.pad(a, 2, mode="reflect") if min(a.shape) > 2 else np.pad(a, 2, mode="edge")
    p = sum(k[i] * p[i:i + a.shape[0], :] for i in range(5))
    return sum(k[i] * p[:, i:i + a.shape[1]] for i in range(5))


def bandpass(a: np.ndarray) -> np.ndarray:
    """Difference of binomial blurs (sigma ~1 and ~2.2 px): detail, without smooth gradients."""
    b1 = blur(a)
    return b1 - blur(blur(blur(blur(b1))))


def ncc_max_template(canvas: np.ndarray, tmpl: np.ndarray, smooth: bool = False):
    """Max normalized cross-correlation of tmpl over every position inside canvas: (ncc, (y, x)).
    smooth=True compares band-passed copies (robust to sub-pixel shifts, blind to flat gradients)."""
    if smooth:
        canvas, tmpl = bandpass(canvas), bandpass(tmpl)
    H, W = canvas.shape
    h, w = tmpl.shape
    if h > H or w > W or h < 2 or w < 2:
        return -1.0, (0, 0)
    t = tmpl - tmpl.mean()
    tn = np.sqrt((t * t).sum())
    if t.std() < (0.5 if smooth else 1.0):  # a featureless template matches anything
        return -1.0, (0, 0)
    fh, fw = H + h, W + w
    corr = np.fft.irfft2(np.fft.rfft2(canvas, (fh, fw)) * np.fft.rfft2(t[::-1, ::-1], (fh, fw)),
                         (fh, fw))[h - 1:H, w - 1:W]
    ii = np.pad(canvas, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ii2 = np.pad(canvas * canvas, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return _ncc_finish(corr, ii, ii2, h, w, tn)


def resize_grey(a: np.ndarray, size) -> np.ndarray:
    """Area-average (BOX) resize of a float grey array to size=(w, h)."""
    im = Image.fromarray(a.astype(np.float32), "F")
    return np.asarray(im.resize(size, Image.Resampling.BOX), dtype=np.float64)


class Level:
    """One coarse canvas with its FFT (padded by PAD px) and integral images cached."""
    PAD = 64

    def __init__(self, q: float, a: np.ndarray):
        self.q, self.a = q, a
        H, W = a.shape
        self.shape = (H + self.PAD, W + self.PAD)
        self.F = np.fft.rfft2(a, self.shape)
        self.ii = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        self.ii2 = np.pad(a * a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def ncc_max(self, tmpl: np.ndarray) -> tuple[float, tuple[int, int]]:
        H, W = self.a.shape
        h, w = tmpl.shape
        if h > H or w > W or h > self.PAD or w > self.PAD:
            return -1.0, (0, 0)
        t = tmpl - tmpl.mean()
        if t.std() < 1.0:
            return -1.0, (0, 0)
        tn = np.sqrt((t * t).sum())
        corr = np.fft.irfft2(self.F * np.fft.rfft2(t[::-1, ::-1], self.shape), self.shape)[h - 1:H, w - 1:W]
        return _ncc_finish(corr, self.ii, self.ii2, h, w, tn)


def _ncc_finish(corr, ii, ii2, h, w, tn):
    def win(s):
        return s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]
    n = h * w
    s1, s2 = win(ii), win(ii2)
    var = s2 - s1 * s1 / n
    ok = var > n * 1.0  # window std >= 1 grey level
    if not ok.any():
        return -1.0, (0, 0)
    ncc = np.where(ok, corr / (np.sqrt(np.maximum(var, 1e-9)) * tn), -1.0)
    i = int(np.argmax(ncc))
    return float(ncc.flat[i]), divmod(i, ncc.shape[1])


def pyramid(img: np.ndarray) -> list[Level]:
    """Canvases for the coarse crop search: img shrunk by q = COARSE_T / MIN_REGION * 2^(-j/8)."""
    H, W = img.shape
    out = []
    q = COARSE_T / MIN_REGION
    while min(H, W) * q >= COARSE_T:
        out.append(Level(q, resize_grey(img, (max(2, round(W * q)), max(2, round(H * q))))))
        q /= SCALE_STEP
    return out


def coarse_template(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    f = COARSE_T / min(h, w)
    return resize_grey(img, (max(2, round(w * f)), max(2, round(h * f))))


def crop_match(big: np.ndarray, big_pyr, small: np.ndarray, small_t) -> tuple[float, float]:
    """Is `small` a (resized) crop of `big`? Coarse-to-fine multi-scale template matching.

    Hypothesis: `small` appears inside `big` scaled by s, covering at least MIN_REGION px on its
    short side. Coarse pass: on each level q of big's pyramid the template is `small` shrunk to a
    COARSE_T px short side, i.e. s = COARSE_T / (q * short side of small); the best NCC over all
    positions is computed. The best coarse hits above COARSE_NCC are verified with a FINE_T px
    template at s * (1 +- 8 %) in 1 % steps. Returns the best NCC (verified where verified) and s.
    """
    H, W = big.shape
    h, w = small.shape
    smax = min(H / h, W / w)
    best = (-1.0, 0.0)
    hits = []
    levels = [lv for lv in big_pyr if COARSE_T / (lv.q * min(h, w)) <= smax * 1.001]
    q = COARSE_T / (smax * min(h, w))  # whole-image hypothesis: small fills big on one axis
    if q <= 1.0 and min(H, W) * q >= COARSE_T:
        levels.append(Level(q, resize_grey(big, (max(2, round(W * q)), max(2, round(H * q))))))
    for lv in levels:
        q = lv.q
        s = min(smax, COARSE_T / (q * min(h, w)))
        v, (y, x) = lv.ncc_max(small_t)
        if v > COARSE_NCC:
            hits.append((v, s, y / q, x / q, 1 / q))
        elif v > best[0]:
            best = (v, s)
    for _, s0, y0, x0, px in sorted(hits, reverse=True)[:3]:
        # verify in a window around the coarse position: +- 2 coarse pixels and +- 8 % of the size
        m = 2 * px + 0.08 * max(h, w) * s0
        wy0, wx0 = max(0, int(y0 - m)), max(0, int(x0 - m))
        wy1 = min(H, int(np.ceil(y0 + h * s0 * 1.08 + m)))
        wx1 = min(W, int(np.ceil(x0 + w * s0 * 1.08 + m)))
        win = big[wy0:wy1, wx0:wx1]
        for s in sorted({min(smax, s0 * (1 + 0.01 * k)) for k in range(-8, 9)}):
            q = min(1.0, FINE_T / (min(h, w) * s))
            cb = resize_grey(win, (max(2, round(win.shape[1] * q)), max(2, round(win.shape[0] * q))))
            ct = resize_grey(small, (max(2, min(cb.shape[1], round(w * s * q))),
                                     max(2, min(cb.shape[0], round(h * s * q)))))
            v, _ = ncc_max_template(cb, ct, smooth=True)
            if v > best[0]:
                best = (v, s)
    return best


def load_bench(bench: Path) -> list[dict]:
    out = []
    for f in sorted(bench.glob("*/*")):
        if f.suffix.lower() not in IMG_EXT:
            continue
        with Image.open(f) as im:
            g = im.convert("RGB").convert("L")
        out.append({"name": f"{f.parent.name}/{f.name}", "sha": sha256_file(f),
                    "thumbs": [nvec(thumb16(Image.fromarray(np.ascontiguousarray(d))))
                               for d in dihedral(np.asarray(g))],
                    "t_centre": nvec(thumb16(centre_square(g))),
                    "an": analysis_grey(g)})
    if not out:
        sys.exit(f"build_dataset.py: no evaluation images in {bench}/*/: --eval-dir takes a folder "
                 "of set folders (kodak/, set5/, set14/)")
    return out


def eval_match(r: dict, bench: list[dict]) -> tuple[float, str, str]:
    """Highest similarity of one candidate to any evaluation image: (score, image, method)."""
    best = (-1.0, "", "")
    tw, tc = nvec(r["t_whole"]), nvec(r["t_centre"])
    for b in bench:
        if r["sha"] == b["sha"]:
            return (1.0, b["name"], "identical file")
        if tw is not None:
            for t in b["thumbs"]:
                v = float(tw @ t)
                if v > best[0]:
                    best = (v, b["name"], "16x16 thumbnail")
        if tc is not None and b["t_centre"] is not None:
            v = float(tc @ b["t_centre"])
            if v > best[0]:
                best = (v, b["name"], "16x16 centre square")
    return best


_BENCH = None


def _set_bench(bench_an):
    global _BENCH
    _BENCH = bench_an


def eval_crop_match(an: np.ndarray) -> tuple[float, str, str]:
    """Worker: best crop-search NCC of one candidate against every evaluation image, both ways."""
    big = an.astype(np.float64)
    pyr, tmpl = pyramid(big), coarse_template(big)
    best = (-1.0, "", "")
    for name, ban, bpyr, btmpl in _BENCH:
        v, s = crop_match(big, pyr, ban, btmpl)  # evaluation image inside the candidate
        if v > best[0]:
            best = (v, name, f"eval image as crop of candidate (scale {s:.3f})")
        v, s = crop_match(ban, bpyr, big, tmpl)  # candidate inside the evaluation image
        if v > best[0]:
            best = (v, name, f"candidate as crop of eval image (scale {s:.3f})")
    return best


# ---------------------------------------------------------------------------------------------
# Output encoding
# ---------------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str) -> bytes:
    b = io.BytesIO()
    if fmt == "webp":
        img.save(b, "WEBP", lossless=True, quality=90, method=6, exact=True)
    else:
        img.save(b, "PNG", compress_level=9)
    return b.getvalue()


def produce(args) -> dict:
    """Worker: loads a kept candidate, resizes it, encodes it in each requested format."""
    path, max_side, fmts, tmpdir, stem = args
    rgb, _, _ = load_rgb(path)
    out = resize_out(rgb, max_side)
    res = {"pixels_sha": hashlib.sha256(out.tobytes()).hexdigest()}
    for fmt in fmts:
        data = encode(out, fmt)
        p = Path(tmpdir) / f"{stem}.{fmt}"
        p.write_bytes(data)
        res[fmt] = len(data)
    return res


def train_only(c: dict) -> bool:
    """The candidate's package goes to training only (PACKAGES option "train_only")."""
    return bool(c["opts"].get("train_only"))


def family_key(c: dict) -> str:
    """Name family: same package and folder, same name once size/variant/sequence suffixes go.

    images_dark/ -> images/; WxH and aspect tokens; -d/-l, _dark/_light; camelCase L/R/A/B
    (aloeL, leuvenA); _left/_right/_original/_modified; a trailing number (graf1, scenetext03)."""
    d, fn = os.path.split(c["path"])
    d = re.sub(r"_dark$", "", d)
    st = os.path.splitext(fn)[0]
    st = re.sub(r"[_-]?\d{3,5}x\d{3,5}(_portrait)?", "", st, flags=re.I)
    st = re.sub(r"[_-]?\d{1,2}x\d{1,2}$", "", st)
    st = re.sub(r"[-_](d|l|dark|light)$", "", st, flags=re.I)
    st = re.sub(r"(?<=[a-z])[LRAB]$", "", st)
    st = re.sub(r"[-_]?(left|right|original|modified)$", "", st, flags=re.I)
    st = re.sub(r"[-_]?\d{1,2}$", "", st)
    return f"{c['pkg']}/{d}/{st.lower()}"


def out_stem(pkg: str, path: str) -> str:
    p = re.sub(r"^usr/(share/|lib/python3/dist-packages/)?", "", path)
    p = re.sub(r"^(doc/opencv-doc/examples/|backgrounds/|wallpapers/|stellarium/)", "", p)
    p = p.replace("/contents/", "/")
    p = os.path.splitext(p)[0]
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", p.replace("/", "__"))
    return f"{pkg}__{s}"[:150]


# ---------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "data", help="work folder (default: data/)")
    ap.add_argument("--debs", type=Path, default=None, help="deb cache (default: DATA/debs)")
    ap.add_argument("--eval-dir", "--bench", dest="eval_dir", type=Path, default=None, metavar="DIR",
                    help="required: the evaluation sets to keep out of the training set, a folder "
                         "of set folders (kodak/, set5/, set14/)")
    ap.add_argument("--max-side", type=int, default=1024, help="long side of the outputs (default 1024)")
    ap.add_argument("--format", choices=("auto", "webp", "png"), default="auto",
                    help="lossless output format; auto measures both and keeps the smaller total")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--offline", action="store_true", help="never run apt-get")
    ap.add_argument("--check", action="store_true",
                    help="rebuild and verify every sha256 against the committed manifest")
    ap.add_argument("--manifest-dir", type=Path, default=HERE,
                    help="where manifest.tsv / rejected.tsv / packages.tsv go (default models/data)")
    args = ap.parse_args()
    if args.eval_dir is None:
        sys.exit("build_dataset.py: --eval-dir DIR is required (the Kodak, Set5 and Set14 folders "
                 "to keep out of the training set)")
    if not args.eval_dir.is_dir():
        sys.exit(f"build_dataset.py: --eval-dir {args.eval_dir}: not a folder")
    bench = load_bench(args.eval_dir)  # before the long steps, so a wrong folder fails at once

    for mod, want in (("Pillow", PIL.__version__), ("numpy", np.__version__)):
        if PINNED[mod] != want:
            log(f"WARNING: {mod} {want} installed, the manifest was made with {PINNED[mod]}: "
                "encoded bytes may differ (the pixels_sha256 column should still match)")

    data = args.data.resolve()
    debs_dir = (args.debs or data / "debs").resolve()
    raw = data / "raw"
    mdir = args.manifest_dir.resolve()
    if args.check:
        committed = mdir
        mdir = Path(tempfile.mkdtemp(prefix="gsimg-check-"))

    debs = download(debs_dir, args.offline)
    deb_sha = extract(raw, debs)
    cands, rejected = collect(raw)
    log(f"{len(cands)} candidate files in {len(PACKAGES)} packages")

    with ProcessPoolExecutor(args.jobs) as ex:
        results = list(ex.map(analyse, cands, [args.max_side] * len(cands), chunksize=1))
    for c, r in zip(cands, results):
        c.update(r)

    def reject(c, reason):
        c["rejected"] = reason
        rejected.append(c)

    # 1. file-level rejections, exact duplicates, names, explicit excludes, size/readability
    seen = {}
    alive = []
    for c in cands:
        stem = os.path.splitext(os.path.basename(c["path"]))[0].lower()
        stem_n = re.sub(r"[_-]?\d*$", "", stem)
        key = f"{c['pkg']}/{c['path']}"
        ex_reason = next((why for rx, why in EXCLUDES if re.search(rx, key)), None)
        if c["sha"] in seen:
            reject(c, f"identical file to {seen[c['sha']]}")
        elif stem in EVAL_NAMES or stem_n in EVAL_NAMES or stem.startswith("kodim"):
            reject(c, f"evaluation-set name '{stem}'")
            c["name_dropped"] = True
        elif ex_reason:
            reject(c, ex_reason)
        elif "reject" in c:
            reject(c, c["reject"])
        else:
            alive.append(c)
        seen.setdefault(c["sha"], key)

    # 2. content filters
    nxt = []
    for c in alive:
        if c["grey"] and c["colours"] < MIN_LEVELS_GREY:
            reject(c, f"few grey levels: {c['colours']} < {MIN_LEVELS_GREY}")
        elif not c["grey"] and c["colours"] < MIN_COLOURS_RGB:
            reject(c, f"few colours: {c['colours']} < {MIN_COLOURS_RGB} (palette art, screenshot or mask)")
        elif c["luma_std"] < MIN_LUMA_STD:
            reject(c, f"near-empty: luma std {c['luma_std']:.1f} < {MIN_LUMA_STD}")
        elif c["dark"] > MAX_DARK_FRAC:
            reject(c, f"mostly black: {c['dark']:.0%} of pixels have luma < 16 (> {MAX_DARK_FRAC:.0%})")
        elif c["flat"] > MAX_FLAT_FRAC:
            reject(c, f"large flat areas: {c['flat']:.0%} of 16x16 blocks have a luma range <= 2 "
                      f"(> {MAX_FLAT_FRAC:.0%})")
        else:
            nxt.append(c)
    alive = nxt

    # 3. pre-scaled copies of one picture: same folder, same name once the WxH token is removed
    def group_key(c):
        d, fn = os.path.split(c["path"])
        stem = os.path.splitext(fn)[0]
        stem = re.sub(r"[_-]?\d{3,5}x\d{3,5}(_portrait)?", "", stem, flags=re.I)
        stem = re.sub(r"[_-]?\d{1,2}x\d{1,2}$", "", stem)  # grub-16x9 / grub-4x3
        return (c["pkg"], d, stem.lower())
    groups = {}
    for c in alive:
        groups.setdefault(group_key(c), []).append(c)
    nxt = []
    for c in alive:
        g = groups[group_key(c)]
        best = min(g, key=lambda x: (-x["src_pixels"], x["path"]))
        if c is best:
            nxt.append(c)
        else:
            reject(c, f"smaller pre-scaled copy ({c['size']}) of {best['pkg']}/{best['path']} ({best['size']})")
    alive = nxt

    # 4. evaluation-set exclusion. The thumbnail test runs on every analysed candidate, the crop
    #    search on the survivors so far and on the files dropped by name (to validate the search).
    bench_an = []
    for b in bench:
        g = b["an"].astype(np.float64)
        bench_an.append((b["name"], g, pyramid(g), coarse_template(g)))
    thumbed = [c for c in cands if "t_whole" in c]
    for c in thumbed:
        c["eval_thumb"] = eval_match(c, bench)
        c["eval_crop"] = (-1.0, "-", "not searched (rejected earlier)")
    to_check = [c for c in cands if "t_whole" in c and (c.get("name_dropped") or "rejected" not in c)]
    log(f"evaluation-set check: {len(thumbed)} candidates by thumbnail, {len(to_check)} by crop "
        f"search, against {len(bench)} images")
    with ProcessPoolExecutor(args.jobs, initializer=_set_bench, initargs=(bench_an,)) as ex:
        crops = list(ex.map(eval_crop_match, [c["an"] for c in to_check], chunksize=1))
    for c, cm in zip(to_check, crops):
        c["eval_crop"] = cm
    nxt = []
    for c in alive:
        (tv, tn, tm), (cv, cn, cmeth) = c["eval_thumb"], c["eval_crop"]
        if tv > EVAL_NCC:
            reject(c, f"matches evaluation image {tn}: {tm} NCC {tv:.3f} > {EVAL_NCC}")
        elif cv > EVAL_CROP_NCC:
            reject(c, f"matches evaluation image {cn}: {cmeth} NCC {cv:.3f} > {EVAL_CROP_NCC}")
        else:
            nxt.append(c)
    alive = nxt

    # 5. near-duplicates: keep the larger one (then package order, then path); an image of a
    #    train-only package never displaces one of the others (they come after all of them). Tests:
    #    any pair: grey 16x16 thumbnail (whole or centre square) NCC > DUP_NCC;
    #    same name family (light/dark variants, stereo pairs, frame sequences): similarity > FAMILY_DUP
    alive.sort(key=lambda c: (train_only(c), -c["src_pixels"], PKG_ORDER[c["pkg"]], c["path"]))
    kept = []
    for c in alive:
        vw, vc, vg = nvec(c["t_whole"]), nvec(c["t_centre"]), nvec(c["t_grad"])
        c["family"] = family_key(c)
        dup = None
        for k in kept:
            kw, kc, kg = nvec(k["t_whole"]), nvec(k["t_centre"]), nvec(k["t_grad"])
            s = max(float(vw @ kw) if vw is not None and kw is not None else -1,
                    float(vc @ kc) if vc is not None and kc is not None else -1)
            if s > DUP_NCC:
                dup = f"near-duplicate of {k['pkg']}/{k['path']} (thumbnail NCC {s:.3f} > {DUP_NCC})"
                break
            if k["family"] == c["family"]:
                f = max(abs(float(vw @ kw)) if vw is not None and kw is not None else -1,
                        float(vg @ kg) if vg is not None and kg is not None else -1)
                if f > FAMILY_DUP:
                    dup = (f"variant of {k['pkg']}/{k['path']} in the same name family "
                           f"(thumbnail similarity {f:.3f} > {FAMILY_DUP})")
                    break
        if dup:
            reject(c, dup)
        else:
            kept.append(c)
    kept.sort(key=lambda c: (PKG_ORDER[c["pkg"]], c["path"]))

    # 6. split: whole name families go to val, in the order of sha256(salt + family key), until
    #    val holds round(VAL_FRACTION * n) images or more; related images never straddle the split.
    #    Train-only packages take no part: n counts the other images, and their families are not
    #    candidates (so adding such a package leaves the validation set as it was).
    n_target = round(VAL_FRACTION * sum(1 for c in kept if not train_only(c)))
    fams = sorted({c["family"] for c in kept if not train_only(c)},
                  key=lambda f: hashlib.sha256(VAL_SALT + f.encode()).hexdigest())
    val_fams, n_val = set(), 0
    for f in fams:
        if n_val >= n_target:
            break
        val_fams.add(f)
        n_val += sum(1 for c in kept if c["family"] == f)
    for c in kept:
        c["split"] = "val" if c["family"] in val_fams else "train"
        c["stem"] = out_stem(c["pkg"], c["path"])
    if len({c["stem"] for c in kept}) != len(kept):
        sys.exit("output name collision")

    # 7. outputs
    fmts = ["webp", "png"] if args.format == "auto" else [args.format]
    if args.check and args.format == "auto":  # re-encode only in the committed manifest's format
        exts = {os.path.splitext(l.split("\t")[1])[1][1:]
                for l in (committed / "manifest.tsv").read_text().splitlines()[1:]}
        fmts = sorted(exts & {"webp", "png"}) or fmts
    work = data / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log(f"encoding {len(kept)} images as {'+'.join(fmts)}")
    with ProcessPoolExecutor(args.jobs) as ex:
        enc = list(ex.map(produce, [(c["file"], args.max_side, fmts, str(work), c["stem"]) for c in kept],
                          chunksize=1))
    totals = {f: sum(e[f] for e in enc) for f in fmts}
    fmt = min(fmts, key=lambda f: (totals[f], f))
    log("lossless totals: " + ", ".join(f"{f} {totals[f]:,} B" for f in fmts) + f" -> {fmt}")
    for split in ("train", "val"):
        d = data / split
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    for c, e in zip(kept, enc):
        c["out"] = f"{c['stem']}.{fmt}"
        dst = data / c["split"] / c["out"]
        os.replace(work / c["out"], dst)
        c["out_sha"] = sha256_file(dst)
        c["pixels_sha"] = e["pixels_sha"]
        c["bytes"] = e[fmt]
        c["alt"] = {f: e[f] for f in fmts}
    shutil.rmtree(work)

    # 8. manifests
    mdir.mkdir(parents=True, exist_ok=True)
    with open(mdir / "manifest.tsv", "w", newline="\n") as f:
        f.write("split\tfile\tsha256\tpackage\tpath\tsource_sha256\tsource_size\toutput_size\t"
                "bytes\tpixels_sha256\tfamily\tnotes\n")
        for c in sorted(kept, key=lambda c: (c["split"] != "train", c["out"])):
            f.write("\t".join([c["split"], c["out"], c["out_sha"], c["pkg"], c["path"], c["sha"],
                               c["size"], c["out_size"], str(c["bytes"]), c["pixels_sha"], c["family"],
                               "; ".join(c.get("note") or []) or "-"]) + "\n")
    with open(mdir / "rejected.tsv", "w", newline="\n") as f:
        f.write("package\tpath\tsource_sha256\tsource_size\treason\n")
        for c in sorted(rejected, key=lambda c: (PKG_ORDER[c["pkg"]], c["path"])):
            f.write("\t".join([c["pkg"], c["path"], c.get("sha", "-"), c.get("size", "-"),
                               c.get("rejected") or c.get("reason")]) + "\n")
    with open(mdir / "packages.tsv", "w", newline="\n") as f:
        f.write("package\tversion\tdeb\tdeb_sha256\tcandidates\tkept\n")
        for p, v, fpath in debs:
            nc = sum(1 for c in cands if c["pkg"] == p) + sum(
                1 for c in rejected if c["pkg"] == p and "sha" in c and c.get("sha") == "-")
            nk = sum(1 for c in kept if c["pkg"] == p)
            f.write(f"{p}\t{v}\t{fpath.name}\t{deb_sha[p]}\t{nc}\t{nk}\n")
    # report of the evaluation-set check (all candidates that were analysed)
    with open(mdir / "eval_check.tsv", "w", newline="\n") as f:
        f.write("package\tpath\tstatus\tthumb_ncc\tthumb_image\tthumb_method\tcrop_ncc\tcrop_image\t"
                "crop_method\n")
        for c in sorted(thumbed, key=lambda c: (-max(c["eval_thumb"][0], c["eval_crop"][0]),
                                                 PKG_ORDER[c["pkg"]], c["path"])):
            st = c.get("split", "rejected")
            (tv, tn, tm), (cv, cn, cmeth) = c["eval_thumb"], c["eval_crop"]
            f.write(f"{c['pkg']}\t{c['path']}\t{st}\t{tv:.3f}\t{tn}\t{tm}\t{cv:.3f}\t{cn}\t{cmeth}\n")

    mpix = sum(c["pixels"] for c in kept) / 1e6
    log(f"kept {len(kept)} images ({sum(c['split'] == 'train' for c in kept)} train, "
        f"{n_val} val), {mpix:.1f} Mpix, {sum(c['bytes'] for c in kept):,} bytes as {fmt}; "
        f"rejected {len(rejected)}")
    for p, *_ in PACKAGES:
        ks = [c for c in kept if c["pkg"] == p]
        if ks:
            log(f"  {p:32s} {len(ks):4d} images {sum(c['pixels'] for c in ks) / 1e6:7.1f} Mpix")

    if args.check:
        ok = True
        for name in ("manifest.tsv", "rejected.tsv", "packages.tsv", "eval_check.tsv"):
            a, b = (committed / name).read_text(), (mdir / name).read_text()
            if a != b:
                ok = False
                la, lb = a.splitlines(), b.splitlines()
                diff = [f"  - {x}" for x in la if x not in set(lb)][:10] + \
                       [f"  + {x}" for x in lb if x not in set(la)][:10]
                log(f"CHECK FAILED: {name} differs from the committed one:\n" + "\n".join(diff))
        rows = [l.split("\t") for l in (committed / "manifest.tsv").read_text().splitlines()[1:]]
        bad = 0
        for row in rows:
            p = data / row[0] / row[1]
            if not p.exists() or sha256_file(p) != row[2]:
                bad += 1
                log(f"CHECK FAILED: {p} missing or sha256 differs")
        if ok and not bad:
            log(f"CHECK OK: {len(rows)} files and all manifests identical to the committed ones")
        shutil.rmtree(mdir)
        sys.exit(0 if ok and not bad else 1)


if __name__ == "__main__":
    main()
