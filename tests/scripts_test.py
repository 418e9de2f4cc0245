"""Every top-level script answers --help with its flags (and no traceback); the package imports alone."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One flag each script must list: proof that its flags were defined, not only absl's own.
SCRIPTS = {
    "train.py": "--workdir",
    "export.py": "--export_dir",
    "synthesize.py": "--num_samples",
    "evaluate.py": "--segmenter",
    "serve.py": "--max_body_bytes",
    "check_dataset.py": "--config",
    "convert.py": "--checkpoint_dir",
    "label_photos.py": "--min_confidence",
    "benchmark.py": "--phases",
}


def _run(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_the_flags(script):
    done = _run([script, "--help"])
    # absl's --help exits with status 1 after printing; anything else is a failure to start.
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert SCRIPTS[script] in done.stdout, done.stdout[-2000:]


def test_package_imports_alone():
    done = _run(["-c", "import spade_tf; print(sorted(spade_tf.MOVED_MODULES)[0])"])
    assert done.returncode == 0 and done.stdout.strip() == "spade_tf.benchmark", done.stderr[-2000:]
