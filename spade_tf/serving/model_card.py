"""MODEL_CARD.md: what a model is, for a person, written beside every training bundle and every export.

The card is generated from what the files record, so it cannot drift from the model: the bundle's options
(training config or official options, class names, palette, step, license), the export's metadata.json
(signatures, limits, files) and the evaluation figures saved beside the model (`result.json` of the
training run, `eval_<split>.json` of spade-evaluate). Sections, after the Model Card idea of Mitchell et al.
(FAT* 2019, arXiv:1810.03993): the model, classes and palette, training data and steps, evaluation, inputs
and outputs with an example request, limits, license.

    write_bundle_card("workdirs/demo/model.keras")       # -> workdirs/demo/MODEL_CARD.md (training does this)
    write_export_card("exports/demo")                    # -> exports/demo/MODEL_CARD.md (export.py does this)
"""

import glob
import json
import os

import numpy as np

from spade_tf.data import labels as label_maps
from spade_tf.serving import export_lib
from spade_tf.serving.inference import load_synthesizer

CARD_FILE = "MODEL_CARD.md"
RESULT_FILES = ("result.json", "eval_*.json")
# Numbers in those files that are not measurements of the model (the training section shows the step).
NOT_FIGURES = ("step", "train_seconds")
PAPER = (
    "Park et al., Semantic Image Synthesis with Spatially-Adaptive Normalization, CVPR 2019, arXiv:1903.07291"
)
CODE_LICENSE = "Apache-2.0 (the LICENSE file of spade_tf)"
# What each recorded figure measures (the keys of spade_tf.evaluation.evaluate's results).
FIGURE_NOTES = {
    "oracle_": "the demo oracle, a segmentation CNN trained on the real demo images, labels the synthesized "
    "(and the real) validation images; mIoU / pixel accuracy against the input label maps",
    "style_accuracy": "demo: the share of images synthesized from an exemplar that a classifier of looks (fit on "
    "real images) gives the exemplar's look",
    "looks_per_map": "demo: how many looks images from 8 random seeds of one map cover, mean over maps",
    "seed_pixel_distance": "demo: mean absolute pixel difference between images of one map from different seeds",
    "texture_ratio": "demo: per class, the 5x5 local contrast of synthesized over real pixels; mean over classes",
    "streak_gap": "demo: per class, the share of left-right in all neighbour luminance steps, synthesized vs real; "
    "the largest gap over classes (vertical streaks in a sky raise it)",
    "border_step_ratio_": "demo: the left-right luminance steps in the 8 columns at each side over those between "
    "(about 1 for photos; thin vertical lines near the borders raise it)",
    "kid_oracle": "KID on the demo oracle's features (raw; spade-evaluate prints it x1000)",
    "fid": "Frechet Inception distance (pytorch-fid's Inception); lower is better; compare at equal image counts",
    "kid": "kernel Inception distance (raw; spade-evaluate prints it x1000)",
    "seg_": "a segmentation network's mIoU / pixel accuracy on synthesized (and real) images",
}


def card_path(model_path):
    """Where a bundle's card goes: MODEL_CARD.md beside a workdir's model.keras, <name>.MODEL_CARD.md beside
    any other bundle (several converted bundles may share a folder)."""
    folder, name = os.path.split(os.path.abspath(model_path))
    stem = name[: -len(".keras")] if name.endswith(".keras") else name
    return os.path.join(folder, CARD_FILE if stem == "model" else f"{stem}.{CARD_FILE}")


def _same_model(named, model_path):
    # A relative path was relative to the recording run's folder, unknown here: its file name decides.
    if os.path.isabs(named):
        return os.path.normpath(named) == model_path
    return os.path.basename(named) == os.path.basename(model_path)


