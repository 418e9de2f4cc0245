"""The export's examples for the painter (`export_lib.export_examples`): label maps and style exemplars of the
model's dataset, listed in metadata.json; an export without them when the data cannot be read."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from spade_tf.data import demo
from spade_tf.serving import export_lib, synthesis
from spade_tf.serving.inference import load_synthesizer
from tests.test_case import run_script, tiny_bundle


def demo_model(path, **kwargs):
    """A random-weight model of the demo's small variant (9 classes, 32 px), whose data the export reads."""
    return tiny_bundle(path, num_classes=len(demo.CLASS_NAMES), class_names=demo.CLASS_NAMES, **kwargs)


def read(export_dir, file):
    return np.asarray(Image.open(os.path.join(export_dir, file)))


def test_a_demo_vae_export_carries_label_maps_and_one_exemplar_per_look(tmp_path):
    model = load_synthesizer(demo_model(tmp_path / "w", use_vae=True))
    export_dir = str(tmp_path / "export")
    entry = export_lib.export_examples(model, export_dir)
    items = synthesis.load_split(model, "val", out=str)
    looks = demo.read_looks(os.path.dirname(os.path.dirname(os.path.dirname(items[0].source))), "val")

    # The first 4 validation label maps, as id PNGs equal to what synthesis reads, with their instance maps.
    assert entry["source"] == "demo dataset, val split"
    assert [e["name"] for e in entry["label_maps"]] == [item.name for item in items[:4]]
    for e, item in zip(entry["label_maps"], items):
        png = Image.open(os.path.join(export_dir, e["file"]))
        assert png.mode == "L" and e["file"].startswith("examples/labels/")
        np.testing.assert_array_equal(np.asarray(png), item.label)
        np.testing.assert_array_equal(read(export_dir, e["instances"]), item.instance)
    # One real photo per look, the first of each, labelled with its look.
    assert [e["look"] for e in entry["style_exemplars"]] == list(demo.LOOKS)
    for e in entry["style_exemplars"]:
        item = next(i for i in items if i.name == e["name"])
        assert looks[f"{item.name}.png"] == e["look"]
        assert item.name == min(name[:-4] for name, look in looks.items() if look == e["look"])
        np.testing.assert_array_equal(read(export_dir, e["file"]), item.real)
    # Listed in metadata.json, and kept when a later step (TFLite, ONNX) rewrites it.
    assert export_lib.read_metadata(export_dir)["examples"] == entry
    export_lib.write_metadata(model, export_dir)
    assert export_lib.read_metadata(export_dir)["examples"] == entry
    assert export_lib.examples_summary(entry) == (
        "Painter examples: 4 label maps and 4 style exemplars (midday, golden_hour, overcast, dusk) from the "
        "demo dataset, val split, in examples/."
    )
    assert sorted(os.listdir(os.path.join(export_dir, "examples"))) == ["instances", "labels", "styles"]


def test_without_a_vae_or_readable_data_there_are_fewer_or_no_examples(tmp_path):
    # A model without style input: label maps only; without instance maps, no instance files.
    plain = load_synthesizer(demo_model(tmp_path / "plain", use_instance_map=False))
    export_dir = str(tmp_path / "export")
    entry = export_lib.export_examples(plain, export_dir, num_examples=2)
    assert len(entry["label_maps"]) == 2 and entry["style_exemplars"] == []
    assert "instances" not in entry["label_maps"][0]
    assert sorted(os.listdir(os.path.join(export_dir, "examples"))) == ["labels"]

    # A model whose data is not on this machine: no examples, the reason recorded and printed, and the old
    # examples (of another model, maybe) gone.
    model = load_synthesizer(demo_model(tmp_path / "moved"))
    data = model.options["config"]["data"]
    data["dataset"], data["root"] = "custom", str(tmp_path / "gone")
    entry = export_lib.export_examples(model, export_dir)
    assert entry["label_maps"] == [] and "dataset could not be read" in entry["missing"], entry
    assert str(tmp_path / "gone") in entry["missing"]
    assert not os.path.exists(os.path.join(export_dir, "examples"))
    assert export_lib.read_metadata(export_dir)["examples"] == entry
    summary = export_lib.examples_summary(entry)
    assert summary.startswith("Painter examples: none (the model's dataset could not be read: ")
    assert summary.endswith("the painter opens on an empty canvas.")
    assert export_lib.export_examples(model, export_dir, num_examples=0)["missing"].startswith("none asked")
    for bad in (-1, 65, 2.0, True):
        with pytest.raises(ValueError, match="num_examples"):
            export_lib.export_examples(model, export_dir, num_examples=bad)


def test_dont_care_is_written_as_255_and_wide_maps_as_16_bit():
    info = type("Info", (), {"num_classes": 4, "contain_dontcare_label": True, "class_names": ["c"] * 5})
    png = export_lib._id_png_image(np.array([[0, 3, 4]]), info)
    assert png.mode == "L" and np.asarray(png).tolist() == [[0, 3, 255]]
    info.num_classes, info.class_names = 300, ["c"] * 301
    png = export_lib._id_png_image(np.array([[0, 299, 300]]), info)
    assert np.asarray(png).tolist() == [[0, 299, 300]]


def test_export_script_writes_examples_and_says_so(tmp_path):
    workdir = os.path.dirname(demo_model(tmp_path / "w", use_vae=True))
    export_dir = tmp_path / "export"
    run = run_script(
        "export.py", f"--model={workdir}", f"--export_dir={export_dir}", "--notflite", "--num_examples=2"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"wrote {export_dir / 'examples'} (" in run.stdout
    assert (
        "Painter examples: 2 label maps and 4 style exemplars (midday, golden_hour, overcast, dusk)"
        in run.stdout
    )
    meta = json.loads((export_dir / "metadata.json").read_text())
    assert len(meta["examples"]["label_maps"]) == 2
    # The model card lists them too.
    card = (export_dir / "MODEL_CARD.md").read_text()
    assert (
        "Painter examples: 2 label maps and 4 style exemplars (midday, golden_hour, overcast, dusk)" in card
    )
