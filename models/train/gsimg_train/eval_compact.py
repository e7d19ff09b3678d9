"""Kodak evaluation of the compact model (evaluation only): RGB PSNR at native size of the
quantized, presence-gated field rendered by the training renderer, and its rate estimated two ways:
raw bits (present Gaussians × bits per Gaussian / pixels) and zstd-19 of the code planes (one
plane per attribute, codes as bytes or 16-bit, Gaussians in cell raster order) — an estimate of
the `.gsi` size, not the file itself (the Rust writer gives the real numbers).

    gsimg-train eval-compact models/ckpt/compact.pt --bench BENCH_DIR
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import checkpoint as C
from . import models as M


def codes(model, field):
    """Integer codes (as quant.rs::quantize) of the present Gaussians: [n, 8] plus cell indices."""
    c = model.cfg
    f = field[0]  # [K, 9, Hc, Wc]
    keep = f[:, 8] >= 0.5
    frac = f[:, 0:2] / c.cell + 0.5
    pos = torch.clamp(torch.floor(frac * 2 ** c.pos_bits), 0, 2 ** c.pos_bits - 1)
    u = (f[:, 2:4] - c.scale_min) / (c.scale_max - c.scale_min)
    sc = torch.clamp(torch.round(u * (2 ** c.scale_bits - 1)), 0, 2 ** c.scale_bits - 1)
    rot = torch.remainder(torch.round(f[:, 4:5] / math.pi * 2 ** c.rot_bits), 2 ** c.rot_bits)
    ycc = torch.einsum("ij,kjhw->kihw", M.RGB2YCC, f[:, 5:8])
    ch = []
    for i in range(3):
        lo, hi, m = c.color_min[i], c.color_max[i], 2 ** c.color_bits[i] - 1
        ch.append(torch.clamp(torch.round((ycc[:, i:i + 1] - lo) / (hi - lo) * m), 0, m))
    allc = torch.cat([pos, sc, rot] + ch, 1)  # [K, 8, Hc, Wc]
    allc = allc.permute(2, 3, 0, 1)[keep.permute(1, 2, 0)]  # cell raster order, then k
    return allc.to(torch.int64).numpy()


def zstd_bytes(planes: np.ndarray) -> int:
    import zstandard

    buf = b"".join(np.ascontiguousarray(planes[:, i]).astype(np.uint8).tobytes() for i in range(planes.shape[1]))
    return len(zstandard.ZstdCompressor(level=19).compress(buf))


@torch.no_grad()
def evaluate(model, files):
    c = model.cfg
    rows = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
        h, w = a.shape[:2]
        img = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255
        ph, pw = -h % c.cell, -w % c.cell
        x = F.pad(img, (0, pw, 0, ph), mode="replicate")
        field = model.field(x)
        q = model.quantize(field)
        rec = model.render(q, w + pw, h + ph, w + pw, h + ph)[:, :, :h, :w]
        rec = torch.round(rec.clamp(0, 1) * 255) / 255
        mse = float(F.mse_loss(rec, img))
        cd = codes(model, field)
        n = cd.shape[0]
        rows.append({"file": f.name, "psnr": 10 * math.log10(1 / mse), "gaussians": n,
                     "raw_bpp": n * c.bits_per_gaussian() / (h * w), "zstd_bpp": 8 * zstd_bytes(cd) / (h * w)})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "gaussians", "raw_bpp", "zstd_bpp")}
    return mean, rows


# JPEG on Kodak (libjpeg-turbo 3.2 via Pillow, 4:2:0, measured with Pillow 13)
JPEG = [(0.25, 24.62), (0.5, 29.05), (1.0, 32.70)]


def jpeg_at(bpp):
    xs, ys = zip(*JPEG)
    return float(np.interp(bpp, xs, ys, left=float("nan"), right=float("nan")))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gsimg-train eval-compact", description="Kodak PSNR and rate estimate of a compact checkpoint")
    ap.add_argument("ckpt")
    ap.add_argument("--bench", required=True, help="folder with kodak/*.png (evaluation only, never training data)")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    model, ck = C.load_ema(args.ckpt)
    model.eval()
    files = sorted((Path(args.bench) / "kodak").glob("*.png"))
    if args.limit:
        files = files[:args.limit]
    mean, _ = evaluate(model, files)
    mean["jpeg_psnr_at_zstd_bpp"] = jpeg_at(mean["zstd_bpp"])
    mean["step"] = ck["step"]
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in mean.items()}))


if __name__ == "__main__":
    main()
