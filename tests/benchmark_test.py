"""spade_tf.tools.benchmark: FLOP counts against hand counts and the official numbers, artifact timing,
a whole run on a tiny config, and errors for bad flags."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.config import build_models
from spade_tf.tools.benchmark import configs, graph_flops, run, saved_model_runner, tflite_runner
from spade_tf.tools.benchmark import flops as flop_count
from spade_tf.tools.benchmark.inputs import artifact_size, label_inputs
from spade_tf.tools.benchmark.report import format_report, write_report
from spade_tf.training.trainer import trainer_from_config
from tests.test_case import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "demo.py") + ":small"  # 32 px, ngf 8, 10 semantic channels


def _conv_count(counts):
    """Graph FLOPs of the kinds the model count covers (matmuls are spectral norm's there)."""
    kinds = ("conv", "conv_grad_input", "conv_grad_filter", "bias")
    return sum(by_kind[k] for by_kind in counts.values() for k in kinds)


def _plain_generator(config):
    # The fast path replaces SPADE's first conv by a lookup; the graph count is compared with the model
    # count on the plain-conv computation.
    config.model.spade.fast = False


# ---------------------------------------------------------------------------- FLOP counts


def test_graph_counter_on_one_conv_matches_hand_count():
    kernel, bias = tf.ones([3, 3, 4, 6]), tf.ones([6])

    @tf.function
    def conv(x):
        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 2, "VALID"), bias)

    counts = graph_flops.count_graph_flops(conv.get_concrete_function(tf.TensorSpec([2, 9, 9, 4])))
    # Output 2 x 4 x 4 x 6 (stride 2, valid), each output 3 * 3 * 4 multiply-adds.
    assert counts["other"]["conv"] == 2 * (2 * 4 * 4 * 6) * (3 * 3 * 4)
    assert counts["other"]["bias"] == 2 * 4 * 4 * 6
    layer = flop_count.Layer("generator", "c", (3, 3, 4, 6), (4, 4), True, True)
    assert (2 * layer.macs + layer.bias_adds) * 2 == counts["other"]["conv"] + counts["other"]["bias"]

    weights = tf.Variable(tf.ones([3, 3, 4, 6]))

    @tf.function
    def kernel_grad_only(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.nn.conv2d(x, weights, 1, "SAME")))
        return tape.gradient(loss, weights)

    counts = graph_flops.count_graph_flops(
        kernel_grad_only.get_concrete_function(tf.TensorSpec([1, 5, 5, 4]))
    )
    # The input gradient is created by the conv's gradient function but unused: pruned, not counted.
    assert counts["other"]["conv_grad_filter"] == counts["other"]["conv"] == 2 * (5 * 5 * 6) * (3 * 3 * 4)
    assert counts["other"]["conv_grad_input"] == 0


def _hand_generator_flops(sem, nf, hidden, grid, batch):
    """Conv FLOPs of the 'normal' generator summed block by block (SPADE kernel 3)."""
    hw = grid * grid
    macs = hw * 9 * sem * 16 * nf  # fc on the latent grid
    blocks = [(1, 16, 16), (2, 16, 16), (2, 16, 16), (4, 16, 8), (8, 8, 4), (16, 4, 2), (32, 2, 1)]
    bias = hw * 16 * nf
    for scale, fin, fout in blocks:
        fin, fout, mid = fin * nf, fout * nf, min(fin, fout) * nf
        area = hw * scale * scale
        norms = [fin, mid] + ([fin] if fin != fout else [])
        for channels in norms:  # mlp_shared, mlp_gamma, mlp_beta
            macs += area * 9 * (sem * hidden + 2 * hidden * channels)
            bias += area * (hidden + 2 * channels)
        macs += area * 9 * (fin * mid + mid * fout) + (area * fin * fout if fin != fout else 0)
        bias += area * (mid + fout)
    area = hw * 32 * 32
    macs += area * 9 * nf * 3  # conv_img
    bias += area * 3
    return batch * (2 * macs + bias), batch * 2 * macs


