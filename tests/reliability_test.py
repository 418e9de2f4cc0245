"""Reliability: bad inputs and a damaged, shared or full workdir give one clear message, never silent damage.

Each test reproduces a case of the issue: a JPEG label named .png (3), two runs on one workdir (4), a
damaged newest checkpoint (5), a full disk during a checkpoint write (6), a damaged model.keras (7) and a
data root that does not exist (8). The command-line checks run the scripts in subprocesses: one message,
a non-zero exit, no traceback.
"""

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs.demo import get_config
from spade_tf.data.check import check_dataset
from spade_tf.data.labels import UnreadableLabelError, decode_label_png_tf, read_label
from spade_tf.data.layouts import find_examples
from spade_tf.models.bundle import BundleError, load_bundle
from spade_tf.serving.inference import load_synthesizer
from spade_tf.training import checkpoints, train_lib
from spade_tf.training.checkpoints import CheckpointReadError, CheckpointWriteError
from spade_tf.training.workdir import LOCK_FILE, WorkdirError, WorkdirInUse, WorkdirLock
from tests.test_case import run_script, tiny_bundle
from tests.trainer_test import demo_cache  # noqa: F401 (a fixture: the small demo dataset in a private cache)


@pytest.fixture
def other_process():
    """A live process that is not this one (its PID stands for another training run)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def _hold_lock(workdir, pid, host=None):
    os.makedirs(workdir, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}
    with open(os.path.join(workdir, LOCK_FILE), "w") as f:
        json.dump(record, f)


def _one_line_error(result, script):
    """The script failed with one `<script>: error:` line and no traceback; returns that line."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{script}: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _flip(path, offset, count=16):
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def _truncate(path, fraction=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * fraction))


# -- 3. a JPEG label named .png --------------------------------------------------------------------------


def test_jpeg_label_with_a_png_name_is_refused_by_the_check_and_every_reader(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.repeat(np.repeat(rng.integers(0, 200, (8, 8)), 4, 0), 4, 1).astype(np.uint8)
    for name in ("good", "jpeg"):
        os.makedirs(tmp_path / "train" / "images", exist_ok=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "train" / "images" / f"{name}.jpg")
    os.makedirs(tmp_path / "train" / "labels")
    Image.fromarray(ids).save(tmp_path / "train" / "labels" / "good.png")
    jpeg = tmp_path / "train" / "labels" / "jpeg.png"
    Image.fromarray(ids).save(jpeg, format="JPEG", quality=90)
    # Why it must be refused: the decoded ids are not the ids that were saved.
    assert np.mean(np.asarray(Image.open(jpeg)) != ids) > 0.1
    # num_classes=256 lets every decoded id pass the range check, as in the issue.
    report = check_dataset(find_examples("custom", root=tmp_path), 256, False, False, num_threads=2)
    assert not report.ok
    (error,) = [e for e in report.errors if "jpeg.png" in e]
    assert error.startswith(f"{jpeg}: is a JPEG file, not a PNG")
    assert "lossless PNG" in error and "lossy compression changes the ids" in error, error
    # The readers look at the signature too, not at the name.
    with pytest.raises(UnreadableLabelError, match="not a PNG file"):
        read_label(str(jpeg))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a PNG file"):
        decode_label_png_tf(tf.io.read_file(str(jpeg)), source=str(jpeg)).numpy()


# -- 4. one run per workdir ------------------------------------------------------------------------------


def test_workdir_lock_holds_one_run_and_takes_over_a_dead_ones(tmp_path, other_process):
    work = tmp_path / "work"
    printed = []
    with WorkdirLock(work, printed.append) as lock:
        with open(lock.path) as f:
            record = json.load(f)
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"]
    # The run wrote nothing: the workdir its lock created is gone with the lock.
    assert not work.exists()

    _hold_lock(work, other_process.pid)
    for attempt in (WorkdirLock(work).check, WorkdirLock(work).acquire):
        with pytest.raises(
            WorkdirInUse, match=f"in use by another training run: PID {other_process.pid} on host"
        ):
            attempt()
    other_process.kill()
    other_process.wait()
    with WorkdirLock(work, printed.append):
        with open(work / LOCK_FILE) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert printed == [
        f"Taking over the stale lock {work / LOCK_FILE} of PID {other_process.pid} on {socket.gethostname()}, "
        "which no longer runs."
    ]
    assert work.is_dir() and not (work / LOCK_FILE).exists()

    # Another machine's run cannot be checked from here: never taken over.
    _hold_lock(work, 1, host="elsewhere")
    with pytest.raises(WorkdirInUse, match="PID 1 on host elsewhere"):
        WorkdirLock(work).acquire()


def test_second_train_py_on_a_workdir_stops_at_once_naming_the_first(tmp_path, other_process):
    work = tmp_path / "work"
    _hold_lock(work, other_process.pid)
    result = run_script("train.py", "--config=configs/demo.py:small", f"--workdir={work}", timeout=300)
    line = _one_line_error(result, "train.py")
    assert f"PID {other_process.pid} on host {socket.gethostname()}" in line and "another --workdir" in line
    # Stopped before the data check and before writing anything.
    assert "Dataset check" not in result.stdout
    assert sorted(os.listdir(work)) == [LOCK_FILE]


# -- 5. a damaged newest checkpoint ----------------------------------------------------------------------


def _toy_checkpoints(directory, steps, size=4096):
    """A variable saved at `steps` (value = the step); returns (variable, make_manager)."""
    v = tf.Variable(tf.zeros([size]))
    checkpoint = tf.train.Checkpoint(v=v)

    def make_manager():
        return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=3)

    manager = make_manager()
    for step in steps:
        v.assign(tf.fill([size], float(step)))
        manager.save(checkpoint_number=step)
    return v, make_manager


