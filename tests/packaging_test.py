"""The package as a user installs it: pyproject.toml's packages and commands, and a built wheel at work.

The slow test builds the wheel, installs it into a fresh virtual environment outside the repository and, in
an empty folder, runs the README's commands: spade-train --config=demo:small, spade-export, spade-serve
answering a request. The new environment gets the heavy dependencies (TensorFlow, ...) from this one through
a .pth file, not a download; spade_tf itself comes only from the wheel (the test checks where it imports from).
"""

import ast
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request

import numpy as np
import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    PYPROJECT = tomllib.load(_f)
COMMANDS = (
    "train",
    "export",
    "synthesize",
    "evaluate",
    "serve",
    "convert",
    "check_dataset",
    "benchmark",
    "label_photos",
)


def test_every_package_folder_is_installed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        os.path.relpath(d, ROOT).replace(os.sep, ".")
        for d, _, files in os.walk(os.path.join(ROOT, "spade_tf"))
        if "__init__.py" in files
    }
    assert found | {"spade_tf.configs"} == listed, sorted(listed ^ (found | {"spade_tf.configs"}))
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"spade_tf.configs": "configs"}
    assert PYPROJECT["project"]["license"] == "Apache-2.0" and os.path.isfile(os.path.join(ROOT, "LICENSE"))


def test_every_command_has_a_console_script_a_module_and_a_thin_script():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts == {f"spade-{c.replace('_', '-')}": f"spade_tf.cli.{c}:run" for c in COMMANDS}
    for command in COMMANDS:
        module = ast.parse(open(os.path.join(ROOT, "spade_tf", "cli", f"{command}.py")).read())
        assert {"run", "main", "define_flags"} <= {
            n.name for n in module.body if isinstance(n, ast.FunctionDef)
        }
        # The top-level script only calls the same run(): no flags, no logic of its own.
        script = open(os.path.join(ROOT, f"{command}.py")).read()
        assert f"from spade_tf.cli import {command}" in script and f"{command}.run()" in script
        assert "DEFINE" not in script


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(done, what):
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_exports_and_serves(tmp_path):
    # Build from a copy of the sources, so that nothing (build/, *.egg-info) lands in the working tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("spade_tf", "configs"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _check(
        subprocess.run(
            [*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=300,
        ),
        "pip wheel",
    )
    (wheel,) = glob.glob(str(tmp_path / "dist" / "spade_tf-*.whl"))

    venv = tmp_path / "venv"
    _check(
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True
        ),
        "venv",
    )
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies from this environment, which holds no spade_tf (the clone is on pytest's path only).
    here = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for folder in here:
        assert not glob.glob(os.path.join(folder, "spade_tf*")), (
            f"spade_tf is installed in {folder}: uninstall it"
        )
    with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
        f.write("\n".join(here) + "\n")
    _check(
        subprocess.run(
            [*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
            capture_output=True,
            text=True,
            timeout=300,
        ),
        "pip install",
    )

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        SPADE_TF_CACHE=str(tmp_path / "cache"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )

    def run(*args, timeout=300):
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=timeout)

    # spade_tf from the wheel, the clone not importable; every console command loads.
    done = _check(
        run(
            "python",
            "-c",
            "import importlib.metadata as m, spade_tf; print(spade_tf.__file__); "
            "print(sorted(ep.name for ep in m.entry_points(group='console_scripts') if ep.load() and ep.name.startswith('spade-')))",
        ),
        "import",
    )
    path, names = done.stdout.strip().splitlines()[-2:]
    assert path.startswith(purelib), path
    assert sorted(ast.literal_eval(names)) == sorted(PYPROJECT["project"]["scripts"])

    _check(
        run("spade-train", "--config=demo:small", "--workdir=w", "--config.train.max_steps=2"), "spade-train"
    )
    assert os.path.isfile(work / "w" / "model.keras")
    card = (work / "w" / "MODEL_CARD.md").read_text()
    assert "oracle_miou_synthesized" in card and "**Apache License 2.0**" in card

    done = _check(run("spade-export", "--model", "w", "--export_dir", "e"), "spade-export")
    assert "Weights license: Apache License 2.0" in done.stdout
    for name in (
        "1/saved_model.pb",
        "metadata.json",
        "models.config",
        "MODEL_CARD.md",
        "tflite/spade_int8.tflite",
    ):
        assert os.path.isfile(work / "e" / name), name
    assert "oracle_miou_synthesized" in (work / "e" / "MODEL_CARD.md").read_text()
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

    config = text_format.Parse(
        (work / "e" / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    assert config.model_config_list.config[0].name == "spade"

    port = _free_port()
    server = subprocess.Popen(
        ["spade-serve", "--model", "e", f"--port={port}"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/v1/models/spade", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "spade-serve did not answer within 120 s"
                time.sleep(1)
        labels = np.zeros((32, 32), np.int32)
        labels[16:] = 6
        # The demo model takes instance maps: here each class region is one instance.
        body = json.dumps({"instances": [{"labels": labels.tolist(), "instances": labels.tolist()}]}).encode()
        with urllib.request.urlopen(
            urllib.request.Request(url + "/v1/models/spade:predict", body), timeout=60
        ) as r:
            image = np.asarray(json.load(r)["predictions"][0])
        assert image.shape == (32, 32, 3)
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert b'id="model-license"' in r.read()  # the painter page, from the wheel's package data
    finally:
        server.terminate()
        server.wait(30)
