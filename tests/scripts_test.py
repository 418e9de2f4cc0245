"""The commands' surface: --help exits 0 listing the flags, one dataset spelling, config names, `python -m`.

Every command runs three ways (spade_tf/cli): the top-level script of a clone (tested here), `python -m
spade_tf.cli.<name>` (here too) and the console command of an installed wheel (tests/packaging_test.py).
"""

import os
import re
import subprocess
import sys

import pytest

from spade_tf import cli
from spade_tf.config import config_dir, load_config_file, resolve_config_spec, validate
from spade_tf.tools import convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flags each command must list: its own, not only absl's (the ones a user reaches for first).
COMMANDS = {
    "train": ["--config", "--workdir"],
    "export": ["--model", "--export_dir", "--version", "--tflite", "--model_name", "--serving_versions"],
    "synthesize": ["--model", "--labels", "--split", "--dataset", "--num_samples", "--style"],
    "evaluate": ["--model", "--dataset", "--inception", "--segmenter", "--segmenter_signature"],
    "serve": ["--model", "--port", "--model_name", "--max_body_bytes", "--max_pixels"],
    "check_dataset": ["--config"],
    "convert": ["--dataset", "--checkpoint_dir", "--output", "--to_official", "--label_nc"],
    "label_photos": ["--segmenter", "--photos", "--output", "--min_confidence"],
    "benchmark": ["--config", "--dataset", "--phases", "--runs"],
}
# The commands with a --dataset flag: one spelling, coco_stuff (coco is taken and mapped).
WITH_DATASET = ("synthesize", "evaluate", "convert", "benchmark", "export")


def _run(args, cwd=ROOT):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _listed(help_text):
    """The flags a help text lists ("  --name:" and "  --[no]name:" lines)."""
    return {"--" + m for m in re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, re.M)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_0_and_lists_the_flags(command):
    done = _run([f"{command}.py", "--help"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    listed = _listed(done.stdout)
    assert set(COMMANDS[command]) <= listed, (sorted(set(COMMANDS[command]) - listed), done.stdout[-3000:])
    # The description comes first: the console command's name and what it does.
    assert done.stdout.startswith(f"spade-{command.replace('_', '-')}: "), done.stdout[:200]
    if command in WITH_DATASET:
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith("--dataset:"))
        assert "coco_stuff" in line and "|coco|" not in line and "|coco>" not in line, line


def test_helpfull_and_module_entry_points():
    # --helpfull adds every module's flags (absl's own), still exit 0; `python -m` runs the same command.
    done = _run(["-m", "spade_tf.cli.export", "--helpfull"])
    assert done.returncode == 0 and "--export_dir" in done.stdout and "--flagfile" in done.stdout, done.stderr
    # convert.py's docstring documents `python -m spade_tf.convert` (an old module path, now the command).
    done = _run(["-m", "spade_tf.convert", "--help"])
    assert done.returncode == 0 and "--checkpoint_dir" in _listed(done.stdout), done.stderr[-2000:]
    done = _run(["-m", "spade_tf.convert", "--output", "x.keras"])
    assert done.returncode != 0 and "convert.py: error: give --checkpoint_dir or --generator" in done.stderr


def test_usage_errors_are_one_line_naming_the_command():
    done = _run(["synthesize.py", "--model", "nowhere", "extra"])
    lines = [line for line in done.stderr.splitlines() if line.startswith("synthesize.py:")]
    assert done.returncode == 1 and lines == [
        "synthesize.py: error: Unexpected arguments: ['extra'] (--help lists the flags)"
    ]


def test_package_imports_alone():
    done = _run(["-c", "import spade_tf; print(sorted(spade_tf.MOVED_MODULES)[0])"])
    assert done.returncode == 0 and done.stdout.strip() == "spade_tf.benchmark", done.stderr[-2000:]


# -- config names --------------------------------------------------------------------------------------------


def test_bundled_config_names_resolve_and_paths_stay_paths():
    demo = os.path.join(config_dir(), "demo.py")
    assert resolve_config_spec("demo") == demo + ""
    assert resolve_config_spec("demo:small") == demo + ":small"
    assert resolve_config_spec("coco:small") == os.path.join(config_dir(), "coco_stuff.py") + ":small"
    assert resolve_config_spec("configs/demo.py:small") == "configs/demo.py:small"
    assert load_config_file("ade20k:small").data.crop_size == 64
    assert load_config_file("demo").data.dataset == "demo"
    with pytest.raises(
        ValueError, match=r"unknown config 'ade30k'; the bundled configs are ade20k, cityscapes"
    ):
        resolve_config_spec("ade30k")


def test_demo_long_is_the_default_with_more_steps_and_a_weaker_kl_term():
    # The README's measured long run: these three keys and nothing else differ from the first command's config.
    default = load_config_file("demo").to_dict()
    long = load_config_file("demo:long").to_dict()
    changed = {
        (section, key): (default[section][key], long[section][key])
        for section in default
        if isinstance(default[section], dict)
        for key in default[section]
        if default[section][key] != long[section][key]
    }
    assert changed == {
        ("train", "max_steps"): (1000, 3000),
        ("train", "lambda_kld"): (0.05, 0.01),
        ("train", "max_seconds"): (3600, 10800),
    }
    assert {k for k in default if not isinstance(default[k], dict) and default[k] != long[k]} == set()
    validate(load_config_file("demo:long"))
    with pytest.raises(ValueError, match="choose 'small', 'long' or nothing"):
        load_config_file("demo:longer")


def test_train_takes_a_config_name_and_checks_overrides_against_it():
    done = _run(["train.py", "--config=demo:small", "--config.train.max_stepz=2"])
    assert done.returncode == 1
    assert "train.py: error: --config.train.max_stepz: config.train has no key 'max_stepz'" in done.stderr


# -- one dataset name ------------------------------------------------------------------------------------------


def test_coco_is_taken_for_coco_stuff_everywhere():
    parser = cli._DatasetParser(["ade20k", "cityscapes", "coco_stuff"])
    assert parser.parse("coco") == "coco_stuff" and parser.parse("ade20k") == "ade20k"
    with pytest.raises(ValueError):
        parser.parse("coconut")
    assert convert.dataset_preset("coco") == convert.DATASET_PRESETS["coco_stuff"]
    config = load_config_file("coco_stuff:small")
    config.data.dataset = "coco"
    config.data.root = "/data/coco_stuff"
    assert validate(config).data.dataset == "coco_stuff"
