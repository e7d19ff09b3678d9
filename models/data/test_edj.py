"""models/data/build_dataset.py: the JPEG streams of an Eet (.edj) theme file are found whole
(a JPEG nested in an APP segment is not a stream of its own, stuffed bytes in the scan are not
markers), and unpack_edj writes the largest colour one byte for byte. The build refuses to start
without a usable --eval-dir, with a one-line message, before it downloads anything."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from build_dataset import jpeg_streams, unpack_edj


def jpeg(w: int, h: int, mode: str = "RGB", seed: int = 0) -> bytes:
    # noise: its entropy-coded data is full of stuffed FF 00 pairs
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w),
                                             dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "JPEG", quality=90)
    return b.getvalue()


def with_nested(outer: bytes, inner: bytes) -> bytes:
    """`outer` with an APP2 segment right after its SOI that carries `inner` (as an EXIF
    thumbnail sits inside APP1)."""
    seg = b"\xff\xe2" + (len(inner) + 2).to_bytes(2, "big") + inner
    return outer[:2] + seg + outer[2:]


def test_streams_are_found_whole():
    a = with_nested(jpeg(64, 48, seed=1), jpeg(16, 16, seed=2))
    b = jpeg(200, 200, "L", seed=3)
    c = jpeg(128, 96, seed=4)
    blob = b"\x1e\xe7\x0f\x42eet header" + a + b"\x00" * 7 + b + c + b"\xff\xd8\xff\xe0 cut"
    found = [blob[s:e] for s, e in jpeg_streams(blob)]
    assert found == [a, b, c]
    for f in found:
        Image.open(io.BytesIO(f)).load()
    assert b"\xff\x00" in c  # the scan did hold stuffed bytes


def test_unpack_edj_writes_the_largest_colour_stream(tmp_path):
    small, grey, large = jpeg(64, 48, seed=5), jpeg(300, 300, "L", seed=6), jpeg(160, 90, seed=7)
    (tmp_path / "Pic.edj").write_bytes(b"eet" + small + b"dir" + grey + large + b"end")
    (tmp_path / "Empty.edj").write_bytes(b"eet without pictures")
    (tmp_path / "Empty.edj.jpg").write_bytes(b"stale")
    unpack_edj(tmp_path)
    assert (tmp_path / "Pic.edj.jpg").read_bytes() == large  # the grey plane is larger, not colour
    assert not (tmp_path / "Empty.edj.jpg").exists()
    with Image.open(tmp_path / "Pic.edj.jpg") as im:
        assert im.size == (160, 90) and im.mode == "RGB"


def run_build(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(Path(__file__).with_name("build_dataset.py")),
                           "--data", str(tmp_path / "data"), "--offline", *args],
                          capture_output=True, text=True, timeout=120)


def test_build_needs_an_evaluation_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, says in (((), "--eval-dir DIR is required"),
                       (("--eval-dir", str(tmp_path / "missing")), "not a folder"),
                       (("--eval-dir", str(tmp_path / "empty")), "no evaluation images")):
        r = run_build(tmp_path, *args)
        assert r.returncode == 1, r.stderr
        assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "data").exists()  # nothing downloaded or written
