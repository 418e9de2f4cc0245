"""The benchmark run: what it measures (`Settings`), and every phase, each in its own process, into one
report (schema in the package docstring, spade_tf/tools/benchmark/__init__.py)."""

import dataclasses
import os
import platform

import keras
import tensorflow as tf

from spade_tf.models import conv
from spade_tf.tools.benchmark.child import run_phase
from spade_tf.tools.benchmark.configs import model_summary
from spade_tf.tools.benchmark.flops import model_flops, reference_case, reference_gflop

SCHEMA_VERSION = 1
VARIANTS = ("float32", "bfloat16", "xla", "xla_bfloat16")
PHASES = ("matmul", "forward", "train")
MEASUREMENT_KEYS = (
    "phase",
    "variant",
    "batch",
    "device",
    "median_s",
    "min_s",
    "max_s",
    "runs",
    "first_call_s",
    "times_s",
    "images_per_s",
    "gflop",
    "gflops_per_s",
    "reference_gflop",
    "effective_gflops_per_s",
    "rss_peak_mb",
    "rss_import_mb",
    "gpu_peak_mb",
)


@dataclasses.dataclass
class Settings:
    """What `run_benchmark` measures.

    Args:
        batch: the larger forward batch (also timed at 1; 1 = batch 1 only).
        train_batch: the training step's global batch.
        warmup: untimed calls before each timing (at least 1).
        runs: timed calls (report the median; at least 5 for numbers you quote).
        variants: subset of VARIANTS, or None: float32, bfloat16, xla on a GPU, float32 on a CPU.
        phases: subset of PHASES.
        matmul_size: N of the matmul check (0: 4096 on a GPU, 2048 on a CPU).
        tf32: allow TensorFloat-32 on GPUs (TensorFlow's default).
        saved_model: a SavedModel folder to time, or "".
        signature: its signature key.
        tflite: .tflite files to time.
        seed: random weights and inputs.
    """

    batch: int = 4
    train_batch: int = 1
    warmup: int = 2
    runs: int = 5
    variants: tuple | None = None
    phases: tuple = PHASES
    matmul_size: int = 0
    tf32: bool = True
    saved_model: str = ""
    signature: str = "serving_default"
    tflite: tuple = ()
    seed: int = 0

    def check(self):
        for name in ("batch", "train_batch", "warmup", "runs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1.")
        for variant in self.variants or ():
            if variant not in VARIANTS:
                raise ValueError(f"variant {variant!r} is not known; choose from: {', '.join(VARIANTS)}.")
        for phase in self.phases:
            if phase not in PHASES:
                raise ValueError(f"phase {phase!r} is not known; choose from: {', '.join(PHASES)}.")
        if self.matmul_size < 0:
            raise ValueError(f"matmul_size={self.matmul_size}: must be positive (or 0 for the default).")
        if self.saved_model and not os.path.isfile(os.path.join(self.saved_model, "saved_model.pb")):
            raise ValueError(f"saved_model={self.saved_model!r}: no saved_model.pb in that folder.")
        for path in self.tflite:
            if not os.path.isfile(path):
                raise ValueError(f"tflite file {path!r} does not exist.")
        return self


