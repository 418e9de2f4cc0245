"""The benchmark's report as a text table and as a JSON file."""

import json
import os


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_report(report):
    """A readable text table of `run_benchmark`'s report."""
    c, env = report["config"], report["environment"]
    lines = [
        f"SPADE benchmark: {c['source'] or c['dataset']} at {c['height']}x{c['width']}, "
        f"{c['semantic_channels']} semantic channels, ngf {c['base_filters']}, "
        f"{c['num_upsampling_layers']} upsampling{', VAE' if c['use_vae'] else ''}",
        f"Device: {env['device']}, {env['cpu_count']} CPU cores; TensorFlow {env['tensorflow']}, "
        f"Keras {env['keras']}; conv gradients {env['conv_gradients']}; median of "
        f"{report['settings']['runs']} runs after {report['settings']['warmup']} warm-up",
        "",
        "FLOPs (GFLOP)                    ours   2xMAC    bias  official  published",
    ]
    for name, f in report["flops"].items():
        lines.append(
            f"  {name:<28} {f['gflop']:>8.2f} {f['mac_gflop']:>8.2f} {f['bias_gflop']:>6.3f} "
            f"{f['official_convention_gflop']:>9.2f} {_fmt(f['reference_gflop'], '>10.1f')}"
        )
    lines += [
        "",
        f"{'phase':<20} {'variant':<16} {'batch':>5} {'median ms':>10} {'min ms':>9} {'max ms':>9} "
        f"{'img/s':>8} {'GFLOP':>9} {'GFLOP/s':>9} {'eff.GFLOP/s':>11} {'RSS MB':>8} {'GPU MB':>8}",
    ]
    for m in report["measurements"]:
        lines.append(
            f"{m['phase']:<20} {m['variant'][:16]:<16} {_fmt(m['batch'], '>5d')} {m['median_s'] * 1e3:>10.1f} "
            f"{m['min_s'] * 1e3:>9.1f} {m['max_s'] * 1e3:>9.1f} {_fmt(m['images_per_s'], '>8.2f')} "
            f"{_fmt(m['gflop'], '>9.2f')} {_fmt(m['gflops_per_s'], '>9.1f')} "
            f"{_fmt(m['effective_gflops_per_s'], '>11.1f')} {m['rss_peak_mb']:>8.0f} "
            f"{_fmt(m['gpu_peak_mb'], '>8.0f')}"
        )
    for skipped in report["not_run"]:
        what = " ".join(str(skipped[k]) for k in ("phase", "variant", "batch") if skipped.get(k) is not None)
        lines.append(f"not run: {what}: {skipped['reason']}")
    if report["settings"]["runs"] < 5:
        lines.append(f"note: {report['settings']['runs']} timed run(s); quote numbers from at least 5.")
    ref = report["reference"]
    if ref["case"]:
        lines.append(
            f"eff.GFLOP/s = the published {ref['case']} count / our time (convolutions only, 2 x multiply-adds)."
        )
    return "\n".join(lines)


def write_report(report, path):
    """Writes `run_benchmark`'s report as indented JSON to `path` (its folder is created)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