def test_tiny_generator_count_matches_hand_sum_and_graph():
    config, _ = configs.resolve_config(TINY)
    config.model.base_filters, config.model.spade.hidden_filters = 4, 8
    summary = configs.model_summary(config)
    flops = flop_count.model_flops(summary, batch=2)["generator_forward"]
    ours, official = _hand_generator_flops(sem=10, nf=4, hidden=8, grid=1, batch=2)
    # Integer counts divided by 1e9: equal up to float rounding.
    assert flops["gflop"] * 1e9 == pytest.approx(ours, rel=1e-12)
    assert flops["official_convention_gflop"] * 1e9 == pytest.approx(official, rel=1e-12)

    _plain_generator(config)
    generator, _, _ = build_models(config)
    flop_count.check_layers(flop_count.generator_layers(summary), generator)
    forward = tf.function(lambda s: generator(s, training=False))
    counts = graph_flops.count_graph_flops(forward.get_concrete_function(tf.TensorSpec([2, 32, 32, 10])))
    assert _conv_count(counts) == ours


def _discriminator_route_extra_macs(summary, pair):
    """Multiply-adds the discriminator's convs run beyond the model count with the forward-conv gradients
    (spade_tf.models.conv._route), per step: {"G": ..., "D": ...}. Counted by hand from the layer shapes.

    A stride-2 4x4 conv (padding 2) runs as a 2x2 conv on the space-to-depth input: an odd padded size P
    gets one zero row (column) more and computes one output row (column) more, (P + 1) / 2 - 1, in its
    forward and kernel gradient; its input gradient covers the whole padded input, P' / 2 rows. A stride-1
    4x4 conv (padding 2) on N rows outputs N + 1, and its input gradient, a VALID conv of dy padded by 1,
    covers only the N input rows. The G step runs D's forward and input gradients, the D step its forward,
    kernel gradients and the input gradients of every layer but the first (the model count's rules).
    """
    extra = {"G": 0, "D": 0}
    layers = flop_count.discriminator_layers(summary)
    per_scale = summary["disc_layers"] + 1
    scale_input = (summary["height"], summary["width"])
    for i, layer in enumerate(layers):
        n = i % per_scale
        if n == 0:
            if i:  # avg_pool2d(3, stride 2, padding 1)
                scale_input = tuple((s - 1) // 2 + 1 for s in scale_input)
            size = scale_input
        kh, kw, cin, cout = layer.kernel
        per_position = kh * kw * cin * cout * pair
        model = int(np.prod(layer.output))
        if n < summary["disc_layers"] - 1:  # stride 2
            padded = [s + 4 for s in size]
            computed = [(p + p % 2) // 2 - 1 for p in padded]
            forward = int(np.prod(computed)) - model
            input_grad = int(np.prod([c + 1 for c in computed])) - model
            kernel_grad = forward
        else:  # stride 1
            forward = kernel_grad = 0
            input_grad = int(np.prod(size)) - model
        extra["G"] += per_position * (forward + input_grad)
        extra["D"] += per_position * (forward + kernel_grad + (input_grad if n else 0))
        size = layer.output
    return extra


@pytest.mark.parametrize("reuse_fakes", [False, True])
def test_tiny_training_step_count_matches_the_traced_steps(reuse_fakes):
    # Checks the rules of the training-step count (which gradients TF computes) on the real steps. With
    # train.reuse_fakes the D step judges the G step's fakes: its traced graph holds no generator conv at all.
    config, (h, w) = configs.resolve_config(TINY)
    config.train.reuse_fakes = reuse_fakes
    config.discriminator.num_scales = 1
    config.train.batch_size = 2
    _plain_generator(config)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    gan = trainer_from_config(config, strategy, steps_per_epoch=1)
    element = {
        "label": tf.zeros([2, h, w], tf.int32),
        "instance": tf.zeros([2, h, w], tf.int32),
        "image": tf.zeros([2, h, w, 3]),
        "index": tf.range(2, dtype=tf.int64),
    }
    dist = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(element))))
    summary = configs.model_summary(config)
    flops = flop_count.model_flops(summary, train_batch=2)
    forward = flop_count.model_flops(summary, batch=2)["generator_forward"]
    traced = {"G": gan._distributed("G").get_concrete_function(dist)}
    if reuse_fakes:
        fakes = tf.zeros([2, h, w, 3])
        traced["D"] = gan._distributed("D_given").get_concrete_function(dist, fakes)
    else:
        traced["D"] = gan._distributed("D").get_concrete_function(dist)
    # The model count plus what the discriminator's forward-conv gradients run beyond it (0.8% of the D
    # step's multiply-adds here).
    extra = _discriminator_route_extra_macs(summary, pair=4)
    assert 0 < extra["D"] < 0.02 * flops["train_D_step"]["mac_gflop"] * 1e9
    for name, function in traced.items():
        counts = graph_flops.count_graph_flops(function)
        expected = flops[f"train_{name}_step"]["gflop"] * 1e9 + 2 * extra[name]
        assert _conv_count(counts) == pytest.approx(expected, rel=1e-12), name
    if reuse_fakes:
        # One E and G forward at batch 2 less than the official order's D step.
        plain = flop_count.model_flops(dict(summary, reuse_fakes=False), train_batch=2)["train_D_step"]
        assert not summary["use_vae"]  # no encoder forward to add
        assert plain["gflop"] - flops["train_D_step"]["gflop"] == pytest.approx(forward["gflop"], rel=1e-9)
    step = flops["train_step"]
    # The official step adds D's weight gradients (G step) and first-layer input gradients (D step).
    d_layers = flop_count.discriminator_layers(summary)
    extra = 2 * 4 * (sum(layer.macs for layer in d_layers) + d_layers[0].macs)  # batch 2 x (fake, real)
    if reuse_fakes:  # and its D step's G forward
        extra += forward["mac_gflop"] * 1e9
    assert step["official_convention_gflop"] * 1e9 == pytest.approx(
        step["mac_gflop"] * 1e9 + extra, rel=1e-12
    )


