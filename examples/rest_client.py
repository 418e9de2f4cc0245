"""Sends a label map to a served SPADE model over TF Serving's REST API and saves the synthesized image.

Standard library only (urllib). Works against TF Serving (`docker run ... tensorflow/serving`, port 8501)
and against this project's own server (`python serve.py --model exports/spade`).

    python examples/rest_client.py --labels label.png --output image.png
    python examples/rest_client.py --server http://gpu-box:8501 --model_name spade \
        --labels label.png --seed 7 --style photo.jpg --output image.png

`label.png` is a 1-channel PNG of class ids (8 or 16 bit) or an RGB PNG painted in the model's palette
colours (the export's metadata.json). The request uses the `predict_png` signature (`style_png` with
--style); TF Serving base64-decodes inputs and encodes outputs whose names end in `_bytes`:

    POST /v1/models/spade:predict
    {"signature_name": "predict_png",
     "inputs": {"label_png_bytes": [{"b64": "iVBORw0..."}], "seed": [7]}}
    -> {"outputs": [{"b64": "iVBORw0..."}]}
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request


def _request(url, body=None, timeout=60.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        # TF Serving answers errors as {"error": "..."}; show that rather than the bare status line.
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"{url}: HTTP {e.code}: {detail}") from None


def signature_inputs(server, model_name, signature, timeout=60.0):
    """Input names of a served signature, from GET /v1/models/<name>/metadata."""
    meta = _request(f"{server}/v1/models/{model_name}/metadata", timeout=timeout)
    defs = meta["metadata"]["signature_def"]["signature_def"]
    if signature not in defs:
        raise RuntimeError(f"model {model_name} has no signature {signature!r}; it has {sorted(defs)}.")
    return set(defs[signature]["inputs"])


def predict_png(server, model_name, label_png, seed=None, style_png=None, timeout=60.0):
    """Label PNG bytes -> synthesized PNG bytes.

    Args:
        server: base URL, e.g. "http://localhost:8501".
        model_name: the served model's name (TF Serving's MODEL_NAME).
        label_png: PNG bytes of the label map.
        seed: int seed of the latent (VAE models); None sends 0 when the model takes a seed.
        style_png: PNG or JPEG bytes of a style photo (VAE models with an encoder), or None.
        timeout: seconds.

    Returns:
        The image as PNG bytes.
    """
    signature = "predict_png" if style_png is None else "style_png"
    inputs = {"label_png_bytes": [{"b64": base64.b64encode(label_png).decode()}]}
    if style_png is not None:
        inputs["style_png_bytes"] = [{"b64": base64.b64encode(style_png).decode()}]
    if seed is not None or "seed" in signature_inputs(server, model_name, signature, timeout):
        inputs["seed"] = [int(seed or 0)]
    body = {"signature_name": signature, "inputs": inputs}
    out = _request(f"{server}/v1/models/{model_name}:predict", body, timeout)["outputs"]
    # One output comes back as its value; several as {name: value}.
    if isinstance(out, dict) and "image_png_bytes" in out:
        out = out["image_png_bytes"]
    return base64.b64decode(out[0]["b64"])


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://localhost:8501", help="REST base URL")
    parser.add_argument("--model_name", default="spade", help="served model name")
    parser.add_argument("--labels", required=True, help="label map PNG (ids or palette colours)")
    parser.add_argument("--seed", type=int, default=None, help="latent seed (VAE models; default 0)")
    parser.add_argument("--style", default=None, help="style photo, PNG or JPEG (VAE models)")
    parser.add_argument("--output", default="image.png", help="where to write the synthesized PNG")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        label_png = _read(args.labels)
        style = _read(args.style) if args.style else None
    except OSError as e:
        sys.exit(f"rest_client.py: error: cannot read {e.filename}: {e.strerror}")
    try:
        image = predict_png(
            args.server.rstrip("/"), args.model_name, label_png, args.seed, style, args.timeout
        )
    except (RuntimeError, urllib.error.URLError) as e:
        sys.exit(f"rest_client.py: error: {e}")
    with open(args.output, "wb") as f:
        f.write(image)
    print(f"wrote {args.output} ({len(image)} bytes)")


if __name__ == "__main__":
    main()
