"""Reads a PSD written by retouchd with psd-tools (an independent reader) and checks it.

Usage: psd_check.py FILE.psd FLAT.png EXPECTED.json

EXPECTED.json: {"depth": 8, "layers": [{"name": "Heal", "mode": "normal", "opacity": 255}, ...]}
(server layers, bottom first; "visible": false for a layer kept hidden, such as a helper mask;
an optional "tolerance" in levels for psd-tools' own composite, 1 by default). Checks: the size and depth; a locked "Background" at the bottom
followed by the expected layers with their blend modes and opacities; the file's stored
composite equal to FLAT.png; and psd-tools' own composite of the layers (its numpy blend modes,
not retouchd's) within 1/255 of FLAT.png. Prints what it found; exits non-zero on a mismatch.
"""

import json
import sys

import numpy as np
from PIL import Image
from psd_tools import PSDImage
from psd_tools.constants import BlendMode, Tag

MODES = {
    "normal": BlendMode.NORMAL,
    "multiply": BlendMode.MULTIPLY,
    "screen": BlendMode.SCREEN,
    "overlay": BlendMode.OVERLAY,
    "darken": BlendMode.DARKEN,
    "lighten": BlendMode.LIGHTEN,
    "colorDodge": BlendMode.COLOR_DODGE,
    "colorBurn": BlendMode.COLOR_BURN,
    "hardLight": BlendMode.HARD_LIGHT,
    "softLight": BlendMode.SOFT_LIGHT,
    "difference": BlendMode.DIFFERENCE,
    "exclusion": BlendMode.EXCLUSION,
    "linearBurn": BlendMode.LINEAR_BURN,
    "linearDodge": BlendMode.LINEAR_DODGE,
    "linearLight": BlendMode.LINEAR_LIGHT,
    "vividLight": BlendMode.VIVID_LIGHT,
    "pinLight": BlendMode.PIN_LIGHT,
}


def as_unit(image):
    """An RGB PIL image as floats in 0..1 (16-bit PNGs come as I;16 per channel, so read via numpy)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float64)
    return array / 255.0


def main():
    psd_path, flat_path, expected_path = sys.argv[1:4]
    expected = json.load(open(expected_path))
    psd = PSDImage.open(psd_path)
    flat = Image.open(flat_path)
    problems = []

    print(f"psd: {psd.width}x{psd.height}, {psd.depth}-bit, {len(psd)} layers")
    if (psd.width, psd.height) != flat.size:
        problems.append(f"size {psd.width}x{psd.height}, flat is {flat.size}")
    if psd.depth != expected["depth"]:
        problems.append(f"depth {psd.depth}, expected {expected['depth']}")

    layers = list(psd)
    names = [layer.name for layer in layers]
    print("layers:", [(l.name, str(l.blend_mode), l.opacity) for l in layers])
    if not layers or layers[0].name != "Background":
        problems.append(f"the bottom layer is not Background: {names}")
    else:
        locks = layers[0].tagged_blocks.get_data(Tag.PROTECTED_SETTING)
        if not locks:
            problems.append("Background is not locked")
    want = expected["layers"]
    if names[1:] != [w["name"] for w in want]:
        problems.append(f"layers {names[1:]}, expected {[w['name'] for w in want]}")
    for layer, w in zip(layers[1:], want):
        if layer.blend_mode != MODES[w["mode"]]:
            problems.append(f"{layer.name}: mode {layer.blend_mode}, expected {w['mode']}")
        if abs(layer.opacity - w["opacity"]) > 1:
            problems.append(f"{layer.name}: opacity {layer.opacity}, expected {w['opacity']}")
        if layer.visible != w.get("visible", True):
            problems.append(f"{layer.name}: visible {layer.visible}, expected {w.get('visible', True)}")

    flat_unit = as_unit(flat)
    stored = as_unit(psd.topil())
    stored_diff = np.abs(stored - flat_unit).max() * 255
    print(f"stored composite vs flat: max difference {stored_diff:.3f}/255")
    if stored_diff > 0.5:
        problems.append(f"the stored composite differs from the flat photo by {stored_diff:.2f}/255")

    own = as_unit(psd.composite(ignore_preview=True, apply_icc=False))
    own_diff = np.abs(own - flat_unit).max() * 255
    off = (np.abs(own - flat_unit) * 255 > 0.5).mean() * 100
    print(f"psd-tools' own composite vs flat: max difference {own_diff:.3f}/255, {off:.2f}% of samples off by one level")
    # Both sides round floats to 8 bits, at slightly different points: one level is the limit
    # (or "tolerance", for a layer retouchd made at 16 bits that the 8-bit PSD stores rounded).
    if own_diff > expected.get("tolerance", 1.0) + 1e-6:
        problems.append(f"psd-tools composites the layers {own_diff:.2f}/255 away from retouchd's flat photo")

    for p in problems:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
