"""Training: replicas, multiple workers, resume after SIGKILL, divergence, configs, fine-tuning.

The heavy runs happen in subprocesses (tests/train_worker.py) so that each
has its own TF runtime: op determinism and multi-worker collectives are
process-wide.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs.demo import get_config
from spade_tf.config import build_models
from spade_tf.data import setup as data_setup
from spade_tf.models.bundle import save_bundle
from spade_tf.training import train_lib
from spade_tf.training.trainer import is_power_iteration_vector, trainer_from_config
from tests.test_case import fill_weights, two_cpu_strategy
from tests.train_worker import apply_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "train_worker.py")


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """A private cache with the small demo dataset, generated once for this module."""
    cache = str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("SPADE_TF_CACHE")
    os.environ["SPADE_TF_CACHE"] = cache
    data_setup.prepare_data(get_config("small"), run_check=False)
    yield cache
    if old is None:
        os.environ.pop("SPADE_TF_CACHE", None)
    else:
        os.environ["SPADE_TF_CACHE"] = old


WORKER_BASE = ["eval.oracle=False", "eval.gallery_size=2", "train.image_every=0", "train.log_every=1"]


def _worker(workdir, out, *overrides, env=None, wait=True):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, **(env or {}))
    full_env.pop("TF_CONFIG", None)
    if env and "TF_CONFIG" in env:
        full_env["TF_CONFIG"] = env["TF_CONFIG"]
    cmd = [sys.executable, WORKER, str(workdir), str(out), *WORKER_BASE, *overrides]
    if not wait:
        return subprocess.Popen(
            cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=900)


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _weights(trainer):
    out = {}
    for name, model in (("G", trainer.generator), ("D", trainer.discriminator), ("E", trainer.encoder)):
        if model is not None:
            out.update({f"{name}/{v.path.split('/', 1)[1]}": v.numpy() for v in model.weights})
    return out


@pytest.mark.parametrize("reuse_fakes", [False, True])
def test_two_replicas_equal_one_after_three_steps(demo_cache, reuse_fakes):
    # float64: in float32 the two runs' gradients differ by rounding (~1e-3
    # relative after batch norm's backward cancellations) and Adam's first
    # steps turn the sign of noise-level gradients (e.g. conv biases before
    # batch norm, exactly 0 in exact arithmetic) into +-lr moves of 1e-4.
    # In float64 the same computation agrees to ~1e-12, so 1e-5 tests the
    # distributed logic itself: loss scaling by the global batch, gradient
    # summation, synchronized batch norm, per-example VAE noise; with train.reuse_fakes also the
    # per-replica fakes handed from the G step's function to the D step's.
    config = get_config("small")
    config.train.reuse_fakes = reuse_fakes
    config.train.precision = "float64"
    config.model.use_vae = True
    config.model.latent_dim = 16
    setup = data_setup.prepare_data(config, run_check=False)
    ds = data_setup.make_dataset(config, setup, setup.train.examples, training=True, batch_size=4)
    batches = list(ds.take(3))

    def run(strategy):
        keras.utils.set_random_seed(0)
        trainer = trainer_from_config(config, strategy, steps_per_epoch=12)
        before = _weights(trainer)
        for batch in batches:
            dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
            trainer.train_step(next(iter(dist)))
        return before, _weights(trainer)

    before, one = run(tf.distribute.MirroredStrategy(["/cpu:0"]))
    _, two = run(two_cpu_strategy())
    assert one.keys() == two.keys()
    changed = 0
    for key, value in one.items():
        np.testing.assert_allclose(two[key], value, atol=1e-5, rtol=1e-5, err_msg=key)
        changed += not np.array_equal(value, before[key])
    assert changed > 0.9 * len(one)  # the steps really trained (kernels, BN stats, u, v)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scalars(workdir):
    """{tag: {step: value}} from a run's TensorBoard event files."""
    out = {}
    folder = os.path.join(workdir, "tensorboard")
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return out


# Shared by the multi-worker run and the one-process reference run.
MULTI_WORKER_RUN = [
    "train.max_steps=3",
    "train.precision='float64'",
    "model.use_vae=True",
    "model.latent_dim=16",
]


