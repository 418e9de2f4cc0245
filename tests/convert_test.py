"""The official-checkpoint converter: round trips, bad inputs, files and the command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spade_tf.models.bundle import load_bundle
from spade_tf.tools import convert
from tests.test_case import FIXTURES, fixture, fixture_config, generator_state, nhwc, require_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_state_dicts_equal(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize(
    "variant,section", [("vae", "A_G_D_vae"), ("novae", "A_novae"), ("vae_ar2", "ar2_vae")]
)
def test_generator_round_trip_is_exact(variant, section):
    state = generator_state(variant)
    g = convert.generator_from_official(state, fixture_config(section))
    _assert_state_dicts_equal(convert.generator_to_official(g), state)


def test_discriminator_and_encoder_round_trip_is_exact():
    d_state, e_state = fixture("state_D"), fixture("state_E")
    d = convert.discriminator_from_official(d_state, fixture_config("A_G_D_vae"))
    e = convert.encoder_from_official(e_state, fixture_config("E_crop256"))
    _assert_state_dicts_equal(convert.discriminator_to_official(d), d_state)
    _assert_state_dicts_equal(convert.encoder_to_official(e), e_state)


def _mismatch(state, options, build=convert.generator_from_official):
    with pytest.raises(convert.StateDictMismatch) as info:
        build(state, options)
    return str(info.value)


def test_missing_key_is_named():
    state = generator_state()
    del state["up_1.conv_s.weight_u"]
    msg = _mismatch(state, fixture_config("A_G_D_vae"))
    assert "missing key 'up_1.conv_s.weight_u'" in msg and "(64,)" in msg


def test_extra_key_is_named():
    state = generator_state()
    state["up_4.conv_0.bias"] = np.zeros(8, np.float32)
    msg = _mismatch(state, fixture_config("A_G_D_vae"))
    assert "unexpected key 'up_4.conv_0.bias' with shape (8,)" in msg


def test_wrong_shape_gives_expected_and_found():
    state = fixture("state_D")
    state["discriminator_1.model2.0.0.weight_orig"] = np.zeros((64, 32, 3, 3), np.float32)
    msg = _mismatch(state, fixture_config("A_G_D_vae"), convert.discriminator_from_official)
    assert "discriminator_1.model2.0.0.weight_orig" in msg
    assert "expected shape (64, 32, 4, 4), found (64, 32, 3, 3)" in msg


def test_wrong_label_nc_points_at_semantic_channels():
    options = dict(fixture_config("A_G_D_vae"), label_nc=8, semantic_nc=10)
    msg = _mismatch(generator_state(), options)
    assert (
        "key 'head_0.norm_0.mlp_shared.0.weight': expected shape (128, 10, 3, 3), found (128, 9, 3, 3)" in msg
    )
    assert "label_nc" in msg and "semantic_nc" in msg
    # The discriminator's first conv sees the semantics too.
    msg = _mismatch(fixture("state_D"), options, convert.discriminator_from_official)
    assert "'discriminator_0.model0.0.weight': expected shape (16, 13, 4, 4), found (16, 12, 4, 4)" in msg


def test_vae_mismatch_says_so():
    msg = _mismatch(generator_state(), fixture_config("A_novae"))
    assert "'fc.weight'" in msg and "set use_vae" in msg


def test_encoder_without_layer6_explains_crop_256():
    state = fixture("state_E")
    for key in [k for k in state if k.startswith("layer6.")]:
        del state[key]
    msg = _mismatch(state, fixture_config("E_crop256"), convert.encoder_from_official)
    assert "missing key 'layer6.0.weight_orig'" in msg


def test_inconsistent_semantic_nc_option_is_refused():
    with pytest.raises(ValueError, match="semantic_nc=12 but label_nc=7"):
        convert.normalize_options(dict(fixture_config("A_G_D_vae"), semantic_nc=12))


def test_bad_option_value_is_named():
    with pytest.raises(ValueError, match="use_vae='maybe'"):
        convert.normalize_options({"use_vae": "maybe"})
    with pytest.raises(ValueError, match="num_upsampling_layers='many'.*'normal', 'more', 'most'"):
        convert.generator_kwargs({"num_upsampling_layers": "many"})


def test_options_from_opt_txt(tmp_path):
    path = tmp_path / "opt.txt"
    path.write_text(
        "----------------- Options ---------------\n"
        "             label_nc: 150                           \t[default: 13]\n"
        "contain_dontcare_label: True                          \t[default: False]\n"
        "          no_instance: True                          \t[default: False]\n"
        "         aspect_ratio: 1.0                           \n"
        "num_upsampling_layers: normal                        \n"
        "----------------- End -------------------\n"
    )
    opts = convert.normalize_options(convert.read_options_file(str(path)))
    assert opts["label_nc"] == 150 and opts["contain_dontcare_label"] and opts["no_instance"]
    assert opts["semantic_nc"] == 151 and opts["aspect_ratio"] == 1.0


def test_json_with_sections_needs_a_section():
    path = os.path.join(FIXTURES, "config.json")
    with pytest.raises(ValueError, match="A_G_D_vae, A_novae"):
        convert.read_options_file(path)
    assert convert.read_options_file(path, "A_novae")["use_vae"] is False


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        convert.load_state_dict(str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="latest_net_G.pth"):
        convert.find_official_files(str(tmp_path))


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "convert.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_command_round_trip(tmp_path):
    ckpt = tmp_path / "label2coco"
    ckpt.mkdir()
    for net, name in (("G", "state_G"), ("D", "state_D"), ("E", "state_E")):
        np.savez(ckpt / f"latest_net_{net}.npz", **fixture(name))
    (ckpt / "opt.json").write_text(json.dumps(fixture_config("A_G_D_vae")))
    bundle_path = str(tmp_path / "model.keras")
    result = _run("--checkpoint_dir", str(ckpt), "--options", str(ckpt / "opt.json"), "--output", bundle_path)
    assert result.returncode == 0, result.stderr[-3000:]

    bundle = load_bundle(bundle_path)
    assert bundle.options["label_nc"] == 7 and bundle.options["semantic_nc"] == 9
    inputs = fixture("inputs")
    y = bundle.generator(nhwc(inputs["semantics"]), inputs["z"])
    np.testing.assert_allclose(y.numpy(), nhwc(fixture("outputs_eval")["G_vae"]), atol=1e-4)

    back = tmp_path / "back"
    result = _run("--to_official", "--bundle", bundle_path, "--output", str(back))
    assert result.returncode == 0, result.stderr[-3000:]
    for net, name in (("G", "state_G"), ("D", "state_D"), ("E", "state_E")):
        _assert_state_dicts_equal(convert.load_state_dict(str(back / f"latest_net_{net}.npz")), fixture(name))
    opts = json.loads((back / "opt.json").read_text())
    assert opts["label_nc"] == 7 and opts["use_vae"] is True


def test_command_reports_mismatch_without_traceback_noise(tmp_path):
    np.savez(tmp_path / "g.npz", **fixture("state_G"))
    result = _run(
        "--generator", str(tmp_path / "g.npz"), "--dataset", "ade20k", "--output", str(tmp_path / "x.keras")
    )
    assert result.returncode != 0
    assert "expected shape (1024, 151, 3, 3)" in result.stderr or "fc.weight" in result.stderr
    assert not (tmp_path / "x.keras").exists()


@pytest.mark.torch
def test_pth_files_in_both_directions(tmp_path):
    torch = require_torch()
    state = fixture("state_G")
    path = str(tmp_path / "latest_net_G.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    loaded = convert.load_state_dict(path)
    _assert_state_dicts_equal(loaded, state)
    out = str(tmp_path / "back.pth")
    g = convert.generator_from_official(loaded, fixture_config("A_G_D_vae"))
    convert.save_state_dict(convert.generator_to_official(g), out)
    back = torch.load(out, weights_only=True)
    assert back["head_0.norm_0.param_free_norm.num_batches_tracked"].dtype == torch.int64
    _assert_state_dicts_equal({k: v.numpy() for k, v in back.items()}, state)
