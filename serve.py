"""Serves an export: TF Serving's REST API and the painter page (the `spade-serve` command).

    python serve.py --model exports/demo          # http://127.0.0.1:8501/

A thin wrapper kept for clones: the command lives in spade_tf/cli/serve.py (`--help` lists its flags).
"""

from spade_tf.cli import serve

if __name__ == "__main__":
    serve.run()