def test_multi_worker_equals_one_process_with_two_replicas(demo_cache, tmp_path):
    """Two TF_CONFIG workers (one replica each) against one process with two replicas, same
    global batch: the same losses at every step and the same weights after 3 steps.

    Catches what comparing the two workers with each other cannot: wrong sharding (both workers
    reading the same half gives another global batch: kernels differ at ~1e-3), batch norm not
    pooled across workers, losses scaled per worker instead of per global batch (the logged
    losses differ), per-example VAE noise drawn per worker.

    float64 and a VAE, for a reason measured on this test: a bias that feeds a batch norm
    directly (fc, conv_0, conv_1, norm_s's beta before the next block's norm) has exactly zero
    gradient in exact arithmetic, and Adam (epsilon 1e-8) turns its rounding noise into a move
    of up to +-lr when the noise exceeds 1e-8. Without a VAE the generator's first layer sees
    only the 2x2 label map, whose batch variance is tiny, and that noise reached 2e-9..4e-8
    (powers of two: rounding) in float64, so those biases differed by up to 1.6e-4 between the
    two runs while every kernel agreed to 1e-8. With the VAE's z it stays ~1e-14, and all 256
    variables agree to 3e-10 relative (kernels, running statistics, biases).
    """
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(
            _worker(
                tmp_path / "run",
                tmp_path / f"w{i}.npz",
                *MULTI_WORKER_RUN,
                env={"TF_CONFIG": tf_config},
                wait=False,
            )
        )
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-4000:]
    assert "2 replica(s)" in outputs[0]
    w0, w1 = _load(tmp_path / "w0.npz"), _load(tmp_path / "w1.npz")
    assert int(w0["step"]) == int(w1["step"]) == 3
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    # Only the chief's checkpoints remain; the other worker's copy was removed.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("-3")
    assert not [d for d in os.listdir(tmp_path / "run") if d.startswith("worker_tmp")]

    config = apply_overrides(get_config("small"), WORKER_BASE + MULTI_WORKER_RUN)
    result = train_lib.train(config, str(tmp_path / "one"), out=lambda *a: None, strategy=two_cpu_strategy())
    one = _weights(result["trainer"])
    assert one.keys() == w0.keys() - {"step"}
    for key, value in one.items():
        np.testing.assert_allclose(w0[key], value, rtol=1e-7, atol=1e-10, err_msg=key)

    multi, single = _scalars(tmp_path / "run"), _scalars(tmp_path / "one")
    terms = [k for k in single if k.startswith(("G_", "D_"))]
    assert {"G_GAN", "G_Feat", "G_KLD", "D_Fake", "D_real"} <= set(terms)
    for tag in terms:
        assert sorted(multi[tag]) == sorted(single[tag]) == [1, 2, 3], tag
        for step, value in single[tag].items():
            np.testing.assert_allclose(multi[tag][step], value, rtol=1e-9, err_msg=f"{tag} step {step}")


def _kill_when_hanging(proc, workdir):
    deadline = time.time() + 600
    while not (workdir / "hanging").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "the run never reached the moment to kill"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0]
    (workdir / "hanging").unlink()
    return output


def test_resume_after_sigkill_at_three_moments_with_vae(demo_cache, tmp_path):
    """One run killed three times (SIGKILL), each resumed: the end equals an uninterrupted run.

    Moments: mid-step (step 3's G update applied, its D update not), between checkpoints (after
    step 5; the last checkpoint is step 4), and mid-checkpoint (step 6's data files written, the
    `checkpoint` index not yet naming them). VAE on, so E's weights and the per-example noise
    streams must resume too; deterministic ops, so "equal" is bit for bit.
    """
    common = [
        "train.max_steps=8",
        "train.checkpoint_every=2",
        "train.deterministic=True",
        "model.use_vae=True",
        "model.latent_dim=16",
    ]
    ref = _worker(tmp_path / "ref", tmp_path / "ref.npz", *common, wait=False)
    run = tmp_path / "run"
    ckpt_dir = str(run / "checkpoints")
    kills = [
        ("SPADE_TF_TEST_HANG_IN_STEP", 3, "-2", None),
        ("SPADE_TF_TEST_HANG_AFTER_STEP", 5, "-4", "(step 2)"),
        ("SPADE_TF_TEST_HANG_AT_SAVE", 6, "-4", "(step 4)"),
    ]
    for hook, step, latest, resumed_from in kills:
        proc = _worker(run, tmp_path / "x.npz", *common, env={hook: str(step)}, wait=False)
        output = _kill_when_hanging(proc, run)
        assert tf.train.latest_checkpoint(ckpt_dir).endswith(latest), (hook, os.listdir(ckpt_dir))
        if resumed_from:
            assert resumed_from in output, output[-3000:]
    # Killed while writing step 6: its data files exist, the index still names step 4.
    assert any(f.startswith("ckpt-6") for f in os.listdir(ckpt_dir))

    resumed = _worker(run, tmp_path / "resumed.npz", *common)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "(step 4)" in resumed.stdout
    ref_out = ref.communicate(timeout=900)[0]
    assert ref.returncode == 0, ref_out[-3000:]
    a, b = _load(tmp_path / "ref.npz"), _load(tmp_path / "resumed.npz")
    assert int(b["step"]) == 8 and any(k.startswith("E/") for k in a)
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)


