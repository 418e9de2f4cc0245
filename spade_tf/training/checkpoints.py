"""Checkpoints that survive damage: resume from the newest one that reads, clean up interrupted writes,
and stop with one message when a write fails (a full disk).

A checkpoint that cannot be read (truncated by a full disk or a bad copy, a flipped bit) is moved to
`<checkpoints>/damaged/` (never deleted: it may be repairable or worth a look) and the run resumes from
the newest older one that reads. TF writes a checkpoint into `<prefix>_temp/` and renames it into
place; a write interrupted by kill -9 or a full disk leaves that folder behind, which the next run
removes before it starts.
"""

import contextlib
import glob
import os
import shutil

import tensorflow as tf

# The `checkpoint` state file's writer: the public tf.compat.v1 one writes absolute paths, which
# break when a workdir is moved; CheckpointManager writes relative ones with this function.
from tensorflow.python.checkpoint import checkpoint_management

from spade_tf.training.workdir import WorkdirError, error_text, format_bytes, free_bytes, is_disk_full

DAMAGED_DIR = "damaged"
# CheckpointManager's default checkpoint_name: checkpoints are <directory>/ckpt-<step>.
CHECKPOINT_NAME = "ckpt"


class CheckpointWriteError(WorkdirError):
    """A checkpoint could not be written (disk full); the previous one is intact."""


class CheckpointReadError(WorkdirError):
    """No checkpoint of a workdir can be read."""


def checkpoint_step(prefix):
    """The step of `.../ckpt-<step>`."""
    return int(prefix.rsplit("-", 1)[1])


