"""TF Serving's model config file (`models.config`) for an export folder: model name, base path, versions.

TF Serving reads it with `--model_config_file=/models/spade/models.config` instead of `--model_name` /
`--model_base_path`, which serve only the newest version. The file is the text format of
`tensorflow.serving.ModelServerConfig` (tensorflow_serving/config/model_server_config.proto):

    model_config_list {
      config {
        name: "spade"
        base_path: "/models/spade"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 1 } }
      }
    }

Version policies: `latest { num_versions: N }` serves the N highest version folders (TF Serving's default is
1); `specific { versions: 1 versions: 2 }` serves exactly those, e.g. an old and a new model side by side, each
reachable at `/v1/models/<name>/versions/<v>:predict`. The text is written here without
tensorflow-serving-api (an optional extra); tests/serving_config_test.py parses it with its protos.
"""

import os

from spade_tf.serving.server import DEFAULT_MODEL_NAME

CONFIG_FILE = "models.config"
# Where the README's `docker run --mount ...,target=/models/<name>` puts the export inside the container.
CONTAINER_MODELS_DIR = "/models"


def _quoted(text):
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def models_config_text(models):
    """The text of a `ModelServerConfig` serving `models`.

    Args:
        models: a list of dicts, one per model: `name`, `base_path` (the export folder as TF Serving sees
            it: an absolute path, or a gs:// / s3:// URL), and either `versions` (a list of version numbers:
            the `specific` policy) or `latest` (how many of the highest versions: the `latest` policy).

    Returns:
        The file's text.
    """
    lines = ["model_config_list {"]
    for model in models:
        versions = list(model.get("versions") or ())
        if versions:
            policy = "specific { " + " ".join(f"versions: {int(v)}" for v in sorted(set(versions))) + " }"
        else:
            policy = f"latest {{ num_versions: {int(model.get('latest', 1))} }}"
        lines += [
            "  config {",
            f"    name: {_quoted(model['name'])}",
            f"    base_path: {_quoted(model['base_path'])}",
            '    model_platform: "tensorflow"',
            f"    model_version_policy {{ {policy} }}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_policy(versions, latest, available):
    """ValueError unless the policy is valid for an export holding the `available` version numbers."""
    if versions:
        bad = [v for v in versions if not isinstance(v, int) or v < 1]
        if bad:
            raise ValueError(f"serving versions {bad}: use positive version numbers.")
        missing = sorted(set(versions) - set(available))
        if missing:
            raise ValueError(
                f"serving versions {missing} are not in the export (it has {sorted(available)}); export them "
                "first (--version) or list only those."
            )
    elif not isinstance(latest, int) or latest < 1:
        raise ValueError(f"serving the latest {latest!r} versions: use a positive number.")


def write_models_config(export_dir, name=DEFAULT_MODEL_NAME, base_path=None, versions=None, latest=1):
    """Writes `<export_dir>/models.config` for the one model in `export_dir`.

    Args:
        export_dir: the export folder (TF Serving's model base path, holding 1/, 2/, ...).
        name: the model's name, the <name> of `/v1/models/<name>`.
        base_path: the export folder as TF Serving sees it (default `/models/<name>`, the README's Docker
            mount); pass the absolute path for a TF Serving running on this machine.
        versions: version numbers to serve (the `specific` policy); None or empty for `latest`.
        latest: with no `versions`: how many of the highest versions to serve.

    Returns:
        The file path.
    """
    available = [
        int(d) for d in os.listdir(export_dir) if d.isdigit() and os.path.isdir(os.path.join(export_dir, d))
    ]
    versions = [int(v) for v in versions or ()]
    check_policy(versions, latest, available)
    text = models_config_text(
        [
            {
                "name": name,
                "base_path": base_path or f"{CONTAINER_MODELS_DIR}/{name}",
                "versions": versions,
                "latest": latest,
            }
        ]
    )
    path = os.path.join(export_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
