"""The bundled demo dataset: procedural landscapes that ship as code.

`python train.py` with no flags trains on this dataset, so it has to be
generated in seconds, with no download, and be learnable on a CPU in minutes.
Each example is a landscape drawn from a seed: a sky with a gradient and
clouds, one or two mountain ranges with snow caps and rock patches, and a
foreground of water, sand and grass bands with trees and boulders. Every class
has its own colour *and* texture (ripple stripes for water, speck for sand,
vertical streaks for grass, leafy noise for trees), so a per-pixel
segmentation network can label real and synthesized images by appearance
(see `spade_tf/evaluation/oracle.py`).

Each image is also drawn in one of four global looks (`LOOKS`): midday, golden hour, overcast and dusk. A look
changes what the light does, the way photos of one place differ through the day: the sky's gradient and the
clouds' colours, the colour and direction of the light on the ground, how much of the sky the water mirrors,
how much haze veils the far mountains, and the hue of grass and trees. It never changes what is where: a tree is
a tree in every look. Looks go round by image index (0000 midday, 0001 golden hour, ...), so both splits hold
them in equal shares; `looks.json` records each image's look (`read_looks`), for models that take their style
from an exemplar and for the metrics that check it (`spade_tf/evaluation/demo_metrics.py`).

The dataset is written in the "custom" layout, which is also the example to
copy for your own data::

    root/
      palette.json            {"classes": [{"id": 0, "name": "sky", "color": [r, g, b]}, ...]}
      looks.json              {"train": {"0000.png": "midday", ...}, "val": {...}}: each image's look
      README.md
      train/labels/0000.png     mode L, one class id per pixel
      train/images/0000.png     RGB
      train/instances/0000.png  16-bit (mode I;16), class * 1000 + k for the k-th object
                                (k >= 1) of a thing class, class * 1000 for stuff
      val/...                   the same

Example:

    root = generate_demo_dataset()      # ~/.cache/spade_tf/demo-v2-seed0-64px, made once
    looks = read_looks(root, "val")     # {"0000.png": "midday", "0001.png": "golden_hour", ...}
"""

import dataclasses
import json
import os
import shutil

import numpy as np
from PIL import Image

CLASS_NAMES = ("sky", "cloud", "mountain", "snow", "water", "sand", "grass", "tree", "rock")
SKY, CLOUD, MOUNTAIN, SNOW, WATER, SAND, GRASS, TREE, ROCK = range(len(CLASS_NAMES))
# Thing classes: every object gets its own instance id (class * 1000 + k, k >= 1).
THING_CLASSES = (CLOUD, TREE)
INSTANCE_STRIDE = 1000
# Display colours for label maps (a categorical palette), deliberately unlike the texture colours so a
# label map is never mistaken for an image.
PALETTE_COLORS = np.array(
    [
        (31, 119, 180),  # sky
        (255, 127, 14),  # cloud
        (148, 103, 189),  # mountain
        (23, 190, 207),  # snow
        (214, 39, 40),  # water
        (188, 189, 34),  # sand
        (44, 160, 44),  # grass
        (227, 119, 194),  # tree
        (140, 86, 75),  # rock
    ],
    dtype=np.uint8,
)
# Bump when the generator's output changes: the version is part of the cache folder name.
# Version 2: global looks (LOOKS) and looks.json.
DEMO_VERSION = 2
SPLITS = ("train", "val")
LOOKS_FILE = "looks.json"
_MARKER = ".complete"
# What a (possibly half-written) demo folder may contain; anything else means the folder is not ours.
_DEMO_ENTRIES = {"train", "val", "palette.json", LOOKS_FILE, "README.md", _MARKER}
_SPLIT_CODES = {"train": 0, "val": 1}

# Foreground bands from the horizon down, and how often each scheme is drawn. Chosen so every foreground
# class shows up in about half of the images or more: water 0.67, grass 0.70, sand 0.50.
_FOREGROUND_SCHEMES = (
    ((WATER,), 0.10),
    ((GRASS,), 0.15),
    ((SAND,), 0.08),
    ((WATER, SAND), 0.12),
    ((WATER, GRASS), 0.15),
    ((WATER, SAND, GRASS), 0.20),
    ((SAND, GRASS), 0.10),
    ((GRASS, WATER), 0.10),
)