def test_nan_stops_and_keeps_last_good_checkpoint(demo_cache, tmp_path):
    result = _worker(
        tmp_path / "run",
        tmp_path / "x.npz",
        "train.max_steps=8",
        "train.checkpoint_every=3",
        env={"SPADE_TF_TEST_NAN_AT": "5"},
    )
    assert result.returncode != 0
    assert "TrainingDiverged: step 5: G_GAN=nan" in result.stderr
    assert "ckpt-3" in result.stderr and "last good checkpoint" in result.stderr
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("-3")


def _train_py(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_train_py_reports_divergence_in_one_line(demo_cache, tmp_path):
    # A learning rate of 1e30 makes a loss non-finite within the first steps.
    result = _train_py(
        "--config=configs/demo.py:small",
        f"--workdir={tmp_path / 'w'}",
        "--config.train.lr=1e30",
        "--config.train.max_steps=6",
        "--config.eval.oracle=False",
    )
    assert result.returncode == 1
    assert "train.py: error: training diverged at step " in result.stderr, result.stderr[-2000:]
    assert "Try a lower train.lr" in result.stderr and "Traceback" not in result.stderr


def test_config_typo_lists_valid_keys():
    result = _train_py("--config.train.batch_sise=8")
    assert result.returncode != 0
    assert (
        "config.train has no key 'batch_sise'; valid keys:" in result.stderr and "batch_size" in result.stderr
    )


def test_unknown_dataset_lists_choices(tmp_path):
    result = _train_py("--config=configs/ade30k.py")
    assert result.returncode != 0
    assert "ade20k.py, cityscapes.py, coco_stuff.py, custom.py, demo.py" in result.stderr
    config = get_config("small")
    config.data.dataset = "ade30k"
    with pytest.raises(ValueError, match="choose one of: demo, ade20k, cityscapes, coco_stuff, custom"):
        train_lib.train(config, str(tmp_path))


def test_bad_conv_gradients_choice_stops_before_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SPADE_TF_CONV_GRADIENTS", "cudnn")

    def prepare_data(*args, **kwargs):
        raise AssertionError("the data was prepared before the environment was checked")

    monkeypatch.setattr(train_lib, "prepare_data", prepare_data)
    with pytest.raises(ValueError, match="SPADE_TF_CONV_GRADIENTS='cudnn': choose one of auto, forward, tf"):
        train_lib.train(get_config("small"), str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()
    # The script says it in one line (the subprocess inherits the variable).
    result = _train_py("--config=configs/demo.py:small", f"--workdir={tmp_path / 'script'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        "train.py: error: SPADE_TF_CONV_GRADIENTS='cudnn': choose one of auto, forward, tf" in result.stderr
    )
    assert not (tmp_path / "script").exists()


def test_bad_dataset_stops_before_training(demo_cache, tmp_path):
    from PIL import Image

    from spade_tf.data.check import DatasetError

    root = tmp_path / "data"
    for split in ("train", "val"):
        for sub in ("labels", "images"):
            (root / split / sub).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((32, 32), 3, np.uint8)).save(root / split / "labels" / f"{i}.png")
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / split / "images" / f"{i}.png")
    Image.fromarray(np.full((32, 32), 12, np.uint8)).save(root / "train" / "labels" / "2.png")
    config = get_config("small")
    config.data.dataset = "custom"
    config.data.root = str(root)
    config.data.use_instance_map = False
    printed = []
    with pytest.raises(DatasetError):
        train_lib.train(config, str(tmp_path / "work"), out=printed.append)
    report = "\n".join(printed)
    assert "2.png" in report and "12" in report and "num_classes" in report
    assert not (tmp_path / "work").exists()  # nothing is written before the data is known to be good


