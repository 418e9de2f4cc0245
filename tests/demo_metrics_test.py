"""The demo's metrics: the look classifier, style fidelity, diversity, texture, and the report."""

import numpy as np
import pytest

from spade_tf.data import demo
from spade_tf.evaluation import demo_metrics as dm
from spade_tf.evaluation import oracle


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # The demo's own sizes (400 train, 64 val, 64 px; ~3 s), so the classifier is measured as the report uses it.
    root = demo.generate_demo_dataset(str(tmp_path_factory.mktemp("demo") / "d"), seed=0)
    images, labels = oracle.load_split(root, "val")
    return {
        "root": root,
        "classifier": dm.fit_look_classifier(root),
        "images": images,
        "labels": labels,
        "looks": dm.split_looks(root, "val"),
    }


def _blur(images):
    """A 3x3 binomial blur ([1, 2, 1] / 4 on each axis, edges repeated), rounded back to uint8."""
    x = images.astype(np.float64)
    k = (0.25, 0.5, 0.25)
    p = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="edge")
    x = sum(k[i] * p[:, i : i + x.shape[1]] for i in range(3))
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
    x = sum(k[i] * p[:, :, i : i + x.shape[2]] for i in range(3))
    return np.round(x).astype(np.uint8)


def test_classifier_tells_the_looks_of_real_validation_images(data):
    classifier = data["classifier"]
    assert classifier.looks == demo.LOOKS
    # Measured 1.0 on the 64 validation images (0.9975 on the 400 training images it was fit on).
    assert classifier.accuracy(data["images"], data["looks"]) >= 0.95
    predicted = classifier.predict(data["images"])
    assert predicted.shape == (64,) and set(predicted) == set(demo.LOOKS)
    # Not a constant or a lookup by position: float input in [-1, 1] gives the same answers.
    floats = data["images"].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(classifier.predict(floats), predicted)


def test_look_features_are_global_colour_statistics():
    images = np.zeros((2, 6, 4, 3), np.uint8)
    images[0, :2] = (200, 100, 50)  # top third
    images[1] = 128
    f = dm.look_features(images)
    assert f.shape == (2, 18)
    # Top third of image 0: mean RGB, luminance std 0 (flat), saturation (200 - 50) / 200.
    np.testing.assert_allclose(f[0, :5], [200, 100, 50, 0, 0.75])
    np.testing.assert_allclose(f[1, :3], [128, 128, 128])
    np.testing.assert_allclose(f[1, 15:], 0)  # a grey image has no colour spread


