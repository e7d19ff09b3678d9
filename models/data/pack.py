#!/usr/bin/env python3
"""Bundle data/train + data/val into uncompressed tars under data/pack/, to move to a training machine.

    python3 models/data/pack.py                 # build data/pack/gsimg-train.tar (<= 40 MiB)
    python3 models/data/pack.py --parts 3       # data/pack/gsimg-train-{1,2,3}of3.tar, each <= 40 MiB
    python3 models/data/pack.py --verify FILE   # check a bundle: sha256s, decoding, counts

The bundle holds `pack_manifest.tsv` (one row per image: split, file, sha256, width, height, bytes,
package, source path, source sha256), `build_manifest.tsv` (a copy of models/data/manifest.tsv),
`pack_info.txt`, and the lossless images under `train/` and `val/`.

Size rule (deterministic): if the images as built (long side <= 1024) fit in --limit-mib (times
--parts) with the tar overhead, they are packed unchanged. Otherwise every image whose long side exceeds L is
downscaled to long side L (Lanczos, from the built file) and re-encoded as lossless WebP, with L the
largest multiple of 32 for which the whole bundle fits (found by shrinking L from an estimate
until it fits). Only if L would drop below --min-side are images dropped instead: training images
in the order of sha256("gsimg-drop-v1:" + source sha256), validation images never.

With --parts N the bundle is N tars (each a complete bundle of its own images, with its own
pack_manifest.tsv, each at most --limit-mib), for transfers that limit the size of one file;
`gsimg-train` reads every tar in the folder its configuration names (data.path, data/pack in the
released configurations). The images go to the parts in manifest order, each to the first part it
fits in. Writing a bundle removes the other .tar files in its folder, so the folder never mixes
two bundles.

Reading it needs only Python 3 + numpy + Pillow: see read_pack() below, e.g. with
PYTHONPATH=models/data:
    from pack import read_pack
    train, val = read_pack("data/pack/gsimg-train.tar")   # lists of (name, HxWx3 uint8 array)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MIB = 1 << 20
DROP_SALT = b"gsimg-drop-v1:"


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading (needs only numpy and Pillow)
# ---------------------------------------------------------------------------------------------
def read_pack(path, verify: bool = True):
    """Returns (train, val): lists of (file name, HxWx3 uint8 numpy array), in manifest order."""
    out = {"train": [], "val": []}
    with tarfile.open(path, "r:") as t:
        rows = t.extractfile("pack_manifest.tsv").read().decode().splitlines()
        head = rows[0].split("\t")
        for line in rows[1:]:
            r = dict(zip(head, line.split("\t")))
            data = t.extractfile(f"{r['split']}/{r['file']}").read()
            if verify and sha256_bytes(data) != r["sha256"]:
                raise ValueError(f"sha256 mismatch for {r['split']}/{r['file']}")
            with Image.open(io.BytesIO(data)) as im:
                a = np.asarray(im.convert("RGB"))
            if verify and (a.shape[1], a.shape[0]) != (int(r["width"]), int(r["height"])):
                raise ValueError(f"size mismatch for {r['file']}")
            out[r["split"]].append((r["file"], a))
    return out["train"], out["val"]


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------
def encode_webp(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, "WEBP", lossless=True, quality=90, method=6, exact=True)
    return b.getvalue()


def load_manifest(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:]]


def shrink(job):
    """Worker: (file path, long side) -> (bytes, w, h, new name) for one image."""
    path, side = job
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        if max(w, h) <= side:
            return None
        s = side / max(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        out = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return encode_webp(out), size[0], size[1]


def tar_overhead(names: list[str]) -> int:
    """Bytes a GNU tar adds around files: 512-byte headers (+ long-name blocks), padding, end."""
    n = 0
    for name in names:
        n += 512 + (512 + 512 * ((len(name) + 1 + 511) // 512) if len(name) >= 100 else 0)
    return n + 512 * len(names) + 10240  # padding upper bound + end-of-archive and record rounding


def build_entries(rows, data: Path, side: int | None, jobs: int):
    """Returns list of entries (dict with split, file, bytes data, w, h) at long side <= side."""
    from concurrent.futures import ProcessPoolExecutor
    paths = [data / r["split"] / r["file"] for r in rows]
    res = [None] * len(rows)
    if side is not None:
        with ProcessPoolExecutor(jobs) as ex:
            res = list(ex.map(shrink, [(str(p), side) for p in paths], chunksize=1))
    entries = []
    for r, p, s in zip(rows, paths, res):
        if s is None:
            b = p.read_bytes()
            w, h = (int(x) for x in r["output_size"].split("x"))
            name = r["file"]
        else:
            b, w, h = s
            name = os.path.splitext(r["file"])[0] + ".webp"
        entries.append({"row": r, "split": r["split"], "file": name, "data": b, "w": w, "h": h})
    return entries


def make_tar(entries, build_manifest: str, info: str) -> bytes:
    def add(t, name, b):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(b), 0, 0o644, 0, 0, "", ""
        t.addfile(ti, io.BytesIO(b))
    pm = ["split\tfile\tsha256\twidth\theight\tbytes\tpackage\tpath\tsource_sha256"]
    for e in entries:
        r = e["row"]
        pm.append("\t".join([e["split"], e["file"], sha256_bytes(e["data"]), str(e["w"]), str(e["h"]),
                             str(len(e["data"])), r["package"], r["path"], r["source_sha256"]]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        add(t, "pack_info.txt", info.encode())
        add(t, "pack_manifest.tsv", ("\n".join(pm) + "\n").encode())
        add(t, "build_manifest.tsv", build_manifest.encode())
        for e in entries:
            add(t, f"{e['split']}/{e['file']}", e["data"])
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "data")
    ap.add_argument("--manifest", type=Path, default=HERE / "manifest.tsv")
    ap.add_argument("--out", type=Path, default=None, help="default DATA/pack/gsimg-train.tar")
    ap.add_argument("--limit-mib", type=float, default=40.0, help="hard size limit of each tar (default 40 MiB)")
    ap.add_argument("--parts", type=int, default=1, help="split the bundle into this many tars (default 1)")
    ap.add_argument("--min-side", type=int, default=384,
                    help="below this long side, drop training images instead of shrinking")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--verify", type=Path, default=None, help="verify an existing bundle and exit")
    args = ap.parse_args()

    if args.verify:
        train, val = read_pack(args.verify)
        for split, items in (("train", train), ("val", val)):
            mp = sum(a.shape[0] * a.shape[1] for _, a in items) / 1e6
            print(f"{split}: {len(items)} images, {mp:.2f} Mpix")
        print(f"OK: {args.verify} ({os.path.getsize(args.verify):,} bytes), every sha256 and size verified")
        return

    data = args.data.resolve()
    if args.parts < 1:
        sys.exit("--parts: at least 1")
    out = (args.out or data / "pack" / "gsimg-train.tar").resolve()
    part_limit = int(args.limit_mib * MIB)
    build_manifest = args.manifest.read_text()
    rows = load_manifest(args.manifest)
    for r in rows:
        p = data / r["split"] / r["file"]
        if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != r["sha256"]:
            sys.exit(f"{p} is missing or differs from {args.manifest}: run models/data/build_dataset.py")
    full_side = max(max(int(x) for x in r["output_size"].split("x")) for r in rows)

    def total(entries):
        names = ["pack_info.txt", "pack_manifest.tsv", "build_manifest.tsv"] + \
                [f"{e['split']}/{e['file']}" for e in entries]
        return sum(len(e["data"]) for e in entries) + tar_overhead(names) + len(build_manifest) + \
            200 * len(entries) + 4096

    side, dropped = None, []
    entries = build_entries(rows, data, None, args.jobs)
    size = total(entries)
    # The size rule works on the whole bundle. With several parts, each repeats the small files,
    # and first fit leaves less than one image's room unused in each part but the last: the
    # whole bundle aims that much lower (the largest image as built bounds the shrunk ones).
    limit = part_limit
    if args.parts > 1:
        small = total([])
        largest = max(len(e["data"]) + 2048 for e in entries)
        limit = args.parts * part_limit - (args.parts - 1) * (small + largest)
        if limit <= 0:
            sys.exit(f"--limit-mib {args.limit_mib} is too small for {args.parts} parts")
    print(f"as built: {len(entries)} images, long side <= {full_side}, ~{size / MIB:.1f} MiB", file=sys.stderr)
    tried = []
    L = full_side
    while size > limit:
        est = int(L * (limit * 0.98 / size) ** 0.5) // 32 * 32
        L = min(L - 32, est)
        if L < args.min_side:
            break
        entries = build_entries(rows, data, L, args.jobs)
        size = total(entries)
        side = L
        tried.append((L, size))
        print(f"long side {L}: ~{size / MIB:.2f} MiB", file=sys.stderr)
    if size > limit:  # still too big at min_side: drop training images deterministically
        side = args.min_side
        entries = build_entries(rows, data, side, args.jobs)
        order = sorted((e for e in entries if e["split"] == "train"),
                       key=lambda e: hashlib.sha256(DROP_SALT + e["row"]["source_sha256"].encode()).hexdigest())
        while total(entries) > limit and order:
            e = order.pop(0)
            entries.remove(e)
            dropped.append(e["row"]["file"])
        size = total(entries)

    n = {s: sum(e["split"] == s for e in entries) for s in ("train", "val")}
    mpix = sum(e["w"] * e["h"] for e in entries) / 1e6
    fmts = sorted({os.path.splitext(e["file"])[1][1:] for e in entries})
    choice = ("images packed as built (long side <= %d)" % full_side if side is None else
              "long side reduced to %d px (Lanczos from the built files, re-encoded as lossless WebP) "
              "to fit %g MiB" % (side, args.limit_mib))
    if dropped:
        choice += f"; {len(dropped)} training images dropped to fit"
    info = "\n".join([
        "gsimg encoder training bundle (models/data/pack.py)",
        f"choice: {choice}",
        f"images: {len(entries)} ({n['train']} train, {n['val']} val)",
        f"megapixels: {mpix:.2f}",
        f"formats: {', '.join(fmts)} (lossless)",
        f"dropped: {' '.join(dropped) if dropped else 'none'}",
        f"build manifest sha256: {sha256_bytes(build_manifest.encode())}",
    ]) + "\n"
    if args.parts == 1:
        parts = [(out, entries)]
    else:
        # First fit in manifest order; the largest image must fit in one part.
        bins: list[list] = [[] for _ in range(args.parts)]
        for e in entries:
            for b in bins:
                if total(b + [e]) <= part_limit:
                    b.append(e)
                    break
            else:
                sys.exit(f"{e['file']} does not fit in any of {args.parts} parts of {args.limit_mib} MiB: "
                         "use more parts")
        stem = out.stem
        parts = [(out.with_name(f"{stem}-{i + 1}of{args.parts}.tar"), b) for i, b in enumerate(bins)]
    tars = []
    for i, (path, part) in enumerate(parts):
        part_info = info + (f"part: {i + 1} of {len(parts)} ({len(part)} images)\n" if len(parts) > 1 else "")
        tar = make_tar(part, build_manifest, part_info)
        if len(tar) > part_limit:
            sys.exit(f"internal error: {path.name} is {len(tar)} bytes > {part_limit}")
        tars.append((path, tar))
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = {p for p, _ in tars}
    for old in out.parent.glob("*.tar"):
        if old not in keep:
            old.unlink()
    lines = [info]
    for path, tar in tars:
        path.write_bytes(tar)
        lines.append(f"file: {path.name}\nbytes: {len(tar)}\nsha256: {sha256_bytes(tar)}\n")
        print(f"wrote {path}: {len(tar):,} bytes ({len(tar) / MIB:.2f} MiB), sha256 {sha256_bytes(tar)}")
    (out.parent / "pack_info.txt").write_text("".join(lines))
    print(info, end="")


if __name__ == "__main__":
    main()
