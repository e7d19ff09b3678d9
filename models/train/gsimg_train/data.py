"""Training data: pictures from a folder (loose files, tar archives or uint8 .npy/.npz arrays),
random patches cut on the training device, and the validation measures.

Pictures are split into training and validation by a path component named `val` (inside archives
too); anything else is training data. Every random choice draws from one `torch.Generator`, so a
run that saves and restores that generator's state continues the same sequence of patches.
"""

from __future__ import annotations

import hashlib
import io
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMG_EXT = (".png", ".webp", ".jpg", ".jpeg", ".bmp")


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def _decode(b: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(b))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_images(root: str):
    """Returns ({'train': [HxWx3 uint8], 'val': [...]}, names)."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"training data folder {root} does not exist (see models/data/README.md)")
    out = {"train": [], "val": []}
    names = {"train": [], "val": []}

    def add(path: str, arr):
        split = "val" if "val" in Path(path).parts or "/val/" in path or path.startswith("val/") else "train"
        out[split].append(arr)
        names[split].append(path)

    for p in sorted(Path(root).rglob("*")):
        if p.is_dir():
            continue
        s = str(p.relative_to(root))
        low = s.lower()
        if low.endswith(IMG_EXT):
            add(s, _decode(p.read_bytes()))
        elif low.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst")):
            with tarfile.open(p) as tf:
                for m in sorted(tf.getmembers(), key=lambda m: m.name):
                    if m.isfile() and m.name.lower().endswith(IMG_EXT):
                        add(m.name, _decode(tf.extractfile(m).read()))
        elif low.endswith(".npz"):
            z = np.load(p, allow_pickle=False)
            for k in sorted(z.files):
                a = z[k]
                if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
                    add(f"{s}/{k}", a)
        elif low.endswith(".npy"):
            a = np.load(p, allow_pickle=False)
            if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
                add(s, a)
    return out, names


def digest(images: dict, names: dict) -> str:
    """SHA-256 over every picture's split, name, shape and pixels: what a checkpoint was trained on."""
    h = hashlib.sha256()
    for split in ("train", "val"):
        for name, a in zip(names[split], images[split]):
            h.update(f"{split}/{name}/{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class Patches:
    """Random training patches from GPU-resident uint8 images."""

    def __init__(self, images, device, gen: torch.Generator):
        self.imgs = [torch.from_numpy(np.array(a)).to(device).permute(2, 0, 1).contiguous() for a in images]
        self.sizes = [(t.shape[1], t.shape[2]) for t in self.imgs]
        self.w = torch.tensor([h * w for h, w in self.sizes], dtype=torch.float64)  # by area
        self.minside = torch.tensor([min(h, w) for h, w in self.sizes])
        self.gen = gen
        self.device = device

    def crops(self, n: int, size: int, zoom_max: float = 1.0, zoom_cap: int = 0) -> torch.Tensor:
        """n crops of size × size in [0, 1] (float32). With zoom_max > 1 a crop of up to
        zoom_max·size is cut and antialias-downscaled to size (multi-scale data), per batch.
        zoom_cap > 0 caps the cut crop's side (never below size), so that a strong zoom of a
        large crop does not leave only the few largest images to draw from."""
        z = 1.0 if zoom_max <= 1.0 else float(torch.empty(1).uniform_(1.0, zoom_max, generator=self.gen))
        src = max(size, int(round(size * z)))
        if zoom_cap > 0:
            src = max(size, min(src, zoom_cap))
        # only images whose short side holds the crop (never upsample a training target)
        ok = self.minside >= src
        if not bool(ok.any()):
            src = int(self.minside.max())
            ok = self.minside >= src
        idx = torch.multinomial(self.w * ok, n, replacement=True, generator=self.gen).tolist()
        out = []
        for i in idx:
            h, w = self.sizes[i]
            s = min(src, h, w)
            y = int(torch.randint(0, h - s + 1, (1,), generator=self.gen))
            x = int(torch.randint(0, w - s + 1, (1,), generator=self.gen))
            c = self.imgs[i][:, y:y + s, x:x + s]
            if s != src:
                c = F.interpolate(c[None].float(), size=(src, src), mode="bicubic", align_corners=False)[0]
            out.append(c.float())
        b = torch.stack(out) / 255.0
        if src != size:
            b = F.interpolate(b, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        # flips and transposition (the 8 symmetries of the square), per batch
        t = int(torch.randint(0, 8, (1,), generator=self.gen))
        return dihedral(b, t).clamp(0, 1).contiguous()


def dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Symmetry t (0–7) of the square on [..., H, W]: bit 0 flips W, bit 1 flips H, bit 2
    transposes, in that order (as gsimg's `Symmetry`)."""
    if t & 1:
        x = x.flip(-1)
    if t & 2:
        x = x.flip(-2)
    if t & 4:
        x = x.transpose(-1, -2)
    return x


def dihedral_inverse(t: int) -> int:
    """The symmetry undoing t: after a transposition the two flips trade axes."""
    return 4 | (t & 1) << 1 | (t & 2) >> 1 if t & 4 else t


def downscale(hr: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Antialiased bicubic downscale, rounded to 8 bits (the LR images of training and eval)."""
    lr = F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return torch.round(lr.clamp(0, 1) * 255.0) / 255.0


def psnr(a, b, peak=1.0):
    mse = F.mse_loss(a, b).item()
    return 10 * math.log10(peak * peak / max(mse, 1e-12))


def center_crop(a: np.ndarray, s: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(s, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y:y + s, x:x + s]


# ------------------------------------------------------------------------------------------------
# validation (data/val only)
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def validate_upscale(model, val, device, scales=(2, 3, 4), crop=192, bf16=True):
    res = {}
    hrs = [torch.from_numpy(center_crop(a, crop)).permute(2, 0, 1)[None].float().div(255).to(device) for a in val]
    for s in scales:
        ps, pb = [], []
        for hr in hrs:
            h, w = hr.shape[2] // s * s, hr.shape[3] // s * s
            hr_ = hr[:, :, :h, :w]
            lr = downscale(hr_, h // s, w // s)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
                raw = model.raw(lr)
            sr = model.render(model.field(lr, raw), w, h).clamp(0, 1)
            bic = F.interpolate(lr, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
            ps.append(psnr(sr, hr_))
            pb.append(psnr(bic, hr_))
        res[f"val_x{s}"] = round(float(np.mean(ps)), 3)
        res[f"bicubic_x{s}"] = round(float(np.mean(pb)), 3)
    return res


@torch.no_grad()
def validate_compact(model, val, device, crop=256, unroll=0, rates=(), bf16=True):
    """Feed-forward PSNR, presence, raw bpp and empty cells on centre crops; with `unroll`, also
    the PSNR after that many unrolled refinement steps (`val_psnr_refined`)."""
    ps, pres, empty, pr = [], [], [], []
    for a in val:
        c = center_crop(a, crop)
        h, w = c.shape[0] // 8 * 8, c.shape[1] // 8 * 8
        img = torch.from_numpy(c[:h, :w]).permute(2, 0, 1)[None].float().div(255).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            raw = model.raw(img)
        q = model.quantize(model.field(img, raw))
        rec = model.render(q, w, h, w, h).clamp(0, 1)
        ps.append(psnr(torch.round(rec * 255) / 255, img))
        pres.append(q[:, :, 8].mean().item())
        empty.append((q[:, :, 8] < 0.5).all(1).float().mean().item())
        if unroll:  # (first order: its steps take their own gradients inside)
            ref = model.refine_unrolled(q, img, unroll, rates).clamp(0, 1)
            pr.append(psnr(torch.round(ref * 255) / 255, img))
    bits = model.cfg.bits_per_gaussian()
    p = float(np.mean(pres))
    return {"val_psnr": round(float(np.mean(ps)), 3), "presence": round(p, 4),
            "raw_bpp": round(p * model.cfg.per_cell * bits / model.cfg.cell ** 2, 4),
            "empty_cells": round(float(np.mean(empty)), 4),
            **({"val_psnr_refined": round(float(np.mean(pr)), 3)} if pr else {})}
