#!/usr/bin/env python3
"""`gsimg encode` of a folder of pictures in one process (`--out-dir`) against one process per
picture, with the same encode options: the time per picture of each (wall and CPU time, mean
and median) and whether both wrote the same files.

    benches/batch_encode.py FOLDER [--gsimg PATH] [--rounds N] -- [encode options]

e.g. `benches/batch_encode.py $KODAK -- --device cpu --method analytic`. The pictures are the
folder's PNG, JPEG and WebP files. Each round runs both ways (one process per picture first);
the table keeps each way's fastest round. "median" of the batch is the one `gsimg` reports:
per picture, from the end of the one before (or the encoder being ready) to its file written.
Only the standard library is needed.
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stderr


def per_process(gsimg, pictures, out, options):
    """One `gsimg encode IN OUT` per picture: (wall seconds of each, CPU seconds in all)."""
    walls = []
    cpu = cpu_seconds()
    for p in pictures:
        stem = os.path.splitext(os.path.basename(p))[0]
        t = time.perf_counter()
        run([gsimg, "encode", p, os.path.join(out, stem + ".gsi"), *options])
        walls.append(time.perf_counter() - t)
    return walls, cpu_seconds() - cpu


def one_process(gsimg, pictures, out, options):
    """One `gsimg encode IN... --out-dir OUT`: (wall seconds, CPU seconds, the median per
    picture and the start-up gsimg reports, in seconds)."""
    cpu = cpu_seconds()
    t = time.perf_counter()
    err = run([gsimg, "encode", *pictures, "--out-dir", out, *options])
    wall = time.perf_counter() - t
    m = re.search(r"\(start ([0-9.]+) s\), median ([0-9.]+) ms per picture", err)
    if not m:
        sys.exit(f"no summary line in gsimg's output:\n{err}")
    return wall, cpu_seconds() - cpu, float(m.group(2)) / 1e3, float(m.group(1))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Options after -- go to gsimg encode.",
    )
    ap.add_argument("folder")
    ap.add_argument("--gsimg", default="target/release/gsimg")
    ap.add_argument("--rounds", type=int, default=1)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:split])
    a.options = argv[split + 1 :]
    pictures = sorted(
        os.path.join(a.folder, f)
        for f in os.listdir(a.folder)
        if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))
    )
    if not pictures:
        sys.exit(f"no pictures in {a.folder}")
    n = len(pictures)
    work = tempfile.mkdtemp(prefix="gsimg-batch-")
    try:
        single, batch = os.path.join(work, "single"), os.path.join(work, "batch")
        os.makedirs(single)
        os.makedirs(batch)
        best_single = best_batch = None
        for _ in range(a.rounds):
            walls, cpu = per_process(a.gsimg, pictures, single, a.options)
            if best_single is None or sum(walls) < sum(best_single[0]):
                best_single = (walls, cpu)
            b = one_process(a.gsimg, pictures, batch, a.options)
            if best_batch is None or b[0] < best_batch[0]:
                best_batch = b
        same = sum(
            open(os.path.join(single, f), "rb").read() == open(os.path.join(batch, f), "rb").read()
            for f in os.listdir(single)
        )
    finally:
        shutil.rmtree(work)
    walls, cpu = best_single
    wall, bcpu, median, start = best_batch
    print(f"{n} pictures from {a.folder}; gsimg encode {' '.join(a.options)}")
    print(f"{'':26} {'wall in all':>12} {'per picture':>12} {'median':>10} {'CPU per picture':>16}")
    print(
        f"{'one process per picture':26} {sum(walls):>10.2f} s {sum(walls) / n * 1e3:>9.0f} ms "
        f"{statistics.median(walls) * 1e3:>7.0f} ms {cpu / n * 1e3:>13.0f} ms"
    )
    print(
        f"{'one process for all':26} {wall:>10.2f} s {wall / n * 1e3:>9.0f} ms "
        f"{median * 1e3:>7.0f} ms {bcpu / n * 1e3:>13.0f} ms   (start {start:.2f} s)"
    )
    print(f"files identical: {same} of {n}")


if __name__ == "__main__":
    main()
