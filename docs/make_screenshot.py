"""Writes docs/painter.png: the painter page of a model in a browser page of 1280x800 pixels.

    python docs/make_screenshot.py --model workdirs/demo                  # export to a temporary folder first
    python docs/make_screenshot.py --export exports/demo                  # an export made by export.py
    python docs/make_screenshot.py --model workdirs/demo --output /tmp/painter.png --window 1280x800

Needs the dev requirements (selenium) and Debian's chromium and chromium-driver, as the painter's browser test
(tests/painter_browser_test.py, whose browser helpers this uses). The page opens on the export's first example
scene with its first style exemplar (export.py writes them when the model's dataset is on this machine); the
screenshot is taken once the synthesized image and every thumbnail are shown.
"""

import os
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A training workdir or .keras bundle: exported (SavedModel + examples) first."
)
flags.DEFINE_string("export", None, "An export folder written by export.py (instead of --model).")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "painter.png"), "The PNG to write.")
flags.DEFINE_string("window", "1280x800", "The page's size (the browser's viewport), WIDTHxHEIGHT pixels.")


def screenshot(export_dir, output, window):
    """Serves `export_dir`, opens the painter in headless chromium at `window` (w, h) and saves `output`."""
    from spade_tf.serving import server as serve
    from tests.painter_browser_test import chromium, open_page, wait_for, wait_idle
    from tests.serve_test import running

    with running(serve.make_server(export_dir, port=0)) as server, chromium(window) as driver:
        # --window-size counts the browser's own bars: grow the window until the page gets `window`.
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        outer = driver.get_window_size()
        driver.set_window_size(outer["width"] + window[0] - inner[0], outer["height"] + window[1] - inner[1])
        open_page(driver, server.url + "/")
        wait_idle(driver)
        wait_for(driver, "return [...document.images].every((i) => i.complete)", "the thumbnails")
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        driver.save_screenshot(output)
        return driver.execute_script("return document.getElementById('status').textContent")


def main(argv):
    del argv
    if bool(FLAGS.model) == bool(FLAGS.export):
        raise app.UsageError("give --model or --export")
    try:
        window = tuple(int(v) for v in FLAGS.window.lower().split("x"))
        assert len(window) == 2
    except (ValueError, AssertionError):
        raise app.UsageError(f"--window={FLAGS.window}: use WIDTHxHEIGHT, e.g. 1280x800") from None
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = FLAGS.export
        if FLAGS.model:
            from spade_tf.serving import export_lib
            from spade_tf.serving.inference import load_synthesizer

            synthesizer = load_synthesizer(FLAGS.model)
            export_dir = os.path.join(tmp, "export")
            export_lib.export_saved_model(synthesizer, export_dir)
            print(export_lib.examples_summary(export_lib.export_examples(synthesizer, export_dir)))
        status = screenshot(export_dir, FLAGS.output, window)
    print(f"wrote {FLAGS.output} (the page's status line: {status})")


if __name__ == "__main__":
    app.run(main)
