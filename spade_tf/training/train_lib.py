"""`train(config, workdir)`: the whole training run behind `train.py`.

Data (scan, check, tf.data) -> models and optimisers under the strategy ->
resume or fine-tune -> the GAN loop with TensorBoard, a progress bar, sample
grids and checkpoints -> a gallery of validation synthesis, the oracle score
(demo) and a `.keras` bundle of the trained networks.
"""

import contextlib
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from spade_tf.config import validate
from spade_tf.data.palette import colorize
from spade_tf.data.setup import make_dataset, prepare_data
from spade_tf.evaluation import demo_metrics
from spade_tf.evaluation import evaluate as evaluation
from spade_tf.evaluation import oracle as demo_oracle
from spade_tf.evaluation.inception import load_inception
from spade_tf.evaluation.segmenter import Segmenter, load_class_map
from spade_tf.models import conv
from spade_tf.models.bundle import save_bundle
from spade_tf.models.losses import VGGPerceptualLoss
from spade_tf.serving import gallery, model_card
from spade_tf.serving.inference import load_synthesizer
from spade_tf.training import checkpoints
from spade_tf.training.trainer import (
    TrainingDiverged,
    clean_worker_dir,
    is_chief,
    make_strategy,
    trainer_from_config,
)
from spade_tf.training.workdir import WorkdirLock


def _val_examples(setup, count):
    scan = setup.val if setup.val is not None and setup.val.examples else setup.train
    return scan.examples[:count]


def _synthesize_all(trainer, config, setup, examples, batch_size=16):
    """(labels, synthesized uint8, real uint8, names) for examples, eval mode, in order."""
    ds = make_dataset(config, setup, examples, training=False, batch_size=batch_size, repeat=False)
    labels, fakes, reals = [], [], []
    for batch in ds:
        fakes.append(gallery.to_uint8(trainer.synthesize(batch).numpy()))
        reals.append(gallery.to_uint8(batch["image"].numpy()))
        labels.append(batch["label"].numpy())
    return np.concatenate(labels), np.concatenate(fakes), np.concatenate(reals), [e.name for e in examples]


def _sample_grid(trainer, config, setup, batch, path, writer, step):
    fake = gallery.to_uint8(trainer.synthesize(batch).numpy())
    real = gallery.to_uint8(batch["image"].numpy())
    labels = colorize(batch["label"].numpy(), setup.colors)
    rows = [[labels[i], fake[i], real[i]] for i in range(len(fake))]
    image = gallery.grid(rows, scale=2 if fake.shape[1] <= 128 else 1)
    gallery.save_png(image, path)
    with writer.as_default():
        tf.summary.image("label | synthesized | real", image[None], step=step)


def _write_scalars(writer, logs, step):
    with writer.as_default():
        for k, v in logs.items():
            tf.summary.scalar(k, v, step=step)


def _make_evaluator(trainer, config, setup, writer, out):
    """`evaluate(step)` for eval.every: loads the Inception weights, segmenter and oracle once, up front."""
    e = config.eval
    inception = segmenter = oracle = label_map = None
    if e.inception_weights:
        inception = load_inception(e.inception_weights)
    if e.segmenter:
        segmenter = Segmenter(
            e.segmenter, input_range=e.segmenter_input_range or None, output=e.segmenter_output
        )
    if e.label_class_map:
        label_map = load_class_map(e.label_class_map)
    if setup.demo_root:
        oracle = demo_oracle.load_or_train_oracle(setup.demo_root)
    if not (inception or segmenter or oracle):
        raise ValueError(
            "eval.every is set but there is nothing to measure: set eval.inception_weights (FID, KID) or "
            "eval.segmenter (mIoU), or train the demo (its oracle)."
        )
    examples = _val_examples(setup, e.num_images)

    def evaluate(step):
        labels, fakes, reals, _ = _synthesize_all(trainer, config, setup, examples)
        result = evaluation.evaluate_images(
            labels,
            fakes,
            reals,
            config.data.num_classes,
            inception=inception,
            segmenter=segmenter,
            num_eval_classes=e.num_eval_classes or None,
            ignore_index=None if e.ignore_index < 0 else e.ignore_index,
            label_class_map=label_map,
            oracle=oracle,
            segment_real=False,
        )
        _write_scalars(writer, evaluation.tensorboard_scalars(result), step)
        out("\nstep " + str(step) + " evaluation:\n" + evaluation.format_table(result))
        return result

    return evaluate