@dataclasses.dataclass(frozen=True)
class Look:
    """How the light falls in one global look; colours are RGB in 0..255.

    Args:
        name: the look's name, one of `LOOKS`.
        sky: the sky's gradient from the top of the image through half way to the horizon.
        glow: strength of the sun's glow in the sky near the horizon, on the sun's side (0: none).
        cloud_top, cloud_bottom: a cloud's colour at its top and at its flat bottom.
        light: the light's colour on ground, mountains, snow and trees: multiplies their textures.
        sun: strength of the side light (tree crowns, the whole-image ramp); 0 under an overcast sky.
        saturation: of the lit ground colours (1: as drawn, 0: grey).
        foliage: added to grass and tree colours (yellower in low sun, bluer at dusk).
        reflection: share of the horizon sky's colour the water mirrors near the horizon.
        glint: colour of the sun's glints on water ripples (black: none).
        haze: share of the horizon sky's colour that veils the far range (half as much on the near one).
    """

    name: str
    sky: tuple
    glow: float
    cloud_top: tuple
    cloud_bottom: tuple
    light: tuple
    sun: float
    saturation: float
    foliage: tuple
    reflection: float
    glint: tuple
    haze: float


_LOOKS = (
    Look(
        name="midday",
        sky=((55, 105, 185), (110, 155, 215), (165, 198, 232)),
        glow=0.0,
        cloud_top=(250, 250, 250),
        cloud_bottom=(178, 182, 192),
        light=(1.0, 1.0, 1.0),
        sun=1.0,
        saturation=1.0,
        foliage=(0, 0, 0),
        reflection=0.15,
        glint=(255, 255, 255),
        haze=0.1,
    ),
    Look(
        name="golden_hour",
        sky=((62, 88, 158), (178, 150, 160), (250, 178, 118)),
        glow=0.45,
        cloud_top=(255, 222, 170),
        cloud_bottom=(165, 118, 128),
        light=(1.08, 0.94, 0.76),
        sun=2.2,
        saturation=1.1,
        foliage=(22, 6, -12),
        reflection=0.4,
        glint=(255, 196, 110),
        haze=0.2,
    ),
    Look(
        name="overcast",
        sky=((160, 165, 176), (190, 193, 200), (216, 218, 222)),
        glow=0.0,
        cloud_top=(156, 159, 166),
        cloud_bottom=(94, 97, 106),
        light=(0.9, 0.91, 0.93),
        sun=0.0,
        saturation=0.65,
        foliage=(-4, -8, 0),
        reflection=0.45,
        glint=(110, 112, 116),
        haze=0.25,
    ),
    Look(
        name="dusk",
        sky=((22, 26, 70), (88, 62, 122), (232, 132, 108)),
        glow=0.3,
        cloud_top=(156, 108, 146),
        cloud_bottom=(244, 156, 136),
        light=(0.76, 0.68, 0.86),
        sun=0.6,
        saturation=0.85,
        foliage=(-8, -4, 12),
        reflection=0.5,
        glint=(255, 150, 120),
        haze=0.2,
    ),
)
# The global looks, in the order images take them (image i has LOOKS[i % len(LOOKS)]).
LOOKS = tuple(look.name for look in _LOOKS)
LOOK_STYLES = {look.name: look for look in _LOOKS}


def look_of_index(index):
    """The look of the image with this index in either split: the looks go round, so both splits are balanced."""
    return LOOKS[int(index) % len(LOOKS)]


