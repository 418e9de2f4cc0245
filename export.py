"""Exports a model for serving: SavedModel, TFLite, models.config, MODEL_CARD.md (the `spade-export` command).

    python export.py --model workdirs/demo --export_dir exports/spade

A thin wrapper kept for clones: the command lives in spade_tf/cli/export.py (`--help` lists its flags).
"""

from spade_tf.cli import export

if __name__ == "__main__":
    export.run()