def recorded_results(model_path):
    """{file name: figures} of the evaluation files saved beside a model (result.json, eval_<split>.json).

    A file that names another model (spade-evaluate records its `model`, training its `bundle`) is left out.
    """
    if not model_path:
        return {}
    model_path = os.path.abspath(model_path)
    folder = os.path.dirname(model_path)
    found = {}
    for pattern in RESULT_FILES:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue  # a figure file being written or damaged is left out, not fatal
            if not isinstance(data, dict):
                continue
            named = data.get("model") or data.get("bundle")
            if isinstance(named, str) and not _same_model(named, model_path):
                continue
            figures = {
                k: v
                for k, v in data.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_FIGURES
            }
            if figures:
                found[os.path.basename(path)] = figures
    return found


def bundle_metadata(synthesizer):
    """A bundle's facts in the shape of an export's metadata.json (signatures as an export will have them)."""
    info = synthesizer.info
    specs = export_lib.signature_specs(info)
    if synthesizer.encoder is None:
        specs = {k: v for k, v in specs.items() if k not in ("style", "style_png")}

    def spec_json(spec):
        return {"dtype": spec.dtype.name, "shape": [-1 if d is None else int(d) for d in spec.shape]}

    return {
        "model": info.to_json(),
        "source": {"path": synthesizer.source},
        "options": synthesizer.options,
        "license": synthesizer.license,
        "signatures": {
            name: {
                "inputs": {s.name: spec_json(s) for s in spec["inputs"]},
                "outputs": {s.name: spec_json(s) for s in spec["outputs"]},
            }
            for name, spec in specs.items()
        },
        "limits": export_lib.Limits().to_json(),
        "tflite_signatures": export_lib.tflite_signature_json(info),
        "files": {},
    }


# -- rendering ----------------------------------------------------------------------------------------------


def _origin(options):
    """ "trained", "fine-tuned" or "converted", from a bundle's options."""
    if "config" not in options:
        return "converted"
    return "fine-tuned" if (options["config"].get("train") or {}).get("init_from") else "trained"


def _dataset(options):
    if "config" in options:
        return options["config"]["data"]["dataset"]
    return options.get("dataset") or "unknown (not recorded by the converter; see the checkpoint's opt.txt)"


def _license_line(lic):
    text = f"**{lic.get('name', 'unknown')}**"
    if lic.get("url"):
        text += f" ({lic['url']})"
    if lic.get("reason"):
        text += f": {lic['reason']}"
    return text


def _shape(spec):
    return (
        "["
        + ", ".join(
            "N" if i == 0 and d == -1 else ("?" if d == -1 else str(d)) for i, d in enumerate(spec["shape"])
        )
        + "]"
    )


def _section_model(meta, title):
    info, options, lic = meta["model"], meta["options"], meta.get("license") or {}
    origin = _origin(options)
    size = f"{info['width']}x{info['height']} (width x height)"
    sizes = (
        f"{size} only (a VAE generator starts from a fixed latent grid)"
        if info["use_vae"]
        else f"trained at {size}; takes any height and width that are multiples of {info['size_multiple']}"
    )
    if origin == "converted":
        how = f"an official NVlabs/SPADE checkpoint ({_dataset(options)}) converted to spade_tf, trained by NVIDIA"
    else:
        how = f"{origin} with spade_tf on `{_dataset(options)}` for {options.get('step', '?')} steps"
        if origin == "fine-tuned":
            how += f" from `{options['config']['train']['init_from']}`"
    lines = [
        f"# Model card: {title}",
        "",
        f"A SPADE (GauGAN) generator for semantic image synthesis: it turns a label map of {info['num_classes']} "
        f"classes into an RGB image. {PAPER}. Implementation: spade_tf, numerically faithful to the official "
        "PyTorch code.",
        "",
        "| | |",
        "|---|---|",
        f"| Weights | {how} |",
        f"| Classes | {info['num_classes']}"
        + (" + don't care" if info["contain_dontcare_label"] else "")
        + " |",
        f"| Instance maps | {'used (instance edges are an input channel)' if info['use_instance_map'] else 'not used'} |",
        f"| Style | {'VAE: a latent of ' + str(info['latent_dim']) + ' from a seed or a style image' if info['use_vae'] else 'none (one image per label map)'} |",
        f"| Size | {sizes} |",
        f"| Weights license | {_license_line(lic)} |",
    ]
    source = meta.get("source") or {}
    if source.get("path"):
        sha = f", sha256 `{source['sha256']}`" if source.get("sha256") else ""
        lines.append(f"| Source file | `{source['path']}`{sha} |")
    if meta.get("spade_tf_version"):
        lines.append(
            f"| Exported | spade_tf {meta['spade_tf_version']}, TensorFlow {meta.get('tensorflow_version')}, {meta.get('exported_at')} |"
        )
    return lines


