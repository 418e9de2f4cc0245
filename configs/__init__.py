"""The bundled training configs, one per dataset: `get_config(arg)` -> ConfigDict, `arg="small"` for a quick run.

`--config=<name>[:small]` finds them by name; `--config=configs/<name>.py[:small]` by path in a clone. pyproject.toml
installs this folder as `spade_tf.configs`.
"""
