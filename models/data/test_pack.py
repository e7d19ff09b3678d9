"""models/data/pack.py: a bundle split into parts keeps every image once, each part under its
limit, and every part reads back on its own (as the training script reads a folder of them)."""

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pack import read_pack

HERE = Path(__file__).resolve().parent

HEAD = ("split\tfile\tsha256\tpackage\tpath\tsource_sha256\tsource_size\toutput_size\tbytes\t"
        "pixels_sha256\tfamily\tnotes")


def make_data(root: Path, n: int = 10, side: int = 96) -> Path:
    rng = np.random.default_rng(0)
    rows = [HEAD]
    for i in range(n):
        split = "val" if i % 5 == 0 else "train"
        (root / split).mkdir(parents=True, exist_ok=True)
        # noise compresses badly: about 27 KB per picture as lossless WebP
        a = rng.integers(0, 256, (side, side + 8 * i, 3), dtype=np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).save(b, "WEBP", lossless=True)
        name = f"pic{i:02d}.webp"
        (root / split / name).write_bytes(b.getvalue())
        sha = hashlib.sha256(b.getvalue()).hexdigest()
        rows.append("\t".join([split, name, sha, "pkg", f"usr/share/{name}", sha, "x",
                               f"{side + 8 * i}x{side}", str(len(b.getvalue())), "x", "x", ""]))
    manifest = root / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def run_pack(root: Path, manifest: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "pack.py"), "--data", str(root),
                           "--manifest", str(manifest), "--jobs", "1", *args],
                          capture_output=True, text=True)


def test_parts_hold_every_image_once_within_the_limit(tmp_path):
    manifest = make_data(tmp_path)
    total = sum(p.stat().st_size for p in tmp_path.glob("*/*.webp"))
    limit_mib = (total / 2.5 + 64 * 1024) / (1 << 20)  # the pictures need 3 parts
    r = run_pack(tmp_path, manifest, "--parts", "3", "--limit-mib", f"{limit_mib:.4f}")
    assert r.returncode == 0, r.stderr
    parts = sorted((tmp_path / "pack").glob("*.tar"))
    assert [p.name for p in parts] == [f"gsimg-train-{i}of3.tar" for i in (1, 2, 3)]
    seen = []
    for p in parts:
        assert p.stat().st_size <= limit_mib * (1 << 20)
        train, val = read_pack(p)
        assert train + val, f"{p.name} is empty"
        seen += [n for n, _ in train + val]
    assert sorted(seen) == sorted(p.name for p in tmp_path.glob("*/*.webp"))
    assert "images packed as built" in (tmp_path / "pack" / "pack_info.txt").read_text()


def test_one_part_is_the_single_bundle(tmp_path):
    manifest = make_data(tmp_path, n=4)
    r = run_pack(tmp_path, manifest)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "pack").glob("*.tar")] == ["gsimg-train.tar"]
    train, val = read_pack(tmp_path / "pack" / "gsimg-train.tar")
    assert len(train) + len(val) == 4