def _section_classes(meta):
    info = meta["model"]
    lines = [
        "",
        "## Classes and palette",
        "",
        "Label maps hold these ids; the painter and RGB label PNGs use these colours.",
        "",
    ]
    lines += ["| id | name | colour |", "|---:|---|---|"]
    names, palette = info["class_names"], np.asarray(info["palette"], np.int64)
    for i, name in enumerate(names):
        r, g, b = (int(c) for c in palette[i][:3])
        note = (
            f" (raw {label_maps.DONTCARE_VALUE} in label PNGs)"
            if info["contain_dontcare_label"] and i == info["num_classes"]
            else ""
        )
        lines.append(f"| {i} | {name}{note} | `#{r:02x}{g:02x}{b:02x}` ({r}, {g}, {b}) |")
    return lines


def _section_training(meta):
    options = meta["options"]
    lines = ["", "## Training data and steps", ""]
    if "config" in options:
        c = options["config"]
        d, t, m = c["data"], c["train"], c["model"]
        root = d.get("root") or (
            "generated procedural landscapes (spade_tf.data.demo)" if d["dataset"] == "demo" else ""
        )
        lines += [
            f"- Dataset: `{d['dataset']}`"
            + (f", {root}" if root else "")
            + f"; splits `{d.get('train_split', 'train')}` / `{d.get('val_split', 'val')}`.",
            f"- Preprocessing: `{d['preprocess_mode']}`, load {d['load_size']}, crop {d['crop_size']}, aspect {d['aspect_ratio']}, flip {d.get('flip', True)}.",
            f"- Steps: {options.get('step', '?')} at a global batch of {t['batch_size']} ({t['precision']}); "
            f"learning rate {t['lr']}, TTUR {t['ttur']}; losses: hinge GAN, feature matching x{t['lambda_feat']}"
            + (f", VGG x{t['lambda_vgg']}" if t.get("vgg_weights") else "")
            + (f", KL x{t['lambda_kld']}" if m.get("use_vae") else "")
            + ".",
            f"- Generator: base_filters {m['base_filters']}, num_upsampling_layers `{m['num_upsampling_layers']}`, "
            f"SPADE hidden {m['spade']['hidden_filters']}.",
        ]
        if t.get("init_from"):
            lines.append(f"- Fine-tuned from `{t['init_from']}`.")
        lines.append(
            "- The full training config is in the bundle (and in metadata.json `options.config` of an export)."
        )
    else:
        keys = (
            "label_nc",
            "contain_dontcare_label",
            "no_instance",
            "ngf",
            "num_upsampling_layers",
            "crop_size",
            "aspect_ratio",
            "use_vae",
        )
        lines += [
            f"- NVIDIA trained this checkpoint with the official code on `{_dataset(options)}` (github.com/NVlabs/SPADE; "
            "the paper gives the schedule). spade_tf converted it; no training happened here.",
            "- Official options: " + ", ".join(f"{k}={options[k]}" for k in keys if k in options) + ".",
        ]
        if options.get("source"):
            lines.append(
                "- Converted from: "
                + ", ".join(f"{k} `{v}`" for k, v in sorted(options["source"].items()))
                + "."
            )
    return lines


