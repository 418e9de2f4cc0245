"""Image grids and HTML galleries of label maps with their synthesized (and real) images."""

import html
import os

import numpy as np
from PIL import Image


def to_uint8(images):
    """[-1, 1] floats -> uint8 as the official `tensor2im`: (x + 1) / 2 * 255, clipped, truncated."""
    x = (np.asarray(images, np.float32) + 1.0) / 2.0 * 255.0
    return np.clip(x, 0, 255).astype(np.uint8)


def grid(rows, scale=1):
    """Stacks rows of equally sized uint8 images (lists of (H, W, 3)) into one image with 2 px gaps."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    gap = 2
    out = np.full(((h + gap) * len(rows) - gap, (w + gap) * cols - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = img
    if scale > 1:
        out = np.repeat(np.repeat(out, scale, 0), scale, 1)
    return out


def save_png(array, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)
    return path


def write_html_gallery(folder, entries, title, columns=("label", "synthesized", "real")):
    """Writes `folder/index.html` and `folder/images/*.png`.

    Args:
        entries: list of (name, {column: uint8 image}) in display order.
    Returns:
        The index.html path.
    """
    images_dir = os.path.join(folder, "images")
    os.makedirs(images_dir, exist_ok=True)
    rows = []
    for name, images in entries:
        cells = []
        for col in columns:
            if col not in images:
                cells.append("<td></td>")
                continue
            file = f"{name}_{col}.png"
            save_png(images[col], os.path.join(images_dir, file))
            cells.append(f'<td><img src="images/{html.escape(file)}" width="192"><br>{html.escape(col)}</td>')
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif} img{image-rendering:pixelated} td{text-align:center}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><table>{''.join(rows)}</table></body></html>"
    )
    path = os.path.join(folder, "index.html")
    with open(path + ".tmp", "w") as f:
        f.write(page)
    os.replace(path + ".tmp", path)
    return path
