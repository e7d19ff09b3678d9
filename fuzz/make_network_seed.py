"""Writes fuzz/seeds/network_output/model_*.bin: real output of models/compact.onnx on a crop of
examples/images/example.png, laid out for the `network_output` fuzz target (12 header bytes,
then little-endian f32 values that the target hands out in order to every tile).

    .venv/bin/python fuzz/make_network_seed.py      # needs numpy, pillow, onnxruntime
"""
import os
import struct

import numpy as np
import onnxruntime as ort
from PIL import Image

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
img = np.asarray(Image.open(os.path.join(root, "examples/images/example.png")).convert("RGB"))
crop = img[100:132, 200:232].astype(np.float32) / 255.0  # 32x32
sess = ort.InferenceSession(os.path.join(root, "models/compact.onnx"), providers=["CPUExecutionProvider"])
out = sess.run(None, {"image": crop.transpose(2, 0, 1)[None]})[0]  # [1, K, 9, 4, 4]
k = out.shape[1]
# header (see gsimg::fuzzing::network_output): compact, cell 8 (index 3), K, log2 σ in [-2, 3],
# receptive field 0, Y/Cb/Cr 6/6/6 bits (0x55), 5-bit positions, scales and rotations, RGB, and
# byte 11 = 31: a 32x4 picture (1 + 31 % 40 wide, 1 + (31 // 8) % 40 high; one byte cannot say
# 32x32), so the target reads the model's floats for the first rows of cells.
header = bytes([0, 3, k - 1, 6, 5, 0, 0x55, 4, 4, 4, 2, 31])
body = out.astype("<f4").tobytes()
dst = os.path.join(root, "fuzz/seeds/network_output")
os.makedirs(dst, exist_ok=True)
with open(os.path.join(dst, "model_compact.bin"), "wb") as f:
    f.write(header + body)
print(f"wrote {len(header) + len(body)} bytes: K = {k}, output {out.shape}, "
      "picture 32x4")