def _section_evaluation(results, model_ref):
    lines = ["", "## Evaluation", ""]
    if not results:
        return lines + [
            "No evaluation is recorded beside this model. Measure it with "
            f"`spade-evaluate --model {model_ref}` (FID/KID with `--inception`, mIoU with `--segmenter`; the demo "
            "oracle for demo models)."
        ]
    lines += ["Figures recorded beside the model (as measured; nothing here is from the paper):", ""]
    lines += ["| file | figure | value |", "|---|---|---:|"]
    used = set()
    for file, figures in results.items():
        for key, value in figures.items():
            text = f"{value:d}" if isinstance(value, int) else f"{value:.4g}"
            lines.append(f"| {file} | {key} | {text} |")
            used.add(key)
    notes = [
        f"- `{k}*`: {v}" if k.endswith("_") else f"- `{k}`: {v}"
        for k, v in FIGURE_NOTES.items()
        if any(u == k or (k.endswith("_") and u.startswith(k)) for u in used)
    ]
    if notes:
        lines += [""] + notes
    return lines


def _section_signatures(meta, model_name):
    info = meta["model"]
    lines = ["", "## Inputs and outputs", ""]
    lines += [
        "SavedModel signatures (method `tensorflow/serving/predict`; one-hot encoding, instance edges, the palette "
        "lookup and resizing run inside the model):",
        "",
        "| signature | inputs | outputs |",
        "|---|---|---|",
    ]
    for name, sig in meta.get("signatures", {}).items():
        ins = ", ".join(f"`{k}` {v['dtype']} {_shape(v)}" for k, v in sig["inputs"].items())
        outs = ", ".join(f"`{k}` {v['dtype']} {_shape(v)}" for k, v in sig["outputs"].items())
        lines.append(f"| `{name}` | {ins} | {outs} |")
    seed = ', "seed": 7' if info["use_vae"] else ""
    lines += [
        "",
        'Example requests (TF Serving\'s REST API, or `spade-serve`; `_bytes` inputs are base64 `{"b64": ...}`):',
        "",
        "```bash",
        f'curl -d \'{{"signature_name": "predict_png", "instances": [{{"label_png_bytes": {{"b64": "\'$(base64 -w0 label.png)\'"}}{seed}}}]}}\' \\',
        f"  http://localhost:8501/v1/models/{model_name}:predict",
        "```",
        "",
        "```python",
        "import json, urllib.request",
        "import numpy as np",
        f"labels = np.zeros(({info['height']}, {info['width']}), np.int32)   # class ids, one per pixel",
        'body = {"instances": [{"labels": labels.tolist()'
        + (', "instances": labels.tolist()' if info["use_instance_map"] else "")
        + (', "seed": 7' if info["use_vae"] else "")
        + "}]}",
        f'request = urllib.request.Request("http://localhost:8501/v1/models/{model_name}:predict", json.dumps(body).encode())',
        'image = np.array(json.load(urllib.request.urlopen(request))["predictions"][0], np.uint8)   # (H, W, 3)',
        "```",
    ]
    tfl = (meta.get("tflite_signatures") or {}).get("serving_default")
    if tfl:
        ins = ", ".join(f"`{k}` {v['dtype']} {_shape(v)}" for k, v in tfl["inputs"].items())
        outs = ", ".join(f"`{k}` {v['dtype']} {_shape(v)}" for k, v in tfl["outputs"].items())
        files = (meta.get("files") or {}).get("tflite") or {}
        where = f" ({', '.join(f'`{p}`' for p in files.values())})" if files else ""
        lines += ["", f"TFLite{where}, signature `serving_default`: {ins} -> {outs}."]
    if (meta.get("examples") or {}).get("label_maps"):
        # Inputs to try come with the export: the painter opens on them, and they are valid request bodies.
        lines += ["", export_lib.examples_summary(meta["examples"])]
    return lines


