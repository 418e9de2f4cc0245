"""SPADE / GauGAN semantic image synthesis in TensorFlow 2 and Keras 3.

The package is split by role (the README's "Package map" says what each folder holds):
`models` (layers and networks), `data` (the label map, palettes, datasets, tf.data),
`training`, `serving` (inference, synthesis, export, the painter's server), `evaluation`,
`tools` (benchmark, official checkpoint converter, photo labelling) and `cli` (the commands: spade-train, ...).
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

# Module paths from before the split into subpackages, kept so that user code and the README's
# older examples (`from spade_tf import convert`, `spade_tf.preprocessing.make_semantics`, ...)
# keep working. An old path is the new module itself (same classes, same registration), not a copy.
MOVED_MODULES = {
    "spade_tf.ops": "spade_tf.models.ops",
    "spade_tf.normalization": "spade_tf.models.normalization",
    "spade_tf.blocks": "spade_tf.models.blocks",
    "spade_tf.generator": "spade_tf.models.generator",
    "spade_tf.discriminator": "spade_tf.models.discriminator",
    "spade_tf.encoder": "spade_tf.models.encoder",
    "spade_tf.losses": "spade_tf.models.losses",
    "spade_tf.bundle": "spade_tf.models.bundle",
    "spade_tf.preprocessing": "spade_tf.data.semantics",
    "spade_tf.config": "spade_tf.config",
    "spade_tf.trainer": "spade_tf.training.trainer",
    "spade_tf.train_lib": "spade_tf.training.train_lib",
    "spade_tf.gallery": "spade_tf.serving.gallery",
    "spade_tf.inference": "spade_tf.serving.inference",
    "spade_tf.synthesis": "spade_tf.serving.synthesis",
    "spade_tf.export_lib": "spade_tf.serving.export_lib",
    "spade_tf.serve": "spade_tf.serving.server",
    "spade_tf.metrics": "spade_tf.evaluation.metrics",
    "spade_tf.inception": "spade_tf.evaluation.inception",
    "spade_tf.segmenter": "spade_tf.evaluation.segmenter",
    "spade_tf.oracle": "spade_tf.evaluation.oracle",
    "spade_tf.benchmark": "spade_tf.tools.benchmark",
    "spade_tf.convert": "spade_tf.tools.convert",
    "spade_tf.label_photos": "spade_tf.tools.label_photos",
}


# Old module paths that are also commands: `python -m spade_tf.convert` runs the command (spade_tf/cli/).
COMMAND_MODULES = {
    "spade_tf.convert": "spade_tf.cli.convert",
    "spade_tf.benchmark": "spade_tf.cli.benchmark",
    "spade_tf.label_photos": "spade_tf.cli.label_photos",
    "spade_tf.serve": "spade_tf.cli.serve",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new home."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        origin = None
        if fullname in COMMAND_MODULES:
            # runpy makes the origin sys.argv[0]: the command's file, so its messages name it.
            origin = (
                os.path.join(os.path.dirname(__file__), *COMMAND_MODULES[fullname].split(".")[1:]) + ".py"
            )
        return importlib.util.spec_from_loader(fullname, self, origin=origin)

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module):
        pass  # already executed at its new path

    def get_code(self, fullname):
        # Only `python -m <old path>` asks for code (runpy runs it as __main__): a command's old path runs
        # the command module, whose `if __name__ == "__main__"` starts it.
        target = COMMAND_MODULES.get(fullname)
        if target is None:
            raise ImportError(f"{fullname} is a library module ({MOVED_MODULES[fullname]}), not a command.")
        return importlib.util.find_spec(target).loader.get_code(target)


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