def read_looks(root, split):
    """Each image's look in one split of a demo dataset folder.

    Args:
        root: the dataset folder (`generate_demo_dataset`).
        split: "train" or "val".

    Returns:
        {image file name: look name}, e.g. {"0000.png": "midday", "0001.png": "golden_hour", ...}.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = os.path.join(root, LOOKS_FILE)
    try:
        with open(path) as f:
            looks = json.load(f)[split]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: demo folders of version 2 and later record each image's look there; "
            "regenerate with spade_tf.data.demo.generate_demo_dataset()"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read the {split!r} looks from {path} ({e!r})") from e
    unknown = sorted({v for v in looks.values() if v not in LOOK_STYLES})
    if unknown:
        raise ValueError(f"{path}: unknown looks {unknown[:5]}; known looks are {LOOKS}")
    return dict(sorted(looks.items()))


def default_cache_dir():
    """Where generated data and cached oracles live: `$SPADE_TF_CACHE`, else `~/.cache/spade_tf`."""
    return os.environ.get("SPADE_TF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spade_tf")


def default_demo_root(seed=0, size=64):
    """The folder `generate_demo_dataset` uses when no root is given."""
    return os.path.join(default_cache_dir(), f"demo-v{DEMO_VERSION}-seed{seed}-{size}px")


def colorize_labels(labels):
    """Class ids (..., H, W) -> display colours (..., H, W, 3) uint8 from `PALETTE_COLORS`."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(PALETTE_COLORS)):
        raise ValueError(
            f"label ids must be in [0, {len(PALETTE_COLORS) - 1}] for the demo palette, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return PALETTE_COLORS[labels]


# ---------------------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------------------


def _smooth(t):
    return t * t * (3.0 - 2.0 * t)


def _noise_1d(rng, n, cell):
    """Smooth 1-D noise in [0, 1]: random values every `cell` samples, smoothstep-interpolated."""
    grid = rng.random(int(np.ceil(n / cell)) + 2)
    x = (np.arange(n) + rng.random() * cell) / cell
    i = np.floor(x).astype(int)
    f = _smooth(x - i)
    return grid[i] * (1 - f) + grid[i + 1] * f


def _value_noise(rng, h, w, cell_h, cell_w=None):
    """Smooth 2-D noise in [0, 1] on cells of cell_h x cell_w pixels (anisotropic cells give streaks)."""
    cell_w = cell_h if cell_w is None else cell_w
    grid = rng.random((int(np.ceil(h / cell_h)) + 2, int(np.ceil(w / cell_w)) + 2))
    y = (np.arange(h) + rng.random() * cell_h) / cell_h
    x = (np.arange(w) + rng.random() * cell_w) / cell_w
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = _smooth(y - y0)[:, None], _smooth(x - x0)[None, :]
    y0, x0 = y0[:, None], x0[None, :]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _fractal_noise(rng, h, w, cell, octaves=3):
    """Sum of value-noise octaves (cell, cell/2, ...) with halving weights, in [0, 1]."""
    total, norm = np.zeros((h, w)), 0.0
    for o in range(octaves):
        weight = 0.5**o
        total += weight * _value_noise(rng, h, w, max(cell / 2**o, 1.0))
        norm += weight
    return total / norm


def _fractal_1d(rng, n, cell, octaves=3):
    total, norm = np.zeros(n), 0.0
    for o in range(octaves):
        weight = 0.5**o
        total += weight * _noise_1d(rng, n, max(cell / 2**o, 1.0))
        norm += weight
    return total / norm


# ---------------------------------------------------------------------------------------------------------
# Layout: label and instance maps
# ---------------------------------------------------------------------------------------------------------


class _Canvas:
    """Label and instance maps painted together, so they always agree."""

    def __init__(self, size):
        self.label = np.full((size, size), SKY, np.uint8)
        self.instance = np.full((size, size), SKY * INSTANCE_STRIDE, np.int32)
        self.counts = {c: 0 for c in THING_CLASSES}

    def paint(self, mask, cls):
        self.label[mask] = cls
        self.instance[mask] = cls * INSTANCE_STRIDE

    def paint_thing(self, mask, cls):
        """Paints a new object of a thing class; returns its instance id."""
        self.counts[cls] += 1
        inst = cls * INSTANCE_STRIDE + self.counts[cls]
        self.label[mask] = cls
        self.instance[mask] = inst
        return inst


def _draw_clouds(rng, canvas, yy, xx, size, horizon):
    for _ in range(rng.integers(1, 5)):
        cx = rng.uniform(-0.05, 1.05) * size
        cy = rng.uniform(0.06, 0.75) * (horizon - 0.06 * size) + 0.04 * size
        half_w = rng.uniform(0.08, 0.2) * size
        half_h = rng.uniform(0.035, 0.07) * size
        mask = np.zeros_like(yy, bool)
        # A few lobes along the cloud's axis make the puffy outline; the bottom is cut flat.
        for _ in range(rng.integers(3, 6)):
            lx = cx + rng.uniform(-0.7, 0.7) * half_w
            ly = cy - rng.uniform(0.0, 0.6) * half_h
            rx = half_w * rng.uniform(0.35, 0.6)
            ry = half_h * rng.uniform(0.8, 1.3)
            mask |= ((xx - lx) / rx) ** 2 + ((yy - ly) / ry) ** 2 <= 1.0
        mask &= yy <= cy + 0.5 * half_h
        canvas.paint_thing(mask & (canvas.label == SKY), CLOUD)


def _draw_mountains(rng, canvas, yy, xx, size, horizon, layer):
    """One or two ranges; `layer` records which range a pixel belongs to (1 back, 2 front) for shading."""
    n_ranges = 2 if rng.random() < 0.4 else 1
    cols = np.arange(size)
    for r in range(n_ranges):
        front = r == n_ranges - 1
        height = rng.uniform(0.18, 0.42) * size if front else rng.uniform(0.3, 0.5) * size
        profile = _fractal_1d(rng, size, rng.uniform(0.25, 0.6) * size, octaves=4)
        # A broad peak somewhere keeps ranges from looking like flat hedges.
        peak = np.exp(-(((cols - rng.uniform(0, size)) / (rng.uniform(0.3, 0.7) * size)) ** 2))
        ridge = horizon - height * (0.3 + 0.45 * profile + 0.35 * peak)
        mask = (yy >= ridge[None, :]) & (yy < horizon)
        canvas.paint(mask, MOUNTAIN)
        layer[mask] = 2 if front else 1
        if rng.random() < 0.7:
            top = ridge.min()
            snowline = top + rng.uniform(0.25, 0.55) * (horizon - top)
            snowline = snowline + (_fractal_1d(rng, size, 3.0, octaves=2) - 0.5) * 0.12 * size
            canvas.paint(mask & (yy < snowline[None, :]), SNOW)
        if rng.random() < 0.6:
            noise = _fractal_noise(rng, size, size, rng.uniform(4, 8))
            threshold = np.quantile(noise[mask], rng.uniform(0.65, 0.85)) if mask.any() else 1.0
            canvas.paint(mask & (noise > threshold) & (canvas.label == MOUNTAIN), ROCK)


def _draw_foreground(rng, canvas, yy, size, horizon):
    schemes = [s for s, _ in _FOREGROUND_SCHEMES]
    probs = np.array([p for _, p in _FOREGROUND_SCHEMES])
    bands = schemes[rng.choice(len(schemes), p=probs / probs.sum())]
    cols = np.arange(size)
    # Band boundaries: wavy, slightly tilted curves between the horizon and the bottom edge.
    edges = np.sort(rng.uniform(0.15, 0.75, len(bands) - 1))
    top = np.full(size, horizon)
    for i, cls in enumerate(bands):
        if i < len(bands) - 1:
            wave = (_fractal_1d(rng, size, rng.uniform(0.2, 0.5) * size) - 0.5) * 0.25 * (size - horizon)
            tilt = rng.uniform(-0.15, 0.15) * (cols - size / 2)
            bottom = horizon + edges[i] * (size - horizon) + wave + tilt
            bottom = np.maximum(bottom, horizon + 1)
        else:
            bottom = np.full(size, float(size))
        canvas.paint((yy >= np.maximum(top, horizon)[None, :]) & (yy < bottom[None, :]), cls)
        top = bottom
    return bands


def _draw_boulders(rng, canvas, yy, xx, size, horizon):
    ground = (canvas.label == GRASS) | (canvas.label == SAND)
    ys, xs = np.nonzero(ground)
    if len(ys) == 0:
        return
    for _ in range(rng.integers(1, 4)):
        i = rng.integers(len(ys))
        depth = (ys[i] - horizon) / max(size - horizon, 1)
        r = (0.03 + 0.07 * depth) * size * rng.uniform(0.8, 1.4)
        lumpy = 1.0 + 0.25 * (_value_noise(rng, size, size, 3) - 0.5)
        mask = ((xx - xs[i]) / r) ** 2 + ((yy - ys[i]) / (0.7 * r)) ** 2 <= lumpy
        canvas.paint(mask & (yy <= ys[i] + 0.3 * r), ROCK)


def _draw_trees(rng, canvas, yy, xx, size, horizon, trunk):
    ys, xs = np.nonzero(canvas.label == GRASS)
    if len(ys) == 0:
        return
    pick = rng.choice(len(ys), size=rng.integers(2, 9))
    # Far trees first, so nearer (lower) trees overlap them.
    for i in sorted(pick, key=lambda k: ys[k]):
        by, bx = float(ys[i]), float(xs[i])
        depth = (by - horizon) / max(size - horizon, 1)
        height = (0.14 + 0.3 * depth) * size * rng.uniform(0.8, 1.25)
        trunk_h = height * rng.uniform(0.18, 0.28)
        trunk_w = max(1.0, height * 0.1)
        trunk_mask = (np.abs(xx - bx) <= trunk_w / 2) & (yy <= by) & (yy > by - trunk_h)
        crown_base = by - trunk_h
        if rng.random() < 0.5:
            # Conifer: a triangle from the apex down to the crown base.
            half_base = height * rng.uniform(0.22, 0.32)
            t = (yy - (by - height)) / max(height - trunk_h, 1.0)
            crown = (t >= 0) & (t <= 1) & (np.abs(xx - bx) <= half_base * t + 0.5)
        else:
            # Broadleaf: a lumpy disc above the trunk.
            radius = (height - trunk_h) * 0.5
            cy = crown_base - radius * 0.85
            angle = np.arctan2(yy - cy, xx - bx)
            wobble = 1.0 + 0.15 * np.sin(angle * rng.integers(4, 8) + rng.uniform(0, 2 * np.pi))
            crown = np.hypot(xx - bx, (yy - cy) * 1.1) <= radius * wobble
        canvas.paint_thing(crown | trunk_mask, TREE)
        trunk[crown] = False
        trunk[trunk_mask & ~crown] = True


def _layout(rng, size):
    """Label map, instance map and the shading hints the texture pass needs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    canvas = _Canvas(size)
    horizon = rng.uniform(0.45, 0.68) * size
    layer = np.zeros((size, size), np.uint8)
    trunk = np.zeros((size, size), bool)
    if rng.random() < 0.75:
        _draw_clouds(rng, canvas, yy, xx, size, horizon)
    if rng.random() < 0.8:
        _draw_mountains(rng, canvas, yy, xx, size, horizon, layer)
    _draw_foreground(rng, canvas, yy, size, horizon)
    if rng.random() < 0.35:
        _draw_boulders(rng, canvas, yy, xx, size, horizon)
    if rng.random() < 0.75:
        _draw_trees(rng, canvas, yy, xx, size, horizon, trunk)
    trunk &= canvas.label == TREE
    return canvas, {"horizon": horizon, "layer": layer, "trunk": trunk, "yy": yy, "xx": xx}


# ---------------------------------------------------------------------------------------------------------
# Textures and light
# ---------------------------------------------------------------------------------------------------------


def _rgb(*c):
    return np.array(c, np.float64)


def _mix(a, b, t):
    """Per-pixel blend of two colours: t (H, W) -> (H, W, 3)."""
    t = t[..., None]
    return a * (1 - t) + b * t


def _shade(color, amount):
    """Colour (3,) or (H, W, 3) times a per-pixel brightness (H, W)."""
    return color * amount[..., None]


def _sky_at(look, t):
    """The look's sky gradient at heights t (H, W) in [0, 1], 0 at the top, 1 at the horizon."""
    top, middle, horizon = (_rgb(*c) for c in look.sky)
    upper = _mix(top, middle, np.clip(2 * t, 0, 1))
    return np.where((t < 0.5)[..., None], upper, _mix(middle, horizon, np.clip(2 * t - 1, 0, 1)))


def _texture_sky(rng, size, hints, look, sun_side):
    yy, xx, horizon = hints["yy"], hints["xx"], hints["horizon"]
    t = np.clip(yy / max(horizon, 1.0), 0, 1) ** 0.8
    sky = _sky_at(look, t) + rng.uniform(-10, 10, 3)
    # A low sun lights the sky near the horizon on its side.
    sun_x = (0.5 + 0.35 * sun_side) * size
    glow = look.glow * np.exp(
        -(((xx - sun_x) / (0.4 * size)) ** 2) - ((yy - horizon) / (0.35 * horizon)) ** 2
    )
    sky = _mix(sky, _rgb(*look.glint), glow)
    haze = _fractal_noise(rng, size, size, 12, octaves=2) - 0.5
    return sky + 14 * haze[..., None]


def _texture_cloud(rng, size, hints, canvas, look):
    yy = hints["yy"]
    out = np.zeros((size, size, 3))
    puff = _fractal_noise(rng, size, size, 3, octaves=2) - 0.5
    top = _rgb(*look.cloud_top) + rng.uniform(-6, 6, 3)
    bottom = _rgb(*look.cloud_bottom) + rng.uniform(-6, 6, 3)
    for inst in np.unique(canvas.instance[canvas.label == CLOUD]):
        mask = canvas.instance == inst
        rows = yy[mask]
        # The colour goes from the top of each cloud to its flat bottom: lit tops and grey bellies by day,
        # bellies lit from below after sunset.
        t = np.clip((yy - rows.min()) / max(rows.max() - rows.min(), 1.0), 0, 1)
        out[mask] = _mix(top, bottom, t**1.5)[mask]
    return out + 22 * puff[..., None]


def _texture_mountain(rng, size, hints):
    if rng.random() < 0.5:
        front, back = _rgb(128, 100, 82), _rgb(132, 128, 158)  # brown range before a blue-grey one
    else:
        front, back = _rgb(112, 100, 128), _rgb(150, 150, 178)  # violet ranges
    base = np.where((hints["layer"] == 1)[..., None], back, front)
    # Diagonal gullies plus broad relief, so the slopes are textured without looking like rock.
    relief = _fractal_noise(rng, size, size, 8, octaves=3) - 0.5
    gully = np.sin((hints["xx"] * rng.choice([-1, 1]) + hints["yy"]) * 0.9 + 4 * relief)
    return _shade(base, 1.0 + 0.55 * relief + 0.09 * gully)


def _texture_snow(rng, size, hints):
    relief = _fractal_noise(rng, size, size, 5, octaves=2) - 0.5
    streak = np.sin((hints["xx"] * rng.choice([-1, 1]) + hints["yy"]) * 1.1 + 5 * relief)
    shadow = np.clip(0.5 + 0.5 * streak, 0, 1) ** 2
    return _mix(_rgb(232, 238, 248), _rgb(160, 180, 220), shadow) + 14 * relief[..., None]


def _texture_water(rng, size, hints, look):
    yy, horizon = hints["yy"], hints["horizon"]
    depth = np.clip((yy - horizon) / max(size - horizon, 1.0), 0, 1)
    base = _mix(_rgb(70, 120, 150), _rgb(25, 70, 110), depth) + rng.uniform(-8, 8, 3)
    # Water mirrors the sky near the horizon more than at the viewer's feet.
    base = _mix(base * _rgb(*look.light), _rgb(*look.sky[2]), look.reflection * (1 - 0.6 * depth))
    # Horizontal ripples whose period grows towards the viewer, bent a little by smooth noise.
    period = 2.0 + 3.0 * depth
    bend = _value_noise(rng, size, size, 4, 12)
    ripple = np.sin(2 * np.pi * yy / period + 3.0 * bend)
    glint = np.clip(ripple - 0.7, 0, None) / 0.3
    return _shade(base, 1.0 + 0.22 * ripple) + 0.11 * glint[..., None] * _rgb(*look.glint)


def _texture_sand(rng, size, hints):
    base = _rgb(208, 184, 135) + rng.uniform(-10, 10, 3)
    speck = rng.normal(0, 1, (size, size))
    dunes = np.sin((hints["yy"] * 0.8 + hints["xx"] * 0.25) + 3 * _value_noise(rng, size, size, 10))
    return _shade(base, 1.0 + 0.07 * dunes) + (17 * speck)[..., None]


def _texture_grass(rng, size, hints, look):
    base = _rgb(82, 148, 52) + _rgb(*look.foliage) + rng.uniform(-10, 10, 3)
    # Blades: noise on tall, one-pixel-wide cells gives vertical streaks; patches vary the hue slowly.
    blades = _value_noise(rng, size, size, 5, 1) - 0.5
    patches = _fractal_noise(rng, size, size, 10, octaves=2) - 0.5
    yellow = _rgb(40, 25, -10) * patches[..., None] * 2
    return _shade(base, 1.0 + 0.62 * blades + 0.2 * patches) + yellow


def _texture_tree(rng, size, hints, canvas, look, sun_side):
    xx = hints["xx"]
    leaves = _fractal_noise(rng, size, size, 2.5, octaves=2) - 0.5
    clumps = _value_noise(rng, size, size, 4) - 0.5
    light = np.ones((size, size))
    for inst in np.unique(canvas.instance[canvas.label == TREE]):
        mask = canvas.instance == inst
        cols = xx[mask]
        centre, half = cols.mean(), max((cols.max() - cols.min()) / 2, 1.0)
        # The sunny side of each crown is lighter, the more so the lower the sun.
        light[mask] = (1.0 + 0.25 * look.sun * sun_side * np.clip((xx - centre) / half, -1, 1))[mask]
    green = _rgb(36, 88, 40) + _rgb(*look.foliage) / 2 + rng.uniform(-6, 6, 3)
    crown = _shade(green, light * (1.0 + 0.8 * leaves + 0.35 * clumps))
    bark = _shade(_rgb(92, 62, 38), 1.0 + 0.3 * (_value_noise(rng, size, size, 3, 1) - 0.5))
    return np.where(hints["trunk"][..., None], bark, crown)


def _texture_rock(rng, size, hints):
    base = _rgb(78, 78, 84) + rng.uniform(-6, 6, 3)
    grain = rng.normal(0, 1, (size, size))
    facets = _value_noise(rng, size, size, 3) - 0.5
    cracks = np.abs(_value_noise(rng, size, size, 5) - 0.5) < 0.05
    out = _shade(base, 1.0 + 0.9 * facets) + (16 * grain)[..., None]
    return np.where(cracks[..., None], out * 0.55, out)


def _light(image, look):
    """Sunlight of the look on colours (..., 3) drawn in neutral light: its colour, then its saturation."""
    lit = image * _rgb(*look.light)
    grey = lit.mean(-1, keepdims=True)
    return grey + look.saturation * (lit - grey)


def render_example(rng, size, look="midday"):
    """Draws one landscape.

    Args:
        rng: a `np.random.Generator`; the example is a pure function of its state and the look.
        size: height and width in pixels (16 or more; textures are in pixel units, layouts in image units).
        look: the global look, one of `LOOKS`; it changes colours and light, never the label map.

    Returns:
        label: (size, size) uint8 class ids, see `CLASS_NAMES`.
        instance: (size, size) int32 ids, class * 1000 + k for the k-th object (k >= 1) of a thing class
            (cloud, tree), class * 1000 for stuff.
        image: (size, size, 3) uint8 RGB.
    """
    size = int(size)
    if size < 16:
        raise ValueError(f"demo images need size >= 16 pixels to draw clouds and trees, got size={size}")
    if look not in LOOK_STYLES:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    style = LOOK_STYLES[look]
    canvas, hints = _layout(rng, size)
    sun_side = rng.choice([-1.0, 1.0])
    image = np.zeros((size, size, 3))
    for cls in np.unique(canvas.label):
        if cls == SKY:
            texture = _texture_sky(rng, size, hints, style, sun_side)
        elif cls == CLOUD:
            texture = _texture_cloud(rng, size, hints, canvas, style)
        elif cls == WATER:
            texture = _texture_water(rng, size, hints, style)
        elif cls == GRASS:
            texture = _texture_grass(rng, size, hints, style)
        elif cls == TREE:
            texture = _texture_tree(rng, size, hints, canvas, style, sun_side)
        else:
            texture = _TEXTURES[cls](rng, size, hints)
        mask = canvas.label == cls
        image[mask] = texture[mask]
    # The sky and clouds are drawn in the look's colours and the water mirrors them; the rest is lit by the sun.
    lit = ~np.isin(canvas.label, (SKY, CLOUD, WATER))
    image[lit] = _light(image[lit], style)
    # Aerial perspective: the far range fades into the horizon's colour more than the near one. Rock is left
    # out, so rock patches keep their contrast against the slopes they lie on.
    mountains = np.isin(canvas.label, (MOUNTAIN, SNOW)) & (hints["layer"] > 0)
    haze = np.where(hints["layer"][mountains] == 1, style.haze, 0.5 * style.haze)
    image[mountains] = _mix(image[mountains], _rgb(*style.sky[2]), haze)
    # Whole-image light from the sun's side and a small colour/brightness jitter, so colours vary between
    # images and a model has to learn ranges rather than exact values.
    ramp = 1.0 + 0.06 * style.sun * sun_side * (hints["xx"] / (size - 1) - 0.5)
    gain = rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)
    image = image * ramp[..., None] * gain
    return canvas.label, canvas.instance, np.clip(np.round(image), 0, 255).astype(np.uint8)


