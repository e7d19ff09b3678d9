#!/usr/bin/env python3
"""Is `--quality` monotone? Rate and PSNR of every picture of a folder at each quality.

For each quality, one `gsimg encode` command encodes all the folder's PNGs (`--out-dir`, one
process: the model loads once, and the files are byte for byte those of single encodes), then
`gsimg decode` renders each file at native size. PSNR and bpp follow BENCHMARKS.md's protocol
(RGB PSNR of the 8-bit decode against the 8-bit original per picture; bpp = file bytes * 8 /
pixels; means over the pictures).

The report: per picture, each step between consecutive qualities where the rate or the PSNR does
not rise (none when the scale is monotone), the smallest rise of each over all pictures and
steps, then the mean curve. Results go to --json as they come (per quality and picture), and a
later run with the same --json measures only the qualities still missing, so a sweep can be
stopped and resumed.

Usage (Pillow and numpy: `pip install -r benches/requirements.txt`):

    python3 benches/quality_sweep.py KODAK --json sweep.json \\
        --qualities 1,5,10,15,20,25,30,35,40,45,50,55,60,65,70,75,80,85,90,95,96,97,98,99,100 \\
        -- --device cpu
    python3 benches/quality_sweep.py --report sweep.json     # the report again

Arguments after `--` go to every `gsimg encode` command.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def psnr_bpp(original, decoded_png: Path, gsi: Path) -> tuple[float, float]:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(decoded_png).convert("RGB"), dtype=np.float64)
    if a.shape != original.shape:
        sys.exit(f"quality_sweep: {decoded_png} is {a.shape[1]}x{a.shape[0]}, the original "
                 f"{original.shape[1]}x{original.shape[0]}")
    mse = float(((a - original) ** 2).mean())
    px = a.shape[0] * a.shape[1]
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return gsi.stat().st_size * 8 / px, psnr


def sweep(args, extra: list[str]) -> dict:
    import numpy as np
    from PIL import Image

    folder = Path(args.folder)
    pictures = sorted(folder.glob("*.png"))
    if not pictures:
        sys.exit(f"quality_sweep: no .png in {folder}")
    qualities = [int(q) for q in args.qualities.split(",")]
    if any(not 1 <= q <= 100 for q in qualities):
        sys.exit("quality_sweep: qualities are 1 to 100")
    out = Path(args.json)
    res = json.loads(out.read_text()) if out.exists() else {"folder": str(folder), "qualities": {}}
    originals = {p.name: np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in pictures}
    for q in qualities:
        if str(q) in res["qualities"]:
            continue
        with tempfile.TemporaryDirectory(prefix="gsimg-sweep-") as d:
            d = Path(d)
            start = time.monotonic()
            cmd = [args.bin, "encode", *map(str, pictures), "--out-dir", str(d), "--quality", str(q), *extra]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"quality_sweep: quality {q}: {r.stderr.strip()}")
            seconds = time.monotonic() - start
            row = {}
            for p in pictures:
                gsi, png = d / (p.stem + ".gsi"), d / p.name
                r = subprocess.run([args.bin, "decode", str(gsi), str(png)], capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"quality_sweep: decode {gsi}: {r.stderr.strip()}")
                row[p.name] = psnr_bpp(originals[p.name], png, gsi)
        res["qualities"][str(q)] = {"encode_seconds": seconds, "pictures": row}
        out.write_text(json.dumps(res, indent=1))
        n = len(row)
        print(f"quality {q}: {sum(v[0] for v in row.values()) / n:.3f} bpp "
              f"{sum(v[1] for v in row.values()) / n:.2f} dB ({seconds:.0f} s)", file=sys.stderr)
    return res


def report(res: dict) -> None:
    qs = sorted(res["qualities"], key=int)
    rows = {q: res["qualities"][q]["pictures"] for q in qs}
    pictures = sorted(rows[qs[0]])
    print(f"{len(pictures)} pictures of {res['folder']}, qualities {', '.join(qs)}\n")
    falls = []
    smallest = {"bpp": (math.inf, ""), "PSNR": (math.inf, "")}
    for p in pictures:
        for a, b in zip(qs, qs[1:]):
            if p not in rows[a] or p not in rows[b]:
                continue
            d = {"bpp": rows[b][p][0] - rows[a][p][0], "PSNR": rows[b][p][1] - rows[a][p][1]}
            for k, v in d.items():
                if v < smallest[k][0]:
                    smallest[k] = (v, f"{p}, {a} to {b}")
            if d["bpp"] <= 0 or d["PSNR"] <= 0:
                falls.append(f"- {p}, {a} to {b}: {d['bpp']:+.4f} bpp, {d['PSNR']:+.4f} dB")
    steps = len(pictures) * (len(qs) - 1)
    print(f"Steps where rate or PSNR does not rise: {len(falls)} of {steps}")
    print("\n".join(falls))
    print(f"Smallest rise of the rate: {smallest['bpp'][0]:+.4f} bpp ({smallest['bpp'][1]})")
    print(f"Smallest rise of the PSNR: {smallest['PSNR'][0]:+.4f} dB ({smallest['PSNR'][1]})\n")
    print("| quality | mean bpp | mean PSNR (dB) | bpp range | encode s per picture |")
    print("|---|---|---|---|---|")
    for q in qs:
        v = list(rows[q].values())
        b = [x[0] for x in v]
        secs = res["qualities"][q]["encode_seconds"] / len(v)
        print(f"| {q} | {sum(b) / len(b):.3f} | {sum(x[1] for x in v) / len(v):.2f} | "
              f"{min(b):.3f}–{max(b):.3f} | {secs:.2f} |")


def main() -> None:
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", help="folder of PNG pictures")
    ap.add_argument("--json", help="results file (resumed when it exists)")
    ap.add_argument("--qualities", default="1,10,25,40,50,60,70,80,90,100")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "gsimg"), help="the gsimg binary")
    ap.add_argument("--report", metavar="JSON", help="print the report of an earlier run")
    args = ap.parse_args(argv)
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return
    if not args.folder or not args.json:
        ap.error("a folder and --json are needed (or --report JSON)")
    report(sweep(args, extra))


if __name__ == "__main__":
    main()
