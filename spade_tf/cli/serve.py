"""spade-serve: serves an exported SPADE model over HTTP: TF Serving's REST API and the paint-a-scene page.

    spade-serve --model exports/demo                        # then open http://127.0.0.1:8501/
    spade-serve --model exports/demo --host 0.0.0.0 --port 8080 --max_concurrent 4

From a clone, `python serve.py` is the same command. `--model` is an export folder written by spade-export
(TF Serving's model base path). The endpoints, the limits and the error answers are described in
spade_tf/serving/server.py; this is GauGAN's demo and a test double for TF Serving, not a production server
(deploy with TF Serving and the export's models.config; see the README).
"""

import logging
import sys

from absl import app, flags

from spade_tf import cli
from spade_tf.serving import export_lib, server

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "Export folder (holding 1/, 2/, ... and metadata.json).")
    flags.DEFINE_integer("version", None, "Version to serve (default: the highest).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    flags.DEFINE_integer("port", server.DEFAULT_PORT, "Port (TF Serving's REST port is 8501).")
    flags.DEFINE_string("model_name", server.DEFAULT_MODEL_NAME, "The <name> in /v1/models/<name>.")
    flags.DEFINE_integer("max_body_bytes", server.DEFAULT_MAX_BODY_BYTES, "Larger request bodies get 413.")
    flags.DEFINE_integer("max_concurrent", 2, "Predictions running at once.")
    flags.DEFINE_integer("max_queue", 8, "Predictions waiting; more get 503 at once.")
    flags.DEFINE_float("queue_timeout_s", 30.0, "Longest wait in the queue (then 503).")
    flags.DEFINE_integer(
        "max_maps",
        None,
        "Most label maps per request, else 413 (default: the export's, metadata.json limits).",
    )
    flags.DEFINE_integer(
        "max_pixels",
        None,
        "Most label pixels per request (N x H x W, from the PNG headers before decoding), else 413; memory "
        "grows with it (README, 'Export and serving'). Default: the export's (metadata.json limits).",
    )
    flags.DEFINE_integer(
        "max_style_pixels", None, "Most style-image pixels per request, else 413 (default: the export's)."
    )
    flags.mark_flag_as_required("model")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # The request log and the start-up lines go to stderr with a time stamp, as the standard library's
    # HTTP server writes them.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        httpd = server.make_server(
            FLAGS.model,
            host=FLAGS.host,
            port=FLAGS.port,
            model_name=FLAGS.model_name,
            version=FLAGS.version,
            max_body_bytes=FLAGS.max_body_bytes,
            max_concurrent=FLAGS.max_concurrent,
            max_queue=FLAGS.max_queue,
            queue_timeout_s=FLAGS.queue_timeout_s,
            max_maps=FLAGS.max_maps,
            max_pixels=FLAGS.max_pixels,
            max_style_pixels=FLAGS.max_style_pixels,
        )
    except (FileNotFoundError, ValueError) as e:
        cli.fail(e)
    except OSError as e:
        cli.fail(f"cannot listen on {FLAGS.host}:{FLAGS.port}: {e.strerror or e}")
    servable = httpd.servable
    logging.info(
        "serving %s version %d as '%s' (signatures: %s)",
        servable.export_dir,
        servable.version,
        servable.name,
        ", ".join(sorted(servable.signatures)),
    )
    limits = servable.limits
    logging.info(
        "limits per request: %d label maps, %d label pixels, %d style pixels (export's: %s)",
        limits.max_maps,
        limits.max_pixels,
        limits.max_style_pixels,
        servable.export_limits,
    )
    license_ = export_lib.read_metadata(servable.export_dir).get("license") or {}
    if license_:
        logging.info("weights license: %s (%s)", license_.get("name"), license_.get("reason", ""))
    logging.info("painter: %s/   predict: %s/v1/models/%s:predict", httpd.url, httpd.url, servable.name)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
