"""The command-line programs: each module is one command's flags and `main`, run by `run_command`.

Every command has three equal entry points: the console command pyproject.toml installs (`spade-train`), the
repository's top-level script (`python train.py`, a thin wrapper kept for clones) and `python -m
spade_tf.cli.train`. This module holds what they share:

- `run_command`: `--help` (and `-h`, `--helpshort`, `--helpfull`) prints the command's description and flags
  and exits 0 (absl's own help exits 1); a bundled config name (`--config=demo:small`) becomes its file before
  ml_collections reads it; a mistyped `--config.a.b` override is one line; a usage error is one line.
- `program`: the name the user typed (`spade-train` or `train.py`), which starts every error line.
- `fail`: exits with one `<program>: error: <message>` line and no traceback.
- `define_dataset_flag`: `--dataset` with one spelling of each dataset (`coco` is taken as `coco_stuff`).
"""

import os
import sys

# Before TensorFlow is imported by a command module: C++ INFO and WARNING lines hide the program's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from spade_tf.config import check_command_line, config_names, resolve_config_spec  # noqa: E402
from spade_tf.data.layouts import DATASET_ALIASES, canonical_dataset  # noqa: E402

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


def config_help():
    """The help line of `--config` (the bundled names are listed from the configs folder)."""
    return (
        f"A bundled config ({', '.join(config_names())}) or a config file's path, with an optional variant: "
        "demo:small, ade20k:small, configs/demo.py:small. Override any value with --config.<section>.<key>=..."
    )


def program():
    """The command's name as typed: `spade-train` (console command), `train.py` (a clone's script)."""
    return os.path.basename(sys.argv[0] or "") or "spade_tf"


def fail(message):
    """Exits with status 1 and one line, `<program>: error: <message>`: what every command does on bad input."""
    sys.exit(f"{program()}: error: {message}")


class _DatasetParser(flags.EnumParser):
    """An enum of dataset names that also takes their other spellings (DATASET_ALIASES) and maps them."""

    def parse(self, argument):
        return super().parse(canonical_dataset(argument))


def define_dataset_flag(choices, help_string, name="dataset", default=None):
    """`--dataset` taking one of `choices` (canonical names); `coco` is accepted and becomes `coco_stuff`."""
    aliases = [f"{a} = {b}" for a, b in DATASET_ALIASES.items() if b in choices]
    help_string = (
        f"<{'|'.join(choices)}>: {help_string}" + (f" ({'; '.join(aliases)})" if aliases else "") + "."
    )
    # Filed under the calling command's module, so that its --help lists the flag (absl lists a module's own).
    caller = sys._getframe(1).f_globals.get("__name__")
    return flags.DEFINE(
        _DatasetParser(list(choices)),
        name,
        default,
        help_string,
        serializer=flags.ArgumentSerializer(),
        module_name=sys.argv[0] if caller == "__main__" else caller,
    )


def _print_help(module, full):
    # The command's docstring, then its own flags (and those it adopted, e.g. the segmenter's); --helpfull
    # adds every flag of every module (absl's, TensorFlow's).
    print((module.__doc__ or f"USAGE: {program()} [flags]").strip())
    print(f"\nflags ({program()}):")
    # absl files the flags of a module run as __main__ (`python -m`) under sys.argv[0].
    print(flags.FLAGS.module_help(sys.argv[0] if module.__name__ == "__main__" else module.__name__))
    if full:
        print("\nall flags:")
        print(flags.FLAGS.get_help())
    else:
        print("\nTry --helpfull to list every flag, absl's included.")


def _resolve_config_args(args):
    """`--config=demo:small` -> `--config=<bundled configs>/demo.py:small`; other arguments as they are."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve_config_spec(arg.split("=", 1)[1])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config_spec(out[i + 1])
    return out


def run_command(module, main, define_flags, default_config=None):
    """Runs one command: defines its flags, handles help and config names, then absl's `app.run(main)`.

    Args:
        module: the command's module (its docstring is the help text; its flags are listed).
        main: `main(argv)`, absl style.
        define_flags: defines the command's flags (called once, here, so that importing a command module
            defines nothing: two commands' flags never collide in one process).
        default_config: for commands that take `--config` (a bundled name or a path), its default; the
            command line's config and overrides are checked before ml_collections parses them.
    """
    args = sys.argv[1:]
    head = args[: args.index("--")] if "--" in args else args
    wants_help = [a for a in head if a in HELP_FLAGS]
    if wants_help:
        define_flags()
        _print_help(module, full="--helpfull" in wants_help)
        sys.exit(0)
    if default_config is not None:
        try:
            args = _resolve_config_args(args)
            check_command_line(args, resolve_config_spec(default_config))
        except (ValueError, FileNotFoundError) as e:
            fail(e)
    # Defined after the check above: ml_collections reads the --config.* overrides when the flag is defined
    # and fails there with a traceback.
    define_flags()

    def checked_main(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            fail(f"{e} (--help lists the flags)")

    app.run(checked_main, argv=[sys.argv[0], *args])