def test_classifier_errors():
    with pytest.raises(ValueError, match="before fit"):
        dm.LookClassifier().predict(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no training image has the looks"):
        dm.LookClassifier().fit(np.zeros((2, 8, 8, 3), np.uint8), ["midday", "dusk"])
    with pytest.raises(ValueError, match="unknown looks"):
        dm.LookClassifier().fit(np.zeros((1, 8, 8, 3), np.uint8), ["noon"])


def test_style_fidelity(data):
    classifier, images, looks = data["classifier"], data["images"], data["looks"]
    right = dm.style_fidelity(classifier, images, looks)
    assert right["style_accuracy"] >= 0.95
    assert set(right["style_accuracy_per_look"]) == set(demo.LOOKS)
    for look in demo.LOOKS:
        assert sum(right["style_confusion"][look].values()) == pytest.approx(1.0)
        assert right["style_confusion"][look][look] == pytest.approx(right["style_accuracy_per_look"][look])
    # Claiming every image was made from an exemplar of the next look: (almost) all wrong, and the
    # confusion says which look they came out as (the one before).
    shifted = [demo.LOOKS[(demo.LOOKS.index(v) + 1) % len(demo.LOOKS)] for v in looks]
    wrong = dm.style_fidelity(classifier, images, shifted)
    assert wrong["style_accuracy"] <= 0.05
    for i, look in enumerate(demo.LOOKS):
        assert wrong["style_confusion"][look][demo.LOOKS[i - 1]] >= 0.95
    table = dm.format_demo_report({"num_maps": 1, "num_looks": 4, "num_seeds": 8, **wrong})
    assert f"  {demo.LOOKS[1]}" in table and f", else {demo.LOOKS[0]} " in table
    # Only the images of the looks given have a row.
    assert (
        dm.style_fidelity(classifier, images[:2], [demo.LOOKS[0]] * 2)["style_confusion"][demo.LOOKS[1]]
        is None
    )


def test_looks_covered_and_seed_distance_on_constructed_inputs(data):
    assert dm.looks_covered([["a"] * 8, ["a", "b"] * 4, ["a", "b", "c", "d"] * 2]) == pytest.approx(7 / 3)
    # Three "maps", 8 "seeds" each, made of real images of known looks: one look, two looks, four looks.
    classifier, images = data["classifier"], data["images"]
    looks = np.array(data["looks"])
    right = classifier.predict(images) == looks
    by_look = {v: images[(looks == v) & right] for v in demo.LOOKS}
    one = by_look["midday"][:8]
    two = np.concatenate([by_look["midday"][:4], by_look["dusk"][:4]])
    four = np.concatenate([by_look[v][:2] for v in demo.LOOKS])
    result = dm.seed_diversity(classifier, np.stack([one, two, four]))
    assert result["looks_per_map"] == pytest.approx((1 + 2 + 4) / 3)
    assert result["seed_pixel_distance"] > 10

    # Identical seeds are 0 apart; black against white 255; a map of black, white, black seeds 170.
    same = np.repeat(images[:1, None], 8, axis=1)
    assert dm.seed_distance(same) == 0.0
    assert dm.seed_diversity(classifier, same)["looks_per_map"] == 1.0
    bw = np.zeros((1, 3, 4, 4, 3), np.uint8)
    bw[0, 1] = 255
    assert dm.seed_distance(bw) == pytest.approx(170.0)
    assert dm.seed_distance(bw.astype(np.float32) / 127.5 - 1.0) == pytest.approx(170.0)


def test_local_contrast_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    lum = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    got = dm.local_contrast(images, window=5)
    assert got.shape == (2, 5, 7)
    want = np.array(
        [[[lum[n, i : i + 5, j : j + 5].std() for j in range(7)] for i in range(5)] for n in range(2)]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_class_interiors_erode_by_the_window():
    labels = np.zeros((1, 12, 12), np.int64)
    labels[0, 2:9, 3:10] = 1  # a 7x7 square: 3x3 windows of 5x5 lie inside it
    labels[0, 0, 0] = 255  # don't-care belongs to no class
    inside = dm.class_interiors(labels, 2)
    assert inside.shape == (2, 1, 8, 8)
    assert inside[1].sum() == 9
    assert np.argwhere(inside[1, 0]).min(0).tolist() == [2, 3]
    assert not (inside[0] & inside[1]).any()
    assert not inside[0, 0, 0, 0]  # its window holds the don't-care pixel


def test_texture_ratio_of_real_images_and_a_blurred_copy(data):
    images, labels = data["images"], data["labels"]
    itself = dm.texture_ratios(images, images, labels)
    assert itself["texture_ratio"] == 1.0
    assert set(itself["texture_ratio_per_class"].values()) == {1.0}
    blurred = dm.texture_ratios(_blur(images), images, labels)
    ratios = blurred["texture_ratio_per_class"]
    # Measured: mean 0.71; sand 0.48, snow 0.55, rock 0.59, grass 0.61, water 0.65. Sky reads 1.06: in
    # windows at its border, the blur brings in the colours of the class next door.
    assert blurred["texture_ratio"] < 0.8
    for name in ("sand", "snow", "rock", "grass", "water"):
        assert ratios[name] < 0.7, name
    # A class with too few interior windows gets no ratio rather than a noisy one.
    few = dm.texture_ratios(images[:1], images[:1], labels[:1], min_windows=10**6)
    assert few["texture_ratio"] is None and set(few["texture_ratio_per_class"].values()) == {None}


def test_horizontal_step_share_reads_stripe_directions():
    labels = np.zeros((1, 8, 8), np.int64)
    labels[0, 4:] = 1
    images = np.zeros((1, 8, 8, 3), np.uint8)
    images[0, :4, 1::2] = 200  # class 0: vertical stripes, steps only left-right
    images[0, 4::2] = 90  # class 1: horizontal stripes, steps only up-down (rows 4 and 6)
    share, pairs = dm.horizontal_step_share(images, labels, 3)
    np.testing.assert_allclose(share[:2], [1.0, 0.0])
    assert np.isnan(share[2]) and pairs.tolist() == [24, 24, 0]  # class 2 is absent
    with pytest.raises(ValueError, match="does not match"):
        dm.horizontal_step_share(images, labels[:, :4], 3)


def test_streak_gap_finds_vertical_streaks_in_the_sky(data):
    images, labels = data["images"], data["labels"]
    itself = dm.streak_shares(images, images, labels)
    assert itself["streak_gap"] == 0.0
    real = itself["horizontal_step_share_real_per_class"]
    # Measured on the 64 validation photos: the sky changes from top to bottom (0.10), water in horizontal
    # ripples (0.06), grass in vertical blades (0.78).
    assert real["sky"] < 0.2 and real["water"] < 0.2 and real["grass"] > 0.6
    streaked = images.copy()
    columns = np.zeros_like(streaked[0, :, :, 0], bool)
    columns[:, ::2] = True
    sky = (labels == demo.CLASS_NAMES.index("sky")) & columns
    streaked[sky] = (streaked[sky].astype(np.int64) * 7 // 10).astype(np.uint8)  # every other column darker
    found = dm.streak_shares(streaked, images, labels)
    assert found["streak_class"] == "sky" and found["streak_gap"] > 0.5
    assert found["horizontal_step_share_synthesized_per_class"]["sky"] > 0.7
    # A class with too few neighbour pairs gets no share rather than a noisy one.
    few = dm.streak_shares(images, images, labels, min_pairs=10**9)
    assert few["streak_gap"] is None and few["streak_class"] is None


def test_border_step_ratio_finds_lines_near_the_left_and_right_borders(data):
    images = data["images"]
    real = dm.border_step_ratio(images)
    assert 0.8 < real < 1.2  # measured 0.96 on the 64 validation photos
    lined = images.copy()
    lined[:, :, [2, 61]] = (lined[:, :, [2, 61]].astype(np.int64) * 6 // 10).astype(
        np.uint8
    )  # two darker columns
    assert dm.border_step_ratio(lined) > 1.5
    # Lines in the middle lower it instead.
    middle = images.copy()
    middle[:, :, 30] = 0
    assert dm.border_step_ratio(middle) < real
    with pytest.raises(ValueError, match="too narrow"):
        dm.border_step_ratio(images[:, :, :16])


def _fake_synthesizer(images, blur=False):
    """A stand-in generator: the style image when given (a perfect style copier), else real image number seed."""

    def synthesize(labels, instances=None, seeds=None, style_images=None):
        assert instances is None or instances.shape == labels.shape
        if style_images is not None:
            out = style_images
        elif seeds is None:  # not a VAE: the maps' own photos
            out = images[: len(labels)]
        else:
            out = images[np.asarray(seeds) % len(images)]
        return _blur(out) if blur else out

    return synthesize


def test_demo_report_with_a_stand_in_synthesizer(data):
    images, labels, looks = data["images"], data["labels"], data["looks"]
    model = oracle.build_oracle(len(demo.CLASS_NAMES), width=4)
    report = dm.demo_report(
        _fake_synthesizer(images), labels, images, looks, data["classifier"], oracle=model, instances=labels
    )
    assert report["num_maps"] == 64 and report["num_looks"] == 4 and report["num_seeds"] == 8
    # Each map from its own photo: the real image back, so label consistency and texture are perfect.
    assert report["oracle_miou_ratio"] == pytest.approx(1.0)
    assert report["texture_ratio"] == 1.0 and report["streak_gap"] == 0.0
    # Exemplars of each look (never the map's own photo) come back as they are.
    assert report["style_accuracy"] >= 0.95
    # Seeds 0..7 give real images 0..7, whose looks go round: all four looks per map.
    assert report["looks_per_map"] == 4.0
    assert report["seed_pixel_distance"] > 10
    table = dm.format_demo_report(report)
    for text in (
        "style accuracy (4 looks)",
        "looks covered by 8 seeds (of 4)",
        "texture ratio",
        "  rock",
        "streaks",
    ):
        assert text in table

    blurry = dm.demo_report(
        _fake_synthesizer(images, blur=True), labels, images, looks, data["classifier"], num_diversity_maps=2
    )
    assert blurry["texture_ratio"] < 0.8 and "oracle_miou_ratio" not in blurry
    deterministic = dm.demo_report(
        _fake_synthesizer(images), labels, images, looks, data["classifier"], use_vae=False
    )
    assert deterministic["style_accuracy"] is None and deterministic["looks_per_map"] is None
    table = dm.format_demo_report(deterministic)
    assert "not measured: not a VAE" in table and "looks covered" not in table


def test_style_exemplars_avoid_the_maps_own_photo():
    looks = ["a", "b", "a", "a", "b"]
    picks = dm._style_exemplars(looks, "a")
    assert [looks[j] for j in picks] == ["a"] * 5
    assert all(j != i for i, j in enumerate(picks))
    assert dm._style_exemplars(looks, "c") is None
