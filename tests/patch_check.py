"""An independent reference for Glasses Anti Glare's patch layout, in numpy: places the patch on
the photo by each face's matrix from result.json (bicubic, Keys a = -0.5, on premultiplied alpha;
outside the patch transparent), blends it with linear light, and compares with retouchd's
finished photo.

Usage: patch_check.py SOURCE.png PATCH.png RESULT.json FLAT.png
Prints what it found; exits non-zero when any sample differs by more than one 8-bit step.
"""

import json
import sys

import numpy as np
from PIL import Image


def keys(t):
    a = -0.5
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def main():
    source_path, patch_path, result_path, flat_path = sys.argv[1:5]
    photo = np.asarray(Image.open(source_path).convert("RGB"), dtype=np.float64) / 255.0
    patch = np.asarray(Image.open(patch_path).convert("RGBA"), dtype=np.float64) / 255.0
    flat = np.asarray(Image.open(flat_path).convert("RGB"), dtype=np.float64) / 255.0
    result = json.load(open(result_path))
    faces = [f for p in result["plugins"] if p.get("pluginName") == "Glasses Anti Glare" for f in p.get("faces", [])]
    height, width, _ = photo.shape
    ph_img, pw_img, _ = patch.shape
    premultiplied = patch.copy()
    premultiplied[..., :3] *= premultiplied[..., 3:4]

    layer = np.zeros((height, width, 4))
    taken = np.zeros((height, width), dtype=bool)
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = xs + 0.5, ys + 0.5
    for face in faces:
        (a, b, c), (d, e, f) = face["glassesAntiGlarePatchMatrix"]
        pw = min(face.get("patchWidth", pw_img), pw_img)
        ph = min(face.get("patchHeight", ph_img), ph_img)
        u = a * cx + b * cy + c
        v = d * cx + e * cy + f
        inside = (u >= 0) & (v >= 0) & (u < pw) & (v < ph) & ~taken
        x = u[inside] - 0.5
        y = v[inside] - 0.5
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        total = np.zeros((x.size, 4))
        for j in range(4):
            wy = keys(fy - (j - 1))
            yi = np.clip(y0 + j - 1, 0, ph_img - 1).astype(int)
            for i in range(4):
                wx = keys(fx - (i - 1))
                xi = np.clip(x0 + i - 1, 0, pw_img - 1).astype(int)
                total += (wx * wy)[:, None] * premultiplied[yi, xi]
        alpha = np.clip(total[:, 3], 0, 1)
        colour = np.where(alpha[:, None] > 0, np.clip(total[:, :3] / np.maximum(alpha, 1e-12)[:, None], 0, 1), 0)
        layer[inside, :3] = colour
        layer[inside, 3] = alpha
        taken |= inside

    blended = np.clip(photo + 2 * layer[..., :3] - 1, 0, 1)  # linear light
    alpha = layer[..., 3:4]
    expected = (1 - alpha) * photo + alpha * blended
    diff = np.abs(expected - flat) * 255
    touched = taken.sum()
    print(f"faces: {len(faces)}, photo pixels under a patch: {touched}, max difference {diff.max():.3f}/255")
    untouched = ~taken
    if not np.array_equal(np.round(photo[untouched] * 255), np.round(flat[untouched] * 255)):
        print("PROBLEM: pixels outside every patch changed")
        sys.exit(1)
    if touched == 0:
        print("PROBLEM: no pixel lies under a patch")
        sys.exit(1)
    if diff.max() > 1.0 + 1e-6:
        print("PROBLEM: more than one 8-bit step from the reference")
        sys.exit(1)


if __name__ == "__main__":
    main()
