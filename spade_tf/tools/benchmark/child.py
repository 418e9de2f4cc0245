"""One phase of the benchmark in its own process, so that its peak resident memory (`ru_maxrss`) is its own.

`run_phase` writes the task as JSON, starts `python -c` on `main` with the task and result paths, and reads
the result back; `main` is what that process runs.
"""

import importlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile

import spade_tf

# Phase -> "module:function" that runs it in the child; the module is imported there (see `main`).
PHASE_FUNCTIONS = {
    "matmul": "spade_tf.tools.benchmark.matmul:phase",
    "forward": "spade_tf.tools.benchmark.model_phases:forward",
    "train": "spade_tf.tools.benchmark.model_phases:train",
    "saved_model": "spade_tf.tools.benchmark.saved_model_runner:phase",
    "tflite": "spade_tf.tools.benchmark.tflite_runner:phase",
}
# What the child process runs: `main(task_path, result_path)`.
_CHILD_CODE = "import sys; from spade_tf.tools.benchmark import child; child.main(*sys.argv[1:])"


def rss_mb():
    """Peak resident memory of this process so far, in MiB."""
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(task_path, result_path):
    """Runs the phase task in `task_path` (JSON) and writes its result, with its memory, to `result_path`.

    Args:
        task_path: the task: "phase" (a key of PHASE_FUNCTIONS) and what that phase reads.
        result_path: where the result JSON goes: the phase's result plus rss_import_mb, rss_peak_mb and
            gpu_peak_mb.
    """
    with open(task_path) as f:
        task = json.load(f)
    gpus = []
    if task["phase"] != "tflite":
        # Imported here, in the fresh process, not at the top: a TFLite phase loads the LiteRT runtime
        # alone, so that its memory is what a TFLite deployment needs.
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.experimental.enable_tensor_float_32_execution(bool(task.get("tf32", True)))
    module, function = PHASE_FUNCTIONS[task["phase"]].split(":")
    # The phase's module is imported before the baseline is read: its imports (spade_tf for the model
    # phases) belong to the baseline, not to the phase.
    phase = getattr(importlib.import_module(module), function)

    rss_import = rss_mb()
    result = phase(task)
    result["rss_import_mb"] = rss_import
    result["rss_peak_mb"] = rss_mb()
    result["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpus else None
    with open(result_path, "w") as f:
        json.dump(result, f)


def run_phase(task, timeout=None):
    """Runs one phase task in a child process and returns its result dict.

    Args:
        task: a JSON-serialisable dict, read by `main` in the child.
        timeout: seconds before the child is killed (None: no limit).

    Raises:
        RuntimeError: the child failed; the message holds its error line and the end of its stderr.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(spade_tf.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    with tempfile.TemporaryDirectory(prefix="spade_benchmark_") as tmp:
        task_path, result_path = os.path.join(tmp, "task.json"), os.path.join(tmp, "result.json")
        with open(task_path, "w") as f:
            json.dump(task, f)
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, task_path, result_path],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not os.path.isfile(result_path):
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            # The error line (TF's span several lines, so it is not always the last); ValueErrors
            # raised here carry their own fix.
            errors = [line.strip() for line in lines if re.match(r"\s*[\w.]*(Error|Exception): ", line)]
            lines.append(errors[-1] if errors else (lines[-1] if lines else "no error output"))
            raise RuntimeError(
                f"benchmark phase {task['phase']!r}"
                + (
                    f" ({task.get('variant') or task.get('path')})"
                    if task.get("variant") or task.get("path")
                    else ""
                )
                + f" failed (exit {proc.returncode}): "
                + lines[-1]
                + "\n"
                + "\n".join(lines[-25:-1])
            )
        with open(result_path) as f:
            return json.load(f)