def _demo_evaluation(bundle, setup, workdir, step, gallery_size, out):
    """The demo's report (`demo_metrics.demo_report`) on the saved bundle, printed, and its gallery.

    Runs on the bundle as a user loads it (`load_synthesizer`), so the figures are those of the file.
    """
    model = load_synthesizer(bundle)
    images, labels, instances, looks = demo_metrics.load_demo_split(setup.demo_root, "val")
    classifier = demo_metrics.fit_look_classifier(setup.demo_root, "train")
    report = demo_metrics.demo_report(
        model.generate,
        labels,
        images,
        looks,
        classifier,
        oracle=demo_oracle.load_or_train_oracle(setup.demo_root),
        instances=instances,
        use_vae=model.info.use_vae,
    )
    out(f"Demo report on {len(labels)} validation maps:\n" + demo_metrics.format_demo_report(report))
    count = min(gallery_size, len(labels))
    columns = ["label", "real"]
    if model.info.use_vae:
        rows = demo_metrics.gallery_rows(model.generate, labels, instances, images, looks, count)
        columns += list(rows[0]) if rows else []
    else:
        made = model.generate(labels[:count], instances[:count])
        rows = [{"synthesized": made[i]} for i in range(count)]
        columns.insert(1, "synthesized")
    names = [f"{i:04d}" for i in range(count)]
    for i, row in enumerate(rows):
        row.update(label=colorize(labels[i], setup.colors), real=images[i])
    page = gallery.write_html_gallery(
        os.path.join(workdir, "gallery"), list(zip(names, rows)), f"spade_tf: step {step}", columns=columns
    )
    if rows:
        grid = gallery.grid([[row[c] for c in columns] for row in rows], scale=2)
        gallery.save_png(grid, os.path.join(workdir, "gallery.png"))
    out(f"Gallery of {count} validation label maps ({', '.join(columns)}): {page}")
    return report