def test_fine_tune_from_converted_bundle(demo_cache, tmp_path):
    config = get_config("small")
    keras.utils.set_random_seed(7)
    g, d, e = build_models(config)
    path = save_bundle(str(tmp_path / "pretrained.keras"), g, d, e, {"source": "test"})
    config.train.init_from = path
    config.train.max_steps = 1
    config.eval.oracle = False
    config.eval.gallery_size = 2
    printed = []
    result = train_lib.train(config, str(tmp_path / "work"), out=printed.append)
    assert any("Fine-tuning from" in line for line in printed)
    trainer = result["trainer"]
    # One step of Adam from the pretrained weights: close to them, far from a fresh init.
    diffs = [
        np.abs(a.numpy() - b.numpy()).max()
        for a, b in zip(trainer.generator.trainable_weights, g.trainable_weights)
    ]
    assert max(diffs) < 5e-3
    assert result["step"] == 1


def test_small_run_writes_tensorboard_samples_gallery_and_bundle(demo_cache, tmp_path):
    config = get_config("small")
    config.train.max_steps = 4
    config.train.image_every = 2
    config.train.log_every = 2
    config.eval.oracle = False
    work = tmp_path / "work"
    result = train_lib.train(config, str(work), out=lambda *_: None)
    assert result["step"] == 4
    tags = set()
    for root, _, files in os.walk(work / "tensorboard"):
        for f in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, f)):
                tags.update(v.tag for v in event.summary.value)
    assert {"G_GAN", "G_Feat", "D_Fake", "D_real", "lr/G", "lr/D", "images_per_second"} <= tags
    assert "label | synthesized | real" in tags
    assert sorted(os.listdir(work / "samples")) == ["step_0000002.png", "step_0000004.png"]
    assert (work / "gallery" / "index.html").exists() and (work / "gallery.png").exists()
    from spade_tf.models.bundle import load_bundle

    bundle = load_bundle(str(work / "model.keras"))
    assert bundle.options["class_names"][0] == "sky"
    setup = data_setup.prepare_data(config, run_check=False)
    ds = data_setup.make_dataset(
        config, setup, setup.val.examples[:2], training=False, batch_size=2, repeat=False
    )
    batch = next(iter(ds))
    np.testing.assert_allclose(
        bundle.generator(result["trainer"].semantics(batch)).numpy(),
        result["trainer"].synthesize(batch).numpy(),
        atol=1e-6,
    )