def test_resume_skips_damaged_checkpoints_and_moves_them_aside(tmp_path):
    ckpt = tmp_path / "checkpoints"
    v, make_manager = _toy_checkpoints(ckpt, [1, 2, 3])
    _truncate(ckpt / "ckpt-3.index")  # the "Read less bytes than requested"
    data = ckpt / "ckpt-2.data-00000-of-00001"
    _flip(data, os.path.getsize(data) // 2)  # the "Checksum does not match"
    (ckpt / "ckpt-4_temp").mkdir()
    (ckpt / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 5000)
    v.assign(tf.zeros_like(v))

    printed = []
    checkpoints.remove_interrupted_writes(str(ckpt), printed.append)
    manager, restored = checkpoints.restore_newest_readable(make_manager, printed.append)
    assert restored == str(ckpt / "ckpt-1")
    np.testing.assert_array_equal(v.numpy(), 1.0)
    text = "\n".join(printed)
    assert f"Removed {ckpt / 'ckpt-4_temp'} (5.0 KB), left by an interrupted checkpoint write" in text
    for step in (3, 2):
        assert f"Checkpoint {ckpt / f'ckpt-{step}'} cannot be read (" in text
        assert f"moved its files to {ckpt / 'damaged' / f'ckpt-{step}'}.* (not deleted)" in text
    assert "not an sstable" in text and "Checksum does not match" in text
    assert sorted(os.listdir(ckpt / "damaged")) == [
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    assert not (ckpt / "ckpt-4_temp").exists()
    # The state file names the checkpoint that reads; later saves and the max_to_keep sweep go on from it.
    assert tf.train.latest_checkpoint(str(ckpt)) == str(ckpt / "ckpt-1")
    assert manager.checkpoints == [str(ckpt / "ckpt-1")]
    for step in (2, 3, 4):
        v.assign(tf.fill(v.shape, float(step)))
        manager.save(checkpoint_number=step)
    assert manager.checkpoints == [str(ckpt / f"ckpt-{s}") for s in (2, 3, 4)]
    assert len(os.listdir(ckpt / "damaged")) == 4

    # Damaged again at the same step: the earlier copy in damaged/ is kept, this one numbered.
    _truncate(ckpt / "ckpt-4.index")
    checkpoints.restore_newest_readable(make_manager, printed.append)
    _truncate(ckpt / "ckpt-3.index")
    checkpoints.restore_newest_readable(make_manager, printed.append)
    assert "ckpt-3.2.index" in os.listdir(ckpt / "damaged") and "ckpt-3.index" in os.listdir(ckpt / "damaged")
    np.testing.assert_array_equal(v.numpy(), 2.0)


def test_no_readable_checkpoint_or_a_mismatch_is_not_hidden(tmp_path):
    ckpt = tmp_path / "checkpoints"
    _, make_manager = _toy_checkpoints(ckpt, [1, 2])
    for step in (1, 2):
        _truncate(ckpt / f"ckpt-{step}.index")
    with pytest.raises(CheckpointReadError, match="no checkpoint in .* can be read .*left in place"):
        checkpoints.restore_newest_readable(make_manager)
    assert not (ckpt / "damaged").exists()

    # An intact checkpoint that the model does not match is the config's error, not damage: raised as is.
    other = tmp_path / "other"
    _toy_checkpoints(other, [1], size=8)
    _, make_manager = _toy_checkpoints(tmp_path / "unused", [], size=16)
    with pytest.raises(ValueError):
        checkpoints.restore_newest_readable(
            lambda: tf.train.CheckpointManager(make_manager().checkpoint, str(other), max_to_keep=3)
        )
    assert not (other / "damaged").exists()


# -- 6. a full disk during a checkpoint write ------------------------------------------------------------


def test_failed_checkpoint_write_stops_with_one_message(tmp_path):
    ckpt = tmp_path / "checkpoints"
    v, make_manager = _toy_checkpoints(ckpt, [1, 2], size=1 << 18)  # 1 MB per checkpoint
    manager = make_manager()
    # A file size limit fails the write as a full disk does (EFBIG instead of ENOSPC), in the real TF path.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, limits[1]))
    try:
        with pytest.raises(CheckpointWriteError) as error:
            checkpoints.save(manager, 3, size_hint=1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    message = str(error.value)
    assert message.startswith(f"could not write checkpoint {ckpt / 'ckpt-3'} (step 3): the disk is full (")
    assert " free on its disk; a checkpoint takes about 1.0 MB." in message
    assert f"The previous checkpoint {ckpt / 'ckpt-2'} (step 2) is intact" in message
    assert "rerun with the same workdir to resume from it" in message
    # Nothing of the failed write is left; the previous checkpoint reads.
    assert sorted(os.listdir(ckpt)) == [
        "checkpoint",
        "ckpt-1.data-00000-of-00001",
        "ckpt-1.index",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
    ]
    _, restored = checkpoints.restore_newest_readable(make_manager)
    assert restored == str(ckpt / "ckpt-2")
    np.testing.assert_array_equal(v.numpy(), 2.0)

    # At start: a warning when one checkpoint does not fit; elsewhere (logs, the bundle): the same message.
    printed = []
    checkpoints.warn_if_low_space(str(ckpt), 10**18, printed.append)
    assert printed[0].startswith("Warning: ") and "one checkpoint takes about 1000000.0 TB" in printed[0]
    with pytest.raises(
        WorkdirError, match=r"the disk of workdir .* is full \(OSError: .*ckpt-2 \(step 2\) is intact"
    ):
        with checkpoints.disk_full_stops(str(tmp_path), lambda: str(ckpt / "ckpt-2")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "tensorboard"))


@pytest.mark.usefixtures("demo_cache")
def test_training_stops_cleanly_on_a_full_disk_and_resumes_past_a_damaged_checkpoint(tmp_path, monkeypatch):
    config = get_config("small")
    config.train.update(max_steps=3, checkpoint_every=1, image_every=0)
    config.eval.update(oracle=False, gallery_size=2)
    work = tmp_path / "work"
    real_save = tf.train.CheckpointManager.save

    def disk_full_at_3(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 3:
            raise tf.errors.ResourceExhaustedError(
                None, None, "ckpt-3_temp/part-00000: No space left on device"
            )
        return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_at_3)
    printed = []
    with pytest.raises(
        CheckpointWriteError, match=r"ckpt-3 \(step 3\): the disk is full .*ckpt-2 \(step 2\) is intact"
    ):
        train_lib.train(config, str(work), out=printed.append)
    assert not (work / LOCK_FILE).exists()  # released on the way out
    monkeypatch.undo()

    ckpt = work / "checkpoints"
    _flip(ckpt / "ckpt-2.data-00000-of-00001", os.path.getsize(ckpt / "ckpt-2.data-00000-of-00001") // 2)
    (ckpt / "ckpt-3_temp").mkdir()  # as a kill -9 during the write leaves it
    printed = []
    result = train_lib.train(config, str(work), out=printed.append)
    text = "\n".join(printed)
    assert result["step"] == 3
    assert f"Checkpoint {ckpt / 'ckpt-2'} cannot be read (" in text and "Checksum does not match" in text
    assert f"Resuming from {ckpt / 'ckpt-1'} (step 1)." in text
    assert "left by an interrupted checkpoint write" in text
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-3")
    assert os.listdir(ckpt / "damaged") and not (ckpt / "ckpt-3_temp").exists()
    assert (work / "model.keras").exists() and not (work / LOCK_FILE).exists()


# -- 7. a damaged model.keras ----------------------------------------------------------------------------


def test_damaged_bundle_is_one_clear_error(tmp_path):
    path = tiny_bundle(tmp_path / "work")
    intact = open(path, "rb").read()
    _truncate(path)
    with pytest.raises(BundleError, match="not a complete .keras \\(zip\\) file") as error:
        load_synthesizer(str(tmp_path / "work"))
    assert str(error.value).startswith(f"{path} is damaged: ") and "rerunning train.py" in str(error.value)

    with open(path, "wb") as f:
        f.write(intact)
    _flip(path, len(intact) // 2, count=64)
    with pytest.raises(BundleError, match=f"{path} is damaged: "):
        load_bundle(path)

    result = run_script("synthesize.py", f"--model={path}", "--split=val", f"--output={tmp_path / 'out'}")
    line = _one_line_error(result, "synthesize.py")
    assert f"{path} is damaged" in line
    assert not (tmp_path / "out").exists()


# -- 8. a data root that does not exist ------------------------------------------------------------------


def test_missing_data_root_is_one_message_and_writes_nothing(tmp_path):
    missing = tmp_path / "no_such_dataset"
    config = get_config("small")
    config.data.dataset = "custom"
    config.data.root = str(missing)
    work = tmp_path / "work"
    with pytest.raises(FileNotFoundError, match=f"the custom dataset root {missing} does not exist"):
        train_lib.train(config, str(work), out=lambda *_: None)
    assert not work.exists()

    flags = ["--config=configs/custom.py:small", f"--config.data.root={missing}"]
    for script, extra in (("train.py", [f"--workdir={work}"]), ("check_dataset.py", [])):
        line = _one_line_error(run_script(script, *flags, *extra, timeout=300), script)
        assert f"root {missing} does not exist" in line
    assert not work.exists()