def _files(prefix):
    return sorted(glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"))


def files_size(prefix):
    """Bytes of a checkpoint's files (0 when there are none)."""
    return sum(os.path.getsize(f) for f in _files(prefix))


def _tree_size(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def remove_interrupted_writes(directory, out=print):
    """Removes the `*_temp` folders that interrupted checkpoint writes left in `directory`.

    Only call this holding the workdir's lock: a live run's write in progress looks the same.
    """
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*_temp"))):
        if os.path.isdir(path):
            size = _tree_size(path)
            shutil.rmtree(path, ignore_errors=True)
            out(f"Removed {path} ({format_bytes(size)}), left by an interrupted checkpoint write.")


def damage(prefix):
    """Why the checkpoint at `prefix` cannot be read, or None when every tensor reads back intact.

    Reads the index and every tensor with its checksum, independently of any model: so a readable
    checkpoint that a model does not match is not called damaged.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except Exception as e:  # any failure to read the raw file is damage; the message says which
        return error_text(e)
    return None


def _move_aside(prefix):
    """Moves a checkpoint's files to <directory>/damaged/ (numbered when that name is taken); its new prefix."""
    folder = os.path.join(os.path.dirname(prefix), DAMAGED_DIR)
    os.makedirs(folder, exist_ok=True)
    name = target = os.path.basename(prefix)
    number = 1
    while glob.glob(os.path.join(glob.escape(folder), glob.escape(target) + ".*")):
        number += 1
        target = f"{name}.{number}"
    for path in _files(prefix):
        os.replace(path, os.path.join(folder, target + path[len(prefix) :]))
    return os.path.join(folder, target)


def _forget(directory, bad, latest):
    """Rewrites the `checkpoint` state file without the `bad` prefixes, naming `latest` as the newest."""
    directory = os.path.abspath(directory)
    state = tf.train.get_checkpoint_state(directory)
    paths = [os.path.abspath(p) for p in state.all_model_checkpoint_paths] if state else []
    times = list(state.all_model_checkpoint_timestamps) if state else []
    bad = {os.path.abspath(p) for p in bad}
    keep = [i for i, p in enumerate(paths) if p not in bad]
    checkpoint_management.update_checkpoint_state_internal(
        directory,
        model_checkpoint_path=os.path.abspath(latest),
        all_model_checkpoint_paths=[paths[i] for i in keep],
        all_model_checkpoint_timestamps=[times[i] for i in keep] if len(times) == len(paths) else None,
        last_preserved_timestamp=state.last_preserved_timestamp if state else None,
        save_relative_paths=True,
    )


def restore_newest_readable(make_manager, out=print):
    """Restores the newest checkpoint that reads; damaged newer ones are moved aside, with a message each.

    Args:
        make_manager: () -> the run's tf.train.CheckpointManager (called again after the state file
            changed, so that later saves and the max_to_keep sweep see only the checkpoints that remain).
        out: where the messages go.

    Returns:
        (manager, the restored prefix or None when there is no checkpoint).

    Raises:
        CheckpointReadError: there are checkpoints, and none reads (they are left in place).
        Anything the restore raises for a checkpoint that is intact (e.g. a config that does not match it).
    """
    manager = make_manager()
    candidates = list(reversed(manager.checkpoints))
    if manager.latest_checkpoint and manager.latest_checkpoint not in candidates:
        candidates.insert(0, manager.latest_checkpoint)
    damaged, status, restored = [], None, None
    for prefix in candidates:
        try:
            status = manager.checkpoint.restore(prefix)
        except Exception:  # what a damaged file raises varies (DataLossError, IndexError, ...): see damage()
            why = damage(prefix)
            if why is None:
                raise
            damaged.append((prefix, why))
            continue
        restored = prefix
        break
    if not damaged:
        return manager, restored
    listing = "; ".join(f"{p}: {why}" for p, why in damaged)
    if restored is None:
        raise CheckpointReadError(
            f"no checkpoint in {manager.directory} can be read ({listing}). They are left in place; to start "
            f"from step 0, move {manager.directory} away (or use another --workdir)."
        )
    # The damaged checkpoint's restore may have assigned some variables before it failed; this one must
    # have overwritten every one of them.
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise CheckpointReadError(
            f"{restored} reads but does not hold every variable of the model ({error_text(e)}), so the variables "
            f"that the damaged newer checkpoint ({listing}) half-restored cannot be trusted. Resume with the "
            "config that wrote these checkpoints, or move them away to start from step 0."
        ) from None
    for prefix, why in damaged:
        moved = _move_aside(prefix)
        out(f"Checkpoint {prefix} cannot be read ({why}); moved its files to {moved}.* (not deleted).")
    _forget(manager.directory, [p for p, _ in damaged], restored)
    return make_manager(), restored


def resume_hint(latest, fix="free some space"):
    """What a rerun does, given the newest intact checkpoint (or None) and what to do first."""
    if latest:
        return (
            f"The previous checkpoint {latest} (step {checkpoint_step(latest)}) is intact: {fix} and rerun with "
            "the same workdir to resume from it."
        )
    return f"There is no earlier checkpoint: {fix} and rerun, which starts from step 0."


def save(manager, step, size_hint=0):
    """`manager.save(checkpoint_number=step)`; a failed write raises CheckpointWriteError instead.

    The partial files of the failed write are removed. The message names the checkpoint, says how much
    space is free, and that the previous checkpoint is intact and a rerun resumes from it.

    Args:
        manager: a tf.train.CheckpointManager with the default checkpoint name.
        step: the checkpoint's number.
        size_hint: bytes one checkpoint takes, named in the message (0: not named).
    """
    prefix = os.path.join(manager.directory, f"{CHECKPOINT_NAME}-{step}")
    try:
        return manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
        shutil.rmtree(prefix + "_temp", ignore_errors=True)
        if prefix not in manager.checkpoints:
            for path in _files(prefix):
                os.remove(path)
        full = is_disk_full(e)
        need = f"; a checkpoint takes about {format_bytes(size_hint)}" if size_hint else ""
        raise CheckpointWriteError(
            f"could not write checkpoint {prefix} (step {step}): {'the disk is full' if full else 'the write failed'} "
            f"({error_text(e)}). {format_bytes(free_bytes(manager.directory))} free "
            f"on its disk{need}. {resume_hint(manager.latest_checkpoint, 'free some space' if full else 'fix that')}"
        ) from None


def warn_if_low_space(directory, needed, out=print):
    """Warns when the disk of `directory` has less free space than `needed` bytes (one checkpoint)."""
    free = free_bytes(directory)
    if free < needed:
        out(
            f"Warning: {format_bytes(free)} free on the disk of {directory}, but one checkpoint takes about "
            f"{format_bytes(needed)}: checkpoint writes will fail. Free some space, or use a --workdir on "
            "another disk."
        )
    return free


@contextlib.contextmanager
def disk_full_stops(workdir, latest):
    """Turns a full disk met anywhere in the block (logs, samples, the bundle) into one WorkdirError.

    Args:
        workdir: the run's folder, named in the message.
        latest: () -> the newest intact checkpoint prefix, or None.
    """
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        if not is_disk_full(e):
            raise
        raise WorkdirError(
            f"the disk of workdir {workdir} is full ({error_text(e)}); "
            f"{format_bytes(free_bytes(workdir))} free. {resume_hint(latest())}"
        ) from None