def _section_limits(meta):
    info, limits = meta["model"], meta.get("limits") or {}
    dontcare = (
        f"; {info['num_classes']} (or raw {label_maps.DONTCARE_VALUE} in a label PNG) is don't care"
        if info["contain_dontcare_label"]
        else ""
    )
    size = (
        f"exactly {info['height']}x{info['width']} (height x width)"
        if info["use_vae"]
        else f"any height and width that are multiples of {info['size_multiple']}; it was trained at {info['height']}x{info['width']}, other sizes are extrapolation"
    )
    lines = ["", "## Limits", ""]
    lines += [
        f"- Ids: 0..{info['num_classes'] - 1}{dontcare}. Other ids, a size the model cannot take, a body that is not a "
        "PNG or a colour outside the palette: `INVALID_ARGUMENT` naming the problem.",
        f"- Sizes: {size}.",
    ]
    if limits:
        lines.append(
            f"- Work per request (`INVALID_ARGUMENT` beyond, checked from PNG/JPEG headers before decoding): at most "
            f"{limits.get('max_maps')} label maps, {limits.get('max_pixels')} label pixels (N x H x W)"
            + (f", {limits.get('max_style_pixels')} style-image pixels" if info["use_vae"] else "")
            + " (spade-export --max_maps, --max_pixels, --max_style_pixels)."
        )
    lines += [
        f"- TFLite: fixed size {info['height']}x{info['width']}; TFLite has no assert op, so nothing checks the ids "
        "or the size: check them before calling (an out-of-range id gives a wrong image, not an error)"
        + (
            "; VAE models take a latent `z` (float32, one row per map) instead of a seed"
            if info["use_vae"]
            else ""
        )
        + ".",
        "- The images are synthesized, not photographs: they show what the training images made typical for each "
        "class, with that data's biases, and carry no information about any real place.",
    ]
    return lines


def _section_license(meta):
    lic = meta.get("license") or {}
    lines = ["", "## License", "", f"- Weights: {_license_line(lic)}."]
    if lic.get("attribution"):
        lines.append(f"- Attribution: {lic['attribution']}.")
    if lic.get("terms"):
        lines.append(f"- Terms: {lic['terms']}.")
    lines.append(f"- Code: spade_tf is {CODE_LICENSE}; the weights' license above governs the model files.")
    return lines


def render_model_card(meta, results=None, title=None, model_name="spade", model_ref="<model>"):
    """The card's Markdown.

    Args:
        meta: an export's metadata.json dict (or `bundle_metadata`'s).
        results: {file name: figures} (`recorded_results`).
        title: the card's title (default: the dataset and origin).
        model_name: the <name> of `/v1/models/<name>` in the example requests.
        model_ref: what `spade-evaluate --model` should be given, in the no-evaluation note.
    """
    options = meta["options"]
    title = (
        title
        or f"SPADE, {_dataset(options) if 'config' in options or options.get('dataset') else 'official checkpoint'} ({_origin(options)})"
    )
    lines = []
    lines += _section_model(meta, title)
    lines += _section_classes(meta)
    lines += _section_training(meta)
    lines += _section_evaluation(results or {}, model_ref)
    lines += _section_signatures(meta, model_name)
    lines += _section_limits(meta)
    lines += _section_license(meta)
    lines += [
        "",
        "_Generated by spade_tf (spade_tf.serving.model_card) from the model's files; regenerate, do not edit._",
        "",
    ]
    return "\n".join(lines)


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_bundle_card(model_path, synthesizer=None):
    """Writes the card beside a bundle (`card_path`: a training workdir's MODEL_CARD.md, or <name>.MODEL_CARD.md).

    Returns:
        The card's path.
    """
    synthesizer = synthesizer or load_synthesizer(model_path)
    source = synthesizer.source or os.path.abspath(model_path)
    text = render_model_card(bundle_metadata(synthesizer), recorded_results(source), model_ref=source)
    return _write(card_path(source), text)


def write_export_card(export_dir, model_name="spade"):
    """Writes MODEL_CARD.md into an export folder, from its metadata.json and the source's evaluation files.

    Returns:
        The card's path.
    """
    meta = export_lib.read_metadata(export_dir)
    source = (meta.get("source") or {}).get("path")
    text = render_model_card(
        meta, recorded_results(source), model_name=model_name, model_ref=source or "<model>"
    )
    return _write(os.path.join(export_dir, CARD_FILE), text)