def test_full_size_counts_match_the_official_numbers():
    ade, _ = configs.resolve_config(dataset="ade20k")
    summary = configs.model_summary(ade)
    flops = flop_count.model_flops(summary)
    # The published numbers have one decimal: agree to their rounding (0.05 GFLOP).
    assert abs(flops["generator_forward"]["official_convention_gflop"] - 362.3) < 0.05
    assert abs(flops["train_step"]["official_convention_gflop"] - 1545.6) < 0.05
    # Ours adds the bias adds (0.13 GFLOP): within 0.1 %.
    assert flops["generator_forward"]["gflop"] == pytest.approx(362.3, rel=1e-3)
    assert flops["generator_forward"]["gflop"] > flops["generator_forward"]["official_convention_gflop"]
    city = flop_count.model_flops(configs.model_summary(configs.resolve_config(dataset="cityscapes")[0]))
    assert abs(city["generator_forward"]["official_convention_gflop"] - 562.6) < 0.05
    # The count describes the real full-size network (ADE20K: G 96.5 M parameters, D 5.8 M).
    generator, discriminator, _ = build_models(ade)
    flop_count.check_layers(flop_count.generator_layers(summary), generator)
    flop_count.check_layers(flop_count.discriminator_layers(summary), discriminator)


def test_check_layers_on_a_vae_and_on_a_model_the_count_does_not_describe():
    config, _ = configs.resolve_config(TINY)
    config.model.use_vae, config.model.latent_dim = True, 16
    generator, _, encoder = build_models(config)
    summary = configs.model_summary(config)
    flop_count.check_layers(flop_count.generator_layers(summary), generator)  # fc is z -> grid, linear
    flop_count.check_layers(flop_count.encoder_layers(summary), encoder)
    assert [layer.name for layer in flop_count.encoder_layers(summary)][-2:] == ["fc_mu", "fc_var"]

    config.model.use_vae = False
    generator, _, _ = build_models(config)
    config.model.spade.hidden_filters = 32  # the count now describes another network
    with pytest.raises(
        ValueError, match=r"generator: the FLOP count's layer list does not match the model \("
    ):
        flop_count.check_layers(flop_count.generator_layers(configs.model_summary(config)), generator)