def _trainer_and_batch(config):
    """A one-CPU trainer for `config` and one training batch of 4 from the small demo data."""
    setup = data_setup.prepare_data(config, run_check=False)
    batch = next(
        iter(data_setup.make_dataset(config, setup, setup.train.examples, training=True, batch_size=4))
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    return trainer_from_config(config, strategy, steps_per_epoch=12), strategy, batch


@pytest.mark.parametrize(
    "precision,xla",
    # Each precision once and XLA once (with bfloat16): the suite's time budget is tight.
    [("mixed_float16", False), ("mixed_bfloat16", True)],
)
def test_precision_and_xla_switches_train(demo_cache, precision, xla):
    config = get_config("small")
    config.train.precision = precision
    config.train.xla = xla
    config.model.use_vae = True
    config.model.latent_dim = 16
    trainer, strategy, batch = _trainer_and_batch(config)
    before = _weights(trainer)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    kernels = [k for k in before if "kernel" in k]
    # float16's dynamic loss scaling starts at 2**15 and skips the steps whose
    # scaled gradients overflow, halving the scale each time: allow a few.
    for _ in range(12 if precision == "mixed_float16" else 2):
        logs = trainer.train_step(next(iter(dist)))
        assert logs.finite(), logs.values
        after = _weights(trainer)
        moved = [k for k in kernels if not np.array_equal(after[k], before[k])]
        if len(moved) > 0.9 * len(kernels):
            break
    assert all(v.dtype == np.float32 for v in after.values())
    assert len(moved) > 0.9 * len(kernels)
    if precision == "mixed_float16":
        assert isinstance(trainer.g_optimizer, keras.optimizers.LossScaleOptimizer)


def test_fine_tune_refuses_another_architecture(demo_cache, tmp_path):
    config = get_config("small")
    other = get_config("small")
    other.model.base_filters = 4
    g, d, e = build_models(other)
    path = save_bundle(str(tmp_path / "other.keras"), g, d, e)
    trainer = trainer_from_config(config, tf.distribute.MirroredStrategy(["/cpu:0"]), steps_per_epoch=12)
    with pytest.raises(
        ValueError, match=r"other.keras: its generator does not match the config \(first mismatch"
    ):
        trainer.load_pretrained(path)


def test_moving_average_follows_the_weights_and_is_what_synthesis_and_checkpoints_use(demo_cache, tmp_path):
    config = get_config("small")
    config.model.use_vae = True
    config.model.latent_dim = 16
    config.train.ema_decay = 0.5
    setup = data_setup.prepare_data(config, run_check=False)
    ds = data_setup.make_dataset(config, setup, setup.train.examples, training=True, batch_size=4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    trainer = trainer_from_config(config, strategy, steps_per_epoch=12)
    models = (trainer.generator, trainer.encoder)
    averages = (trainer.ema_generator, trainer.ema_encoder)
    expected = [w.numpy() for m in models for w in m.weights]
    # Spectral norm's u and v are copied (an average of unit vectors is not one); the rest is averaged.
    power_vectors = [is_power_iteration_vector(w) for m in models for w in m.weights]
    assert 20 < sum(power_vectors) < len(power_vectors) / 2
    for batch, decay in zip(ds.take(2), (min(0.5, 1 / 10), min(0.5, 2 / 11))):
        trainer.train_step(
            next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
        )
        now = [w.numpy() for m in models for w in m.weights]
        expected = [
            w if copied else decay * e + (1 - decay) * w for e, w, copied in zip(expected, now, power_vectors)
        ]
    got = [w.numpy() for m in averages for w in m.weights]
    assert len(got) == len(expected) > 50
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(got[0], now[0])  # an average, not a copy of the weights
    for a, copied in zip(got, power_vectors):
        if copied:
            assert abs(np.linalg.norm(a) - 1) < 1e-5  # still unit vectors: sigma stays right
    assert trainer.synthesis_networks == averages

    # The averages are part of the checkpoint (a resumed run continues them).
    path = trainer.checkpoint().save(str(tmp_path / "ckpt"))
    other = trainer_from_config(config, strategy, steps_per_epoch=12)
    other.checkpoint().restore(path).assert_existing_objects_matched()
    for a, b in zip([w.numpy() for m in (other.ema_generator, other.ema_encoder) for w in m.weights], got):
        np.testing.assert_array_equal(a, b)
    assert int(other.ema_updates.numpy()) == 2


def test_noise_and_position_injection_train_and_draw_noise_from_the_stream_position(demo_cache):
    config = get_config("small")
    config.model.noise_injection = True
    config.model.position_injection = True
    trainer, strategy, batch = _trainer_and_batch(config)
    before = _weights(trainer)
    dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    logs = trainer.train_step(next(iter(dist)))
    assert logs.finite(), logs.values
    after = _weights(trainer)
    injected = [k for k in before if "noise_strength" in k or "position_kernel" in k]
    assert len(injected) == 7 * 2 * 2  # seven blocks, two convs each, noise and position
    # Their weights start at 0 and the first G step moves every one of them, but head_0's position weights:
    # this 32-pixel model's latent grid is 1x1, whose one pixel centre is (0, 0).
    assert [k for k in injected if before[k].any() or not after[k].any()] == [
        "G/head_0/position_kernel_0",
        "G/head_0/position_kernel_1",
    ]
    # The G step's noise comes from the batch's stream position (so a resumed run draws it again): the
    # same batch gives the same loss, another position another one.
    fill_weights(trainer.generator, ("noise_strength",), 0.5)
    first, _ = trainer.generator_losses(batch, training=False)
    again, _ = trainer.generator_losses(batch, training=False)
    shifted, _ = trainer.generator_losses(dict(batch, index=batch["index"] + 100), training=False)
    assert float(first) == float(again)
    assert float(first) != float(shifted)