def environment():
    """Where the numbers come from: devices, versions, thread settings."""
    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return dict(
        device=gpu_names[0] if gpu_names else f"CPU ({cpu})",
        cpu=cpu,
        gpus=gpu_names,
        cpu_count=os.cpu_count(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        python=platform.python_version(),
        tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        conv_gradients=conv.conv_gradients(),
    )


def _record(phase, variant, batch, timing, gflop, reference, child, device, **extra):
    median = timing["median_s"]
    return dict(
        phase=phase,
        variant=variant,
        batch=batch,
        device=device,
        median_s=median,
        min_s=timing["min_s"],
        max_s=timing["max_s"],
        runs=timing["runs"],
        first_call_s=timing["first_call_s"],
        times_s=timing["times_s"],
        images_per_s=batch / median if batch else None,
        gflop=gflop,
        gflops_per_s=gflop / median if gflop else None,
        reference_gflop=reference,
        effective_gflops_per_s=reference / median if reference else None,
        rss_peak_mb=child["rss_peak_mb"],
        rss_import_mb=child["rss_import_mb"],
        gpu_peak_mb=child["gpu_peak_mb"],
        **extra,
    )


def run_benchmark(config, resolution, settings, source="", out=print):
    """Runs every phase in its own child process and returns the report (JSON schema: the package docstring).

    Args:
        config: the ConfigDict from `resolve_config`.
        resolution: (height, width) from `resolve_config`.
        settings: a `Settings`.
        source: where the config came from, for the report.
        out: progress printer.
    """
    settings.check()
    height, width = resolution
    gpu = bool(tf.config.list_physical_devices("GPU"))
    device = "gpu" if gpu else "cpu"
    variants = tuple(settings.variants or (("float32", "bfloat16", "xla") if gpu else ("float32",)))
    summary = dict(model_summary(config), source=source)
    base = dict(config=config.to_dict(), height=height, width=width, tf32=settings.tf32, seed=settings.seed)
    timing = dict(warmup=settings.warmup, runs=settings.runs)
    forward_batches = sorted({1, settings.batch})
    report = dict(
        schema_version=SCHEMA_VERSION,
        config=summary,
        environment=environment(),
        settings=dict(
            dataclasses.asdict(settings),
            variants=list(variants),
            matmul_size=settings.matmul_size or (4096 if gpu else 2048),
            tf32=settings.tf32 if gpu else None,
        ),
        reference=dict(
            case=reference_case(summary)[0],
            generator_forward_gflop_per_image=reference_gflop(summary, "generator_forward", 1),
            train_step_gflop_batch_1=reference_gflop(summary, "train_step", 1),
        ),
        flops={},
        measurements=[],
        not_run=[],
    )
    if not gpu:
        for variant in ("bfloat16", "xla"):
            if variant not in variants:
                report["not_run"].append(dict(variant=variant, reason="no GPU (on a CPU only float32 runs)"))

    for batch in forward_batches:
        counted = model_flops(summary, batch, settings.train_batch)
        report["flops"][f"generator_forward_batch_{batch}"] = counted["generator_forward"]
    report["flops"].update({k: v for k, v in counted.items() if k.startswith("train_")})
    flops = report["flops"]

    if "matmul" in settings.phases:
        size = report["settings"]["matmul_size"]
        out(f"matmul {size}x{size} float32 ...")
        child = run_phase(dict(base, phase="matmul", size=size, chain=10 if gpu else 1, **timing))
        report["measurements"].append(
            _record(
                "matmul", "float32", None, child["timing"], child["gflop"], None, child, device, size=size
            )
        )
    per_image = flops["generator_forward_batch_1"]["gflop"]
    for variant in variants:
        if "forward" in settings.phases:
            for batch in forward_batches:
                out(f"generator forward, {variant}, batch {batch} ...")
                child = run_phase(dict(base, phase="forward", variant=variant, batch=batch, **timing))
                f = flops[f"generator_forward_batch_{batch}"]
                report["measurements"].append(
                    _record(
                        "generator_forward",
                        variant,
                        batch,
                        child["timing"],
                        f["gflop"],
                        f["reference_gflop"],
                        child,
                        device,
                    )
                )
        if "train" in settings.phases:
            batch = settings.train_batch
            out(f"training step, {variant}, batch {batch} ...")
            child = run_phase(dict(base, phase="train", variant=variant, batch=batch, **timing))
            for key, name in (("G", "train_G_step"), ("D", "train_D_step"), ("step", "train_step")):
                f = flops[name]
                report["measurements"].append(
                    _record(name, variant, batch, child[key], f["gflop"], f["reference_gflop"], child, device)
                )
    artifact = dict(base, num_label_ids=summary["num_label_ids"], batches=forward_batches, **timing)
    if settings.saved_model:
        out(f"SavedModel {settings.saved_model} ...")
        child = run_phase(
            dict(artifact, phase="saved_model", path=settings.saved_model, signature=settings.signature)
        )
        for batch in forward_batches:
            report["measurements"].append(
                _artifact_record(
                    "saved_model",
                    settings.saved_model,
                    batch,
                    child,
                    summary,
                    height,
                    width,
                    device,
                    per_image,
                )
            )
    for path in settings.tflite:
        out(f"TFLite {path} ...")
        child = run_phase(dict(artifact, phase="tflite", path=path))
        for batch in forward_batches:
            if str(batch) in child:
                report["measurements"].append(
                    _artifact_record(
                        "tflite",
                        path,
                        batch,
                        child,
                        summary,
                        child["height"],
                        child["width"],
                        "cpu",
                        per_image,
                    )
                )
            else:
                report["not_run"].append(
                    dict(
                        phase="tflite",
                        variant=os.path.basename(path),
                        batch=batch,
                        reason="the file's batch is fixed",
                    )
                )
    return report


def _artifact_record(phase, path, batch, child, summary, height, width, device, gflop_per_image):
    # The config's generator count applies when the artifact has the config's resolution: the
    # artifact is then taken to be exported from this config (the report says which file it was).
    same = (height, width) == (summary["height"], summary["width"])
    timing = child[str(batch)]
    return _record(
        phase,
        os.path.basename(os.path.normpath(path)),
        batch,
        timing,
        gflop_per_image * batch if same and gflop_per_image else None,
        reference_gflop(summary, "generator_forward", batch) if same else None,
        child,
        device,
        artifact=path,
        height=height,
        width=width,
        outputs=timing["outputs"],
    )