def test_reference_cases():
    def case(**kw):
        return flop_count.reference_case(configs.model_summary(configs.resolve_config(**kw)[0]))

    assert case(dataset="ade20k") == ("ade20k", True, True)
    assert case(config=os.path.join(ROOT, "configs", "ade20k.py")) == ("ade20k", True, True)
    assert case(dataset="cityscapes") == ("cityscapes", True, False)  # no published training step
    assert case(dataset="ade20k", resolution="128x128") == (None, False, False)
    assert case(dataset="coco") == (None, False, False)
    summary = configs.model_summary(configs.resolve_config(dataset="ade20k")[0])
    assert flop_count.reference_gflop(summary, "generator_forward", 4) == pytest.approx(4 * 362.3)


# ---------------------------------------------------------------------------- exported artifacts


class _TinyExport(tf.Module):
    """The export contract in miniature: int32 labels and instances [N, H, W] -> uint8 images."""

    def __init__(self, num_ids):
        super().__init__()
        self.num_ids = num_ids
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, num_ids + 1, 3], seed=[1, 2]))

    def serve(self, labels, instances):
        edges = tf.cast(instances[..., None] > 0, tf.float32)
        x = tf.concat([tf.one_hot(labels, self.num_ids), edges], -1)
        images = tf.tanh(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
        return {"images": tf.cast(tf.round((images + 1.0) * 127.5), tf.uint8)}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A SavedModel (any size) and a float32 TFLite file (32 x 32, any batch) with 9 label ids."""
    folder = tmp_path_factory.mktemp("artifacts")
    module = _TinyExport(9)

    def signature(height, width):
        spec = [tf.TensorSpec([None, height, width], tf.int32, name=n) for n in ("labels", "instances")]
        return tf.function(module.serve).get_concrete_function(*spec)

    saved = str(folder / "saved_model")
    tf.saved_model.save(module, saved, signatures={"serving_default": signature(None, None)})
    fixed = str(folder / "fixed")
    tf.saved_model.save(module, fixed, signatures={"serving_default": signature(32, 32)})
    tflite = str(folder / "tiny_fp32.tflite")
    with open(tflite, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_saved_model(fixed).convert())
    return saved, tflite


def test_time_saved_model_and_tflite(artifacts):
    saved, tflite = artifacts
    specs = saved_model_runner.saved_model_inputs(saved)
    assert specs == {"labels": ([-1, -1, -1], np.int32), "instances": ([-1, -1, -1], np.int32)}
    assert artifact_size(specs, (32, 32)) == (32, 32)
    inputs = label_inputs(specs, batch=2, height=32, width=32, num_label_ids=9)
    assert inputs["labels"].max() == 8 and inputs["labels"].shape == (2, 32, 32)
    assert inputs["instances"].dtype == np.int32
    result = saved_model_runner.time_saved_model(saved, "serving_default", inputs, warmup=1, runs=2)
    assert result["outputs"] == {"images": {"shape": [2, 32, 32, 3], "dtype": "uint8"}}
    assert result["batch"] == 2 and len(result["times_s"]) == 2
    assert 0 < result["min_s"] <= result["median_s"] <= result["max_s"]

    shapes = tflite_runner.tflite_inputs(tflite)
    assert shapes["labels"][0] == [-1, 32, 32]  # dynamic batch, fixed size
    assert artifact_size(shapes, (64, 64)) == (32, 32)
    result = tflite_runner.time_tflite(tflite, inputs, warmup=1, runs=2)
    assert result["outputs"] == {"images": {"shape": [2, 32, 32, 3], "dtype": "uint8"}}
    assert result["num_threads"] == os.cpu_count() and result["median_s"] > 0

    with pytest.raises(ValueError, match=r"takes inputs \['instances', 'labels'\]; got \['labels'\]"):
        saved_model_runner.time_saved_model(saved, "serving_default", {"labels": inputs["labels"]})
    with pytest.raises(ValueError, match=r"no signature 'predict'; it has: serving_default"):
        saved_model_runner.time_saved_model(saved, "predict", inputs)
    with pytest.raises(ValueError, match=r"the interpreter failed on inputs .*fixed height and width"):
        tflite_runner.time_tflite(tflite, label_inputs(specs, 1, 16, 16, 9))


# ---------------------------------------------------------------------------- the whole run


def test_run_on_a_tiny_config_reports_every_phase(artifacts, tmp_path):
    saved, tflite = artifacts
    config, resolution = configs.resolve_config(TINY)
    config.discriminator.num_scales = 1  # a smaller training graph to trace: a faster test
    settings = run.Settings(batch=2, warmup=1, runs=1, matmul_size=64, saved_model=saved, tflite=(tflite,))
    lines = []
    report = run.run_benchmark(config, resolution, settings, source="tiny", out=lines.append)
    path = str(tmp_path / "result.json")
    write_report(report, path)
    with open(path) as f:
        report = json.load(f)

    assert report["config"]["semantic_channels"] == 10 and report["reference"]["case"] is None
    assert set(report["flops"]) == {
        "generator_forward_batch_1",
        "generator_forward_batch_2",
        "train_G_step",
        "train_D_step",
        "train_step",
    }
    assert all(f["gflop"] > 0 and f["official_convention_gflop"] > 0 for f in report["flops"].values())
    rows = {(m["phase"], m["batch"]): m for m in report["measurements"]}
    expected = [("matmul", None)] + [("generator_forward", b) for b in (1, 2)]
    expected += [(p, 1) for p in ("train_G_step", "train_D_step", "train_step")]
    expected += [(p, b) for p in ("saved_model", "tflite") for b in (1, 2)]
    assert sorted(rows, key=str) == sorted(expected, key=str)
    for key, m in rows.items():
        assert set(run.MEASUREMENT_KEYS) <= set(m), key
        for field in ("median_s", "min_s", "max_s", "first_call_s", "gflop", "gflops_per_s", "rss_peak_mb"):
            assert m[field] > 0, (key, field)
        assert m["rss_peak_mb"] >= m["rss_import_mb"] > 0
        assert m["effective_gflops_per_s"] is None and m["gpu_peak_mb"] is None  # no reference case, no GPU
        if key[1]:
            assert m["images_per_s"] == pytest.approx(key[1] / m["median_s"])
    assert rows[("generator_forward", 2)]["gflop"] == pytest.approx(
        report["flops"]["generator_forward_batch_2"]["gflop"]
    )
    assert rows[("tflite", 2)]["outputs"]["images"]["shape"] == [2, 32, 32, 3]
    assert {n["variant"] for n in report["not_run"]} == {"bfloat16", "xla"}
    table = format_report(report)
    assert "train_step" in table and "tiny_fp32.tflite" in table and "not run: xla" in table
    # The report names the gradient kernels it timed: on a CPU, the forward-conv gradients by default.
    assert report["environment"]["conv_gradients"] == "forward" and "conv gradients forward" in table


# ---------------------------------------------------------------------------- bad input


def test_bad_settings_and_configs_give_clear_errors():
    with pytest.raises(ValueError, match=r"exactly one of config .* or dataset"):
        configs.resolve_config(TINY, "ade20k")
    with pytest.raises(
        ValueError, match=r"dataset='ade' is not a preset; choose one of: ade20k, cityscapes, coco"
    ):
        configs.resolve_config(dataset="ade")
    with pytest.raises(ValueError, match=r"resolution='256by256': expected HEIGHTxWIDTH"):
        configs.resolve_config(dataset="ade20k", resolution="256by256")
    with pytest.raises(
        ValueError, match=r"resolution 250x256: both sides must be multiples of 32 .* 224x256"
    ):
        configs.resolve_config(dataset="ade20k", resolution="250x256")
    with pytest.raises(ValueError, match=r"variant 'fp16' is not known; choose from: float32, bfloat16, xla"):
        run.Settings(variants=("fp16",)).check()
    with pytest.raises(ValueError, match=r"runs=0: must be at least 1"):
        run.Settings(runs=0).check()
    with pytest.raises(ValueError, match=r"tflite file 'missing.tflite' does not exist"):
        run.Settings(tflite=("missing.tflite",)).check()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config=configs/nope.py"], "config file 'configs/nope.py' not found"),
        (["--dataset=ade20k", "--phases=forward,speed"], "phase 'speed' is not known; choose from: matmul"),
    ],
)
def test_command_line_errors(flags, message):
    proc = run_script("benchmark.py", *flags)
    assert proc.returncode != 0
    assert f"benchmark.py: error: {message}" in proc.stderr