_TEXTURES = {
    MOUNTAIN: _texture_mountain,
    SNOW: _texture_snow,
    SAND: _texture_sand,
    ROCK: _texture_rock,
}


# ---------------------------------------------------------------------------------------------------------
# On disk
# ---------------------------------------------------------------------------------------------------------

_README = """# spade_tf demo dataset (generated, version {version})

Procedural landscapes made by `spade_tf.data.demo.generate_demo_dataset(seed={seed}, size={size})`.
This is the "custom" layout; copy it for your own data.

    palette.json              class ids, names and display colours
    looks.json                each image's look ({looks}): {{"train": {{"0000.png": "midday", ...}}, "val": ...}}
    train/labels/NNNN.png     mode L, one class id per pixel ({num_classes} classes)
    train/images/NNNN.png     RGB
    train/instances/NNNN.png  16-bit (mode I;16): class * 1000 + k for the k-th object of a thing class
                              ({things}), class * 1000 for stuff
    val/...                   the same layout

train: {num_train} examples, val: {num_val} examples, {size} x {size} pixels.
"""


def _params(seed, num_train, num_val, size):
    return {"version": DEMO_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val, "size": size}


def _is_complete(root, params):
    try:
        with open(os.path.join(root, _MARKER)) as f:
            return json.load(f) == params
    except (OSError, ValueError):
        return False


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"generate_demo_dataset: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _write_split(root, split, seed, count, size):
    """Writes one split's files; returns {image file name: look name}."""
    folders = {kind: os.path.join(root, split, kind) for kind in ("labels", "images", "instances")}
    for folder in folders.values():
        os.makedirs(folder)
    looks = {}
    for i in range(count):
        # One generator per example: an example depends only on (seed, split, index), not on the split sizes.
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
        name = f"{i:04d}.png"
        looks[name] = look_of_index(i)
        label, instance, image = render_example(rng, size, looks[name])
        Image.fromarray(label, mode="L").save(os.path.join(folders["labels"], name))
        Image.fromarray(image, mode="RGB").save(os.path.join(folders["images"], name))
        Image.fromarray(instance.astype(np.uint16)).save(os.path.join(folders["instances"], name))
    return looks


