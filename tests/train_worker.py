"""Runs a short training in its own process for the resume / multi-worker / divergence tests.

    python tests/train_worker.py WORKDIR OUT.npz [config.key=value ...]

Starts from configs/demo.py:small with the given overrides, trains, then
writes every G/D/E weight to OUT.npz. Test hooks (environment variables), set
only by tests:
  SPADE_TF_TEST_HANG_AT_SAVE=S  the checkpoint save of step S stops after its data files are
                                written but before the `checkpoint` index file names it, creates
                                WORKDIR/hanging and sleeps: the test kills the process there.
  SPADE_TF_TEST_HANG_IN_STEP=K  step K stops after its G update and before its D update (mid-step),
                                creates WORKDIR/hanging and sleeps.
  SPADE_TF_TEST_HANG_AFTER_STEP=K  the run stops after step K completed (between checkpoints),
                                creates WORKDIR/hanging and sleeps.
  SPADE_TF_TEST_NAN_AT=K        training step K returns a NaN loss.
"""

import ast
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tensorflow.python.checkpoint import checkpoint_management  # noqa: E402

from configs.demo import get_config  # noqa: E402
from spade_tf.training import (
    train_lib,  # noqa: E402
    trainer,  # noqa: E402
)


def _hang(workdir):
    open(os.path.join(workdir, "hanging"), "w").close()
    time.sleep(3600)


def _install_hooks(workdir):
    hang_at = int(os.environ.get("SPADE_TF_TEST_HANG_AT_SAVE", "0"))
    if hang_at:
        real = checkpoint_management.update_checkpoint_state_internal

        def hanging(save_dir, model_checkpoint_path, *args, **kwargs):
            if model_checkpoint_path.endswith(f"ckpt-{hang_at}"):
                _hang(workdir)
            return real(save_dir, model_checkpoint_path, *args, **kwargs)

        checkpoint_management.update_checkpoint_state_internal = hanging
    hang_in = int(os.environ.get("SPADE_TF_TEST_HANG_IN_STEP", "0"))
    if hang_in:
        real_distributed = trainer.GANTrainer._distributed

        def distributed(self, name):
            fn = real_distributed(self, name)
            if name in ("D", "D_given") and int(self.step.numpy()) + 1 == hang_in:
                _hang(workdir)  # G of step `hang_in` is applied, its D update not
            return fn

        trainer.GANTrainer._distributed = distributed
    hang_after = int(os.environ.get("SPADE_TF_TEST_HANG_AFTER_STEP", "0"))
    if hang_after:
        real_train_step = trainer.GANTrainer.train_step

        def after(self, batch):
            logs = real_train_step(self, batch)
            if int(self.step.numpy()) == hang_after:
                _hang(workdir)
            return logs

        trainer.GANTrainer.train_step = after
    nan_at = int(os.environ.get("SPADE_TF_TEST_NAN_AT", "0"))
    if nan_at:
        real_step = trainer.GANTrainer.train_step

        def step(self, batch):
            logs = real_step(self, batch)
            if int(self.step.numpy()) == nan_at:
                logs.values["G_GAN"] = float("nan")
            return logs

        trainer.GANTrainer.train_step = step


def apply_overrides(config, items):
    """Sets each "a.b.c=value" (a Python literal, else a string) on the config, at any depth."""
    for item in items:
        key, value = item.split("=", 1)
        *path, name = key.split(".")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        section = config
        for part in path:
            section = getattr(section, part)
        setattr(section, name, value)
    return config


def main():
    workdir, out = sys.argv[1], sys.argv[2]
    config = apply_overrides(get_config("small"), sys.argv[3:])
    _install_hooks(workdir)
    result = train_lib.train(config, workdir)
    t = result.get("trainer")
    weights = {}
    for name, model in (("G", t.generator), ("D", t.discriminator), ("E", t.encoder)):
        if model is not None:
            for v in model.weights:
                weights[f"{name}/{v.path.split('/', 1)[1]}"] = v.numpy()
    weights["step"] = np.array(result["step"])
    np.savez(out, **weights)


if __name__ == "__main__":
    main()
