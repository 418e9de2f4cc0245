"""evaluate.py and evaluation during training: metric wiring, label maps, the statistics cache, TensorBoard."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from configs.demo import get_config
from spade_tf.evaluation import evaluate as evaluation
from spade_tf.evaluation import metrics
from spade_tf.training import train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _FixedSegmenter:
    """Stands in for a Segmenter: returns preset predictions."""

    def __init__(self, pred):
        self.pred = np.asarray(pred)

    def predict(self, images):
        assert images.dtype == np.uint8
        return self.pred[: len(images)], None


class _MeanColourFeatures:
    """Stands in for InceptionFeatures: per-image mean colour and its square (counts its calls)."""

    identity = "mean-colour-test-v1"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        m = np.asarray(images, np.float64).mean(axis=(1, 2)) / 255.0
        return np.concatenate([m, m**2], axis=1)


def test_segmentation_scores_match_a_hand_confusion_matrix():
    # Raw label ids 0..4 map to evaluated ids: 0->0, 1->1, 2->1, 3->ignore(255), 4->2.
    class_map = np.array([0, 1, 1, 255, 2])
    labels = np.array([[[0, 1, 2, 3, 4, 4]]])
    pred = np.array([[[0, 1, 0, 2, 2, 1]]])
    scores = evaluation.segmentation_scores(
        _FixedSegmenter(pred), np.zeros((1, 1, 6, 3), np.uint8), labels, 3, 255, class_map
    )
    # Counted pixels (truth after the map, ignore dropped): (0,0) (1,1) (1,0) (2,2) (2,1).
    expected = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(scores["confusion"], expected)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 5)
    # IoU: class 0: 1 / (1 + 1) ; class 1: 1 / (2 + 2 - 1) ; class 2: 1 / (2 + 1 - 1).
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="covers 0..4"):
        evaluation.map_labels(np.array([5]), class_map)


def test_fid_and_kid_wiring_and_the_real_statistics_cache(tmp_path):
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    fakes = np.clip(reals.astype(int) + 40, 0, 255).astype(np.uint8)
    labels = np.zeros((12, 8, 8), np.int32)
    features = _MeanColourFeatures()
    cache = metrics.StatisticsCache(tmp_path / "stats")
    result = evaluation.evaluate_images(
        labels, fakes, reals, 2, inception=features, stats_cache=cache, kid_subset_size=6, kid_subsets=20
    )
    fr, ff = features(reals), features(fakes)
    expected = metrics.frechet_distance(*metrics.gaussian_statistics(fr), *metrics.gaussian_statistics(ff))
    assert result["fid"] == pytest.approx(expected, rel=1e-9)
    kid = metrics.kernel_inception_distance(fr, ff, num_subsets=20, subset_size=6)
    assert result["kid"] == pytest.approx(kid["kid"], rel=1e-9)
    assert result["fid"] > 0.01 and result["kid"] > 0
    # A second evaluation reads the real statistics from the cache: only the fakes are featurized.
    features.calls = 0
    again = evaluation.evaluate_images(labels, fakes, reals, 2, inception=features, stats_cache=cache)
    assert features.calls == 1 and again["fid"] == pytest.approx(result["fid"], rel=1e-9)
    table = evaluation.format_table(result)
    assert "FID (Inception)" in table and "KID x 1000" in table
    with pytest.raises(ValueError, match="must match"):
        evaluation.evaluate_images(labels[:3], fakes, reals, 2, inception=features)


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory):
    """A 4-step demo:small run with evaluation every 2 steps, in a private cache."""
    cache = str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("SPADE_TF_CACHE")
    os.environ["SPADE_TF_CACHE"] = cache
    config = get_config("small")
    config.train.max_steps = 4
    config.train.image_every = 0
    config.eval.every = 2
    config.eval.num_images = 6
    config.eval.gallery_size = 2
    work = str(tmp_path_factory.mktemp("work"))
    lines = []
    train_lib.train(config, work, out=lambda *a: lines.append(" ".join(map(str, a))))
    yield work, "\n".join(lines), cache
    if old is None:
        os.environ.pop("SPADE_TF_CACHE", None)
    else:
        os.environ["SPADE_TF_CACHE"] = old


def test_evaluation_during_training_is_logged_to_tensorboard(demo_workdir):
    work, printed, _ = demo_workdir
    values = {}
    for root, _, files in os.walk(os.path.join(work, "tensorboard")):
        for f in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, f)):
                for v in event.summary.value:
                    if v.tag.startswith("eval/"):
                        values.setdefault(v.tag, []).append(event.step)
    assert values["eval/oracle_miou_synthesized"] == [2, 4]
    assert values["eval/kid_oracle"] == [2, 4]
    assert "step 2 evaluation:" in printed and "mIoU, synthesized (demo oracle)" in printed


def test_evaluate_run_on_a_demo_workdir(demo_workdir, tmp_path):
    work, _, _ = demo_workdir
    printed = []
    out = tmp_path / "eval.json"
    result = evaluation.run(work, limit=6, output=str(out), out=printed.append)
    assert result["num_images"] == 6 and os.path.exists(out)
    for key in ("oracle_miou_synthesized", "oracle_miou_real", "kid_oracle"):
        assert np.isfinite(result[key])
    # The oracle does better on real images than on a 4-step generator's.
    assert result["oracle_miou_real"] > result["oracle_miou_synthesized"]
    table = "\n".join(printed)
    assert "KID x 1000 (demo-oracle features)" in table
    # The demo's own figures follow the oracle's table (style fidelity, diversity, texture).
    for row in ("style accuracy", "texture ratio"):
        assert row in table, table
    assert printed[-1].startswith("Written: ")


def test_evaluate_script_names_missing_weights_before_synthesis(demo_workdir, tmp_path):
    work, _, cache = demo_workdir
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model={work}", f"--inception={missing}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, SPADE_TF_CACHE=cache, PYTHONPATH=ROOT),
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert str(missing) in proc.stderr and "Synthesized" not in proc.stdout