def generate_demo_dataset(root=None, seed=0, num_train=400, num_val=64, size=64, overwrite=False):
    """Writes the demo dataset (once) and returns its folder.

    A finished folder holds a marker file, written last, with the generation parameters; a call that finds
    a marker with the same parameters returns at once. Generation writes into a temporary sibling folder and
    renames it at the end, so an interrupted run never looks complete; the next call regenerates.

    Args:
        root: output folder; default `<cache>/demo-v{DEMO_VERSION}-seed{seed}-{size}px` (see
            `default_cache_dir`).
        seed: non-negative integer; the dataset is a pure function of (seed, num_train, num_val, size).
        num_train: number of training examples.
        num_val: number of validation examples.
        size: image height and width in pixels (>= 16).
        overwrite: regenerate even if a complete folder exists.

    Returns:
        The dataset folder.
    """
    seed = _check_int("seed", seed, 0)
    num_train = _check_int("num_train", num_train, 1)
    num_val = _check_int("num_val", num_val, 1)
    size = _check_int("size", size, 16)
    root = os.path.abspath(root if root is not None else default_demo_root(seed, size))
    params = _params(seed, num_train, num_val, size)
    if not overwrite and _is_complete(root, params):
        return root
    if os.path.exists(root):
        entries = os.listdir(root) if os.path.isdir(root) else [root]
        # Cached oracles and their temporary files (spade_tf/evaluation/oracle.py) all start with "oracle".
        extra = sorted(e for e in entries if e not in _DEMO_ENTRIES and not e.startswith("oracle"))
        if extra:
            raise ValueError(
                f"{root} exists and does not look like a demo dataset folder (it holds {extra[:5]}); "
                "pass an empty or new folder as root, so nothing of yours is deleted"
            )

    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        looks = {
            split: _write_split(tmp, split, seed, count, size)
            for split, count in zip(SPLITS, (num_train, num_val))
        }
        with open(os.path.join(tmp, LOOKS_FILE), "w") as f:
            json.dump(looks, f, indent=1)
        palette = {
            "classes": [
                {"id": i, "name": name, "color": [int(c) for c in PALETTE_COLORS[i]]}
                for i, name in enumerate(CLASS_NAMES)
            ]
        }
        with open(os.path.join(tmp, "palette.json"), "w") as f:
            json.dump(palette, f, indent=1)
        with open(os.path.join(tmp, "README.md"), "w") as f:
            f.write(
                _README.format(
                    num_classes=len(CLASS_NAMES),
                    things=", ".join(CLASS_NAMES[c] for c in THING_CLASSES),
                    looks=", ".join(LOOKS),
                    **params,
                )
            )
        with open(os.path.join(tmp, _MARKER), "w") as f:
            json.dump(params, f)
        if not overwrite and _is_complete(root, params):
            # Another process (a second training, a parallel test) finished the same dataset meanwhile and
            # may be reading it (or caching its oracle there): keep that one.
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        if os.path.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