def _finish(trainer, config, setup, workdir, writer, step, out):
    """The model bundle, then a gallery of validation synthesis and (demo) the demo report, result.json."""
    options = {
        "config": json.loads(config.to_json()),
        "class_names": list(setup.class_names),
        "palette": setup.colors.tolist(),
        "step": step,
    }
    generator, encoder = trainer.synthesis_networks  # the moving averages when kept
    bundle = save_bundle(
        os.path.join(workdir, "model.keras"), generator, trainer.discriminator, encoder, options
    )
    out(f"Model bundle: {bundle}")
    result = {"step": step}
    if config.eval.oracle and setup.demo_root:
        result.update(_demo_evaluation(bundle, setup, workdir, step, config.eval.gallery_size, out))
        scalars = {
            f"demo/{k}": v
            for k, v in result.items()
            if isinstance(v, float) and not isinstance(v, bool) and k != "step"
        }
        _write_scalars(writer, scalars, step)
    else:
        examples = _val_examples(setup, config.eval.gallery_size)
        labels, fakes, reals, names = _synthesize_all(trainer, config, setup, examples)
        entries = [
            (
                names[i],
                {"label": colorize(labels[i], setup.colors), "synthesized": fakes[i], "real": reals[i]},
            )
            for i in range(len(names))
        ]
        page = gallery.write_html_gallery(os.path.join(workdir, "gallery"), entries, f"spade_tf: step {step}")
        gallery.save_png(
            gallery.grid([[e[1]["label"], e[1]["synthesized"], e[1]["real"]] for e in entries], scale=2),
            os.path.join(workdir, "gallery.png"),
        )
        out(f"Gallery of {len(entries)} validation label maps: {page}")
    result["bundle"] = bundle
    path = os.path.join(workdir, "result.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)
    out(f"Model card: {model_card.write_bundle_card(bundle)}")
    return result


def train(config, workdir, out=print, strategy=None):
    """Trains (or resumes) in `workdir`.

    Nothing is written before the data and the config are known to be good; then the chief takes the
    workdir's lock (one run per workdir), removes interrupted checkpoint writes and resumes from the
    newest checkpoint that reads.

    Returns:
        A dict: the final step, training seconds, the evaluation (demo oracle),
        the bundle path, and the GANTrainer itself under "trainer".

    Raises:
        DatasetError, FileNotFoundError: the data (a report or message naming the files).
        spade_tf.training.workdir.WorkdirError: the workdir is in use, its disk is full, or none of its
            checkpoints reads; each message says what to do.
    """
    validate(config)
    # A bad SPADE_TF_CONV_GRADIENTS stops here, not at the first trace after a data check of minutes.
    conv.conv_gradients()
    t = config.train
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or make_strategy()
    chief = is_chief(strategy)
    # Only the chief writes the workdir (the other workers their own worker_tmp_<i>), so only it locks.
    lock = WorkdirLock(workdir, out) if chief else None
    if lock is not None:
        lock.check()  # a second run stops now, not after a data check that can take minutes

    setup = prepare_data(config, run_check=config.data.check, out=out)
    num_train = len(setup.train.examples)
    gb = int(t.batch_size)
    if num_train < gb:
        raise ValueError(f"{num_train} training examples are fewer than train.batch_size={gb}.")
    steps_per_epoch = num_train // gb
    total = (t.num_epochs + t.num_decay_epochs) * steps_per_epoch
    if t.max_steps > 0:
        total = min(total, t.max_steps)

    with strategy.scope():
        vgg = None
        if t.vgg_weights:
            vgg = VGGPerceptualLoss(t.vgg_weights, t.lambda_vgg, t.vgg_preprocessing)
    trainer = trainer_from_config(config, strategy, steps_per_epoch, vgg)

    worker_dir = None
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not chief:
        # Every worker must take part in saving; only the chief's copy is kept.
        worker_dir = os.path.join(workdir, f"worker_tmp_{strategy.cluster_resolver.task_id}")
        ckpt_dir = os.path.join(worker_dir, "checkpoints")
        os.makedirs(workdir, exist_ok=True)
    checkpoint = trainer.checkpoint()
    manager = None
    with (
        checkpoints.disk_full_stops(workdir, lambda: manager.latest_checkpoint if manager else None),
        lock if lock is not None else contextlib.nullcontext(),
    ):
        checkpoints.remove_interrupted_writes(ckpt_dir, out)
        manager, restored = checkpoints.restore_newest_readable(
            lambda: tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=t.keep_checkpoints), out
        )
        step = int(trainer.step.numpy())
        if restored:
            out(f"Resuming from {restored} (step {step}).")
        elif t.init_from:
            loaded = trainer.load_pretrained(t.init_from)
            out(f"Fine-tuning from {t.init_from} ({', '.join(loaded)}).")
        checkpoint_bytes = checkpoints.files_size(restored) if restored else trainer.state_nbytes()
        checkpoints.warn_if_low_space(ckpt_dir, checkpoint_bytes, out)
        if chief:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json(indent=1))

        ds = make_dataset(
            config, setup, setup.train.examples, training=True, batch_size=gb, start_index=step * gb
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        iterator = iter(strategy.experimental_distribute_dataset(ds.with_options(options)))
        writer = (
            tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            if chief
            else tf.summary.create_noop_writer()
        )
        sample_batch = next(
            iter(
                make_dataset(
                    config, setup, _val_examples(setup, 8), training=False, batch_size=8, repeat=False
                )
            )
        )

        out(
            f"Training {config.data.dataset}: {num_train} examples, global batch {gb} on "
            f"{strategy.num_replicas_in_sync} replica(s), steps {step} -> {total}, workdir {workdir}"
        )
        evaluator = (
            _make_evaluator(trainer, config, setup, writer, out) if config.eval.get("every", 0) else None
        )
        progbar = keras.utils.Progbar(total, stateful_metrics=["G", "D", "img/s"], unit_name="step")
        start, window_start, window_steps = time.monotonic(), time.monotonic(), 0
        sums = {}
        last_saved = step if restored else -1
        while step < total:
            logs = trainer.train_step(next(iterator))
            step += 1
            if not logs.finite():
                bad = ", ".join(f"{k}={v}" for k, v in logs.values.items() if not np.isfinite(v))
                raise TrainingDiverged(
                    f"step {step}: {bad}. Training stopped; the last good checkpoint "
                    f"({manager.latest_checkpoint or 'none yet'}) is kept. Try a lower train.lr, "
                    "train.precision='float32', or check the data for broken images."
                )
            for k, v in logs.values.items():
                sums[k] = sums.get(k, 0.0) + v
            window_steps += 1
            g_total = sum(v for k, v in logs.values.items() if k.startswith("G_"))
            d_total = logs.values["D_Fake"] + logs.values["D_real"]
            elapsed = time.monotonic() - window_start
            progbar.update(
                step, [("G", g_total), ("D", d_total), ("img/s", window_steps * gb / max(elapsed, 1e-9))]
            )
            if step % t.log_every == 0 or step == total:
                means = {k: v / window_steps for k, v in sums.items()}
                means["images_per_second"] = window_steps * gb / max(time.monotonic() - window_start, 1e-9)
                means["lr/G"] = float(trainer.g_optimizer.learning_rate)
                means["lr/D"] = float(trainer.d_optimizer.learning_rate)
                _write_scalars(writer, means, step)
                logging.info(
                    "step %d/%d %s", step, total, " ".join(f"{k}={v:.4g}" for k, v in sorted(means.items()))
                )
                sums, window_steps, window_start = {}, 0, time.monotonic()
            if chief and t.image_every and step % t.image_every == 0:
                _sample_grid(
                    trainer,
                    config,
                    setup,
                    sample_batch,
                    os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                    writer,
                    step,
                )
            if chief and evaluator is not None and (step % config.eval.every == 0 or step == total):
                evaluator(step)
            out_of_time = t.max_seconds > 0 and time.monotonic() - start > t.max_seconds
            if step % t.checkpoint_every == 0 or step == total or out_of_time:
                checkpoints.save(manager, step, checkpoint_bytes)
                last_saved = step
            if out_of_time:
                out(f"\nStopping at step {step}: train.max_seconds={t.max_seconds} reached.")
                break
        if last_saved != step:
            checkpoints.save(manager, step, checkpoint_bytes)
        train_seconds = time.monotonic() - start
        writer.flush()
        result = {"step": step, "train_seconds": train_seconds}
        if chief:
            result.update(_finish(trainer, config, setup, workdir, writer, step, out))
            result["train_seconds"] = train_seconds
    clean_worker_dir(worker_dir)
    result["trainer"] = trainer
    return result
