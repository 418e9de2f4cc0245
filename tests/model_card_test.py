"""The weights' license from bundle to export to card to painter, MODEL_CARD.md, and TF Serving's models.config.

A converted official checkpoint is CC BY-NC-SA 4.0 (NVIDIA's license of the SPADE models) at every step:
its bundle, what is fine-tuned from it, its export's metadata.json, its model card and the painter's header.
"""

import json
import os

import numpy as np
import pytest
from google.protobuf import text_format

from spade_tf.models.bundle import OFFICIAL_LICENSE, PROJECT_LICENSE, read_bundle_options, weights_license
from spade_tf.serving import model_card, serving_config
from spade_tf.serving import server as serve
from spade_tf.serving.export_lib import export_saved_model, read_metadata
from spade_tf.serving.inference import load_synthesizer
from spade_tf.serving.synthesis import data_config
from spade_tf.tools import convert
from tests.painter_browser_test import driver, open_page  # noqa: F401 (driver is a fixture)
from tests.serve_test import running
from tests.test_case import tiny_bundle

CC = OFFICIAL_LICENSE["name"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted 'official' COCO-Stuff checkpoint (random weights, 4 classes, 32 px) and its export."""
    root = tmp_path_factory.mktemp("converted")
    options = dict(convert.DATASET_PRESETS["coco_stuff"], label_nc=4, ngf=8, crop_size=32)
    np.savez(root / "latest_net_G.npz", **convert.generator_to_official(convert.build_generator(options)))
    # "coco", the official dataset_mode, is recorded under its one name.
    bundle = convert.convert_official(
        dict(options, dataset_mode="coco"), {"G": str(root / "latest_net_G.npz")}, str(root / "coco.keras")
    )
    export_dir = str(root / "export")
    export_saved_model(load_synthesizer(bundle), export_dir)
    return bundle, export_dir


def _finetune_options(init_from):
    return {"config": {"train": {"init_from": init_from}, "data": {"dataset": "coco_stuff"}}}


def test_license_follows_the_weights(converted, tmp_path):
    bundle, export_dir = converted
    options = read_bundle_options(bundle)
    assert options["license"]["spdx"] == "CC-BY-NC-SA-4.0" and options["license"]["name"] == "CC BY-NC-SA 4.0"
    assert options["dataset"] == "coco_stuff"
    # ... so reading its dataset's split needs only the folder.
    assert data_config(load_synthesizer(bundle), dataset_root=str(tmp_path)).data.dataset == "coco_stuff"
    assert read_metadata(export_dir)["license"]["name"] == CC
    trained = tiny_bundle(tmp_path / "trained")
    assert read_bundle_options(trained)["license"]["spdx"] == PROJECT_LICENSE["spdx"] == "Apache-2.0"
    # Fine-tuning from official weights makes a derivative: it keeps CC BY-NC-SA; from our own, Apache.
    finetuned = weights_license(_finetune_options(bundle))
    assert finetuned["spdx"] == "CC-BY-NC-SA-4.0" and "fine-tuned from" in finetuned["reason"]
    assert weights_license(_finetune_options(trained))["spdx"] == "Apache-2.0"
    # A source that cannot be read asserts nothing; a bundle from before licenses were recorded is worked out.
    assert weights_license(_finetune_options(str(tmp_path / "gone.keras")))["spdx"] == "NOASSERTION"
    assert weights_license({"label_nc": 4})["spdx"] == "CC-BY-NC-SA-4.0"
    assert weights_license({"config": {"train": {}}})["spdx"] == "Apache-2.0"


def test_cards_of_a_converted_bundle_and_its_export_say_cc_by_nc_sa(converted):
    bundle, export_dir = converted
    card = open(model_card.write_bundle_card(bundle)).read()
    assert os.path.basename(model_card.card_path(bundle)) == "coco.MODEL_CARD.md"
    assert f"**{CC}**" in card and "NVIDIA Corporation" in card and "non-commercial" in card
    assert "converted" in card and "`coco_stuff`" in card and "No evaluation is recorded" in card
    card = open(model_card.write_export_card(export_dir)).read()
    for section in (
        "## Classes and palette",
        "## Training data and steps",
        "## Evaluation",
        "## Inputs and outputs",
    ):
        assert section in card
    assert f"Weights: **{CC}**" in card and "| 4 | dontcare (raw 255 in label PNGs) |" in card
    assert "`predict_png` | `label_png_bytes` string [N]" in card and "curl -d" in card
    assert "TFLite has no assert op" in card and "at most 64 label maps" in card


def test_a_training_card_shows_the_figures_recorded_for_it(tmp_path):
    bundle = tiny_bundle(tmp_path / "w")
    with open(tmp_path / "w" / "result.json", "w") as f:
        json.dump(
            {"step": 7, "oracle_miou_synthesized": 0.8512, "num_images": 64, "bundle": "w/model.keras"}, f
        )
    with open(tmp_path / "w" / "eval_val.json", "w") as f:
        json.dump({"model": bundle, "split": "val", "fid": 41.25, "kid": 0.0123, "num_images": 64}, f)
    with open(tmp_path / "w" / "eval_train.json", "w") as f:
        json.dump({"model": str(tmp_path / "other.keras"), "fid": 99.0}, f)  # another model's: left out
    card = open(model_card.write_bundle_card(bundle)).read()
    assert "| result.json | oracle_miou_synthesized | 0.8512 |" in card
    assert "| eval_val.json | fid | 41.25 |" in card and "| eval_val.json | kid | 0.0123 |" in card
    assert "99" not in card.split("## Evaluation")[1].split("##")[0]
    assert "**Apache License 2.0**" in card and "trained with spade_tf on `demo`" in card


@pytest.mark.parametrize(
    "versions, latest, policy",
    [([], 1, ("latest", [1])), ([], 2, ("latest", [2])), ([1, 2], 1, ("specific", [1, 2]))],
)
def test_models_config_parses_with_tf_servings_protos(tmp_path, versions, latest, policy):
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    for v in (1, 2):
        os.makedirs(tmp_path / str(v))
    path = serving_config.write_models_config(str(tmp_path), "spade", None, versions, latest)
    config = text_format.Parse(open(path).read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("spade", "/models/spade", "tensorflow")
    kind, numbers = policy
    assert model.model_version_policy.WhichOneof("policy_choice") == kind
    got = (
        model.model_version_policy.latest.num_versions
        if kind == "latest"
        else model.model_version_policy.specific.versions
    )
    assert list(got) == numbers if kind == "specific" else [got] == numbers
    # Several models in one file (a deployer's own list), quoted names and paths.
    text = serving_config.models_config_text(
        [{"name": "spade", "base_path": "/m/a"}, {"name": 'b"c', "base_path": "gs://x/y", "versions": [3]}]
    )
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in parsed.model_config_list.config] == ["spade", 'b"c']
    with pytest.raises(ValueError, match=r"serving versions \[3\] are not in the export \(it has \[1, 2\]\)"):
        serving_config.write_models_config(str(tmp_path), versions=[3])


def test_painter_header_shows_the_weights_license(converted, driver):  # noqa: F811
    _, export_dir = converted
    with running(serve.SpadeHTTPServer(("127.0.0.1", 0), serve.ModelServable(export_dir))) as srv:
        open_page(driver, srv.url + "/")
        header = driver.find_element("id", "model-license")
        assert header.is_displayed() and header.text.startswith(f"Weights: {CC} (non-commercial use only")
        link = header.find_element("tag name", "a")
        assert link.get_attribute("href") == OFFICIAL_LICENSE["url"]
