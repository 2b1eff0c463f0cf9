"""The 16-bit TIFF round trip, read with independent readers (tifffile and Pillow from PyPI).

  tiff_check.py make SOURCE.tif
      writes a 16-bit RGB TIFF (Deflate, little-endian strips) with a ProPhoto-named ICC
      profile, an XMP packet and camera tags, its samples using all 16 bits.
  tiff_check.py check SOURCE.tif FINISHED.tif LAYERS_DIR [SAME_PIXELS.tif]
      checks the finished photo (against SAME_PIXELS.tif's samples when given: tifffile decodes
      Deflate but not LZW or PackBits without imagecodecs): 16 bits per sample, the same size, the ICC profile and XMP
      byte-identical, the camera tags kept; pixels no layer touches equal to the source's
      16-bit values; every other pixel within one 8-bit step of a float64 reference composite
      of the layers (normal and darken blend modes) over the source.
Prints a JSON summary; exits non-zero on the first failed check.
"""

import json
import os
import re
import struct
import sys

import numpy as np
import tifffile
from PIL import Image


def icc_profile(description: bytes) -> bytes:
    """A small well-formed ICC header (RGB, XYZ PCS, display class) with a description tag."""
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(description) + 1) + description + b"\0"
    desc += b"\0" * (-len(desc) % 4)
    size = 128 + 4 + 12 + len(desc)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x04300000, b"mntr", b"RGB ", b"XYZ ")
    header += b"\0" * 12 + b"acsp" + b"\0" * (128 - 40)
    return header + struct.pack(">I", 1) + struct.pack(">4sII", b"desc", 128 + 4 + 12, len(desc)) + desc


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' \
      b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/tiff"/></rdf:RDF></x:xmpmeta>'


def make(path):
    height, width = 120, 160
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(7)
    planes = [x / width, y / height, (x + y) / (width + height)]
    rgb = np.stack([p * 60000 + 2000 + rng.integers(0, 255, size=p.shape) for p in planes], axis=-1)
    tifffile.imwrite(
        path,
        rgb.astype(np.uint16),
        photometric="rgb",
        compression="zlib",
        metadata=None,
        extratags=[
            (34675, 7, None, icc_profile(b"ProPhoto RGB"), False),
            (700, 1, None, XMP, False),
            (271, 2, None, "Retouchd Test Camera", False),
            (272, 2, None, "Model 16", False),
            (33432, 2, None, "(c) the studio", False),
        ],
    )


def fail(message):
    print(message)
    sys.exit(1)


def tag(page, name):
    found = page.tags.get(name)
    return None if found is None else found.value


def layers_of(folder):
    found = []
    for name in os.listdir(folder):
        m = re.fullmatch(r"index=(\d+)&blendmode=(\w+)&name=(.+)\.png", name)
        if m:
            found.append((int(m.group(1)), m.group(2), os.path.join(folder, name)))
    return sorted(found)


def check(source_path, finished_path, layers_dir, pixels_path=None):
    with tifffile.TiffFile(source_path) as src, tifffile.TiffFile(finished_path) as out, \
            tifffile.TiffFile(pixels_path or source_path) as pixels:
        sp, op = src.pages[0], out.pages[0]
        if op.bitspersample != 16:
            fail(f"{finished_path}: {op.bitspersample} bits per sample, not 16")
        for name in ("InterColorProfile", "XMP", "Make", "Model", "Copyright"):
            if tag(op, name) != tag(sp, name):
                fail(f"{finished_path}: {name} differs from the source's")
        source, finished = pixels.pages[0].asarray(), op.asarray()
    if finished.shape != source.shape or finished.dtype != np.uint16:
        fail(f"{finished_path}: {finished.shape} {finished.dtype}, the source is {source.shape} uint16")
    base = source[..., :3].astype(np.float64) / 65535.0
    untouched = np.ones(base.shape[:2], dtype=bool)
    layers = layers_of(layers_dir)
    if not layers:
        fail(f"no layers in {layers_dir}")
    for _, mode, path in layers:
        layer = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0
        colour, alpha = layer[..., :3], layer[..., 3:]
        if mode == "normal":
            blended = colour
        elif mode == "darken":
            blended = np.minimum(base, colour)
        else:
            fail(f"{path}: the reference does not know the blend mode {mode}")
        base = base * (1 - alpha) + blended * alpha
        untouched &= alpha[..., 0] == 0
    if not untouched.any() or untouched.all():
        fail(f"the layers touch {'every' if not untouched.any() else 'no'} pixel; the check needs both kinds")
    same = finished[untouched] == source[untouched]
    if not same.all():
        fail(f"{np.count_nonzero(~same)} untouched samples changed (first at {np.argwhere(~same)[0]})")
    error = np.abs(finished[..., :3].astype(np.float64) / 65535.0 - base)
    worst = float(error[~untouched].max()) * 255
    if worst > 1.0:
        fail(f"a touched pixel is {worst:.3f} 8-bit steps from the float reference (at most 1 allowed)")
    print(json.dumps({
        "bits": 16,
        "untouched_pixels": int(untouched.sum()),
        "touched_pixels": int((~untouched).sum()),
        "worst_error_8bit_steps": round(worst, 4),
        "icc_bytes": len(tag(sp, "InterColorProfile")),
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"]:
        make(sys.argv[2])
    elif sys.argv[1:2] == ["check"]:
        check(*sys.argv[2:6])
    else:
        fail(__doc__)
