"""Figures and the self-contained HTML report of `opgan evaluate`.

Figures (PNG): per example clip, waveform and log-spectrogram of clean / corrupted / restored;
SDR-in vs SDR-out and SI-SDR-in vs SI-SDR-out scatter; per-case and per-input-SDR bars for every
method with the identity and silent-floor rows drawn hatched. The HTML embeds the figures and a few
examples' audio as base64, so the one file can be mailed or archived.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_figures", "write_html", "wav_base64"]

METRIC_LABELS = {
    "sdr_imp": "SDR improvement (dB)",
    "si_sdr_imp": "SI-SDR improvement (dB)",
    "stoi": "STOI",
    "pesq": "PESQ (wide-band)",
    "sdr": "SDR (dB)",
    "si_sdr": "SI-SDR (dB)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(keys: list[str]) -> dict[str, Any]:
    plt = _plt()
    fixed = {"identity": "0.55", "silent": "0.15"}
    cmap = plt.get_cmap("tab10")
    others = [k for k in keys if k not in fixed]
    return {k: fixed.get(k, cmap(others.index(k) % 10) if k in others else "0.5") for k in keys}


def _log_spec(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import stft

    nfft = 1 << int(round(math.log2(0.032 * sr)))
    f, t, z = stft(x, fs=sr, nperseg=nfft, noverlap=nfft * 3 // 4)
    return f, t, 20 * np.log10(np.abs(z) + 1e-8)


def plot_example(path: Path, ex: dict, restored_key: str, label: str, sr: int, title: str) -> Path:
    """Clean / corrupted / restored: waveform (left) and log-spectrogram (right)."""
    plt = _plt()
    sigs = [("clean", ex["clean"]), ("corrupted", ex["corrupted"]), (f"restored: {label}", ex["outputs"][restored_key])]
    specs = [_log_spec(s, sr) for _, s in sigs]
    vmax = max(float(s[2].max()) for s in specs)
    lim = max(float(np.abs(s).max()) for _, s in sigs) * 1.05 or 1.0
    fig, axes = plt.subplots(3, 2, figsize=(11, 7), gridspec_kw={"width_ratios": [1, 1.2]}, constrained_layout=True)
    t = np.arange(len(ex["clean"])) / sr
    for row, ((name, s), (f, tt, db)) in enumerate(zip(sigs, specs)):
        ax = axes[row, 0]
        ax.plot(t, s, lw=0.5, color=("C2", "C3", "C0")[row])
        ax.set_ylim(-lim, lim)
        ax.set_xlim(0, t[-1] if len(t) else 1)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax = axes[row, 1]
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 90, vmax=vmax,
                       extent=(0, len(s) / sr, 0, f[-1] / 1000), interpolation="nearest")
        ax.set_ylabel("kHz")
    axes[2, 0].set_xlabel("time (s)")
    axes[2, 1].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[:, 1], label="dB", shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_scatter(path: Path, rows: list[dict], labels: dict[str, str]) -> Path:
    """Input vs output SDR and SI-SDR per clip, one colour per method; y = x is 'no change'."""
    plt = _plt()
    colors = _colors(list(labels))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
    for ax, (xin, xout, name) in zip(axes, [("sdr_in", "sdr", "SDR"), ("si_sdr_in", "si_sdr", "SI-SDR")]):
        lo, hi = math.inf, -math.inf
        for key, label in labels.items():
            pts = np.array([(r[xin], r[xout]) for r in rows if r["method"] == key], dtype=float).reshape(-1, 2)
            ok = np.isfinite(pts).all(axis=1)
            lab = label if ok.all() else f"{label} ({(~ok).sum()} at -inf, not drawn)"
            if ok.any():
                lo = min(lo, pts[ok].min())
                hi = max(hi, pts[ok].max())
            marker = "x" if key in ("identity", "silent") else "o"
            ax.scatter(pts[ok, 0], pts[ok, 1], s=14, alpha=0.75, color=colors[key], marker=marker, label=lab)
        if math.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"input {name} (dB)")
        ax.set_ylabel(f"output {name} (dB)")
        ax.set_title(f"{name}: input vs output per clip")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_bars(path: Path, table: dict, labels: dict[str, str], metrics: list[str], title: str) -> Path:
    """Grouped bars: groups (cases or input-SDR bins) x methods, one panel per metric."""
    plt = _plt()
    colors = _colors(list(labels))
    keys = list(labels)
    groups = list(table[keys[0]].keys())
    ncol = 2 if len(metrics) > 1 else 1
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7 * ncol, 3.8 * nrow), squeeze=False, constrained_layout=True)
    width = 0.8 / len(keys)
    xs = np.arange(len(groups))
    for ax, metric in zip(axes.flat, metrics):
        vals = np.array([[table[k].get(g, {}).get(metric, math.nan) for g in groups] for k in keys], dtype=float)
        finite = vals[np.isfinite(vals)]
        floor = min(0.0, float(finite.min()) if finite.size else 0.0)
        span = (float(finite.max()) if finite.size else 1.0) - floor or 1.0
        bottom = floor - 0.08 * span
        for j, k in enumerate(keys):
            v = vals[j]
            draw = np.where(np.isneginf(v), bottom, v)
            bars = ax.bar(xs + (j - (len(keys) - 1) / 2) * width, np.nan_to_num(draw, nan=0.0), width,
                          color=colors[k], label=labels[k], hatch="//" if k in ("identity", "silent") else None,
                          edgecolor="white" if k not in ("identity", "silent") else "0.3", linewidth=0.4)
            for b, val in zip(bars, v):
                if np.isneginf(val):
                    ax.text(b.get_x() + b.get_width() / 2, bottom + 0.02 * span, "-inf", ha="center",
                            va="bottom", fontsize=7, rotation=90, color="white", fontweight="bold")
        ax.set_ylim(bottom, None)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(xs, [f"{g}\n(n={table[keys[0]].get(g, {}).get('n', 0)})" for g in groups])
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def make_figures(folder: Path, rows: list[dict], summary: dict, examples: dict[str, dict], sr: int) -> list[Path]:
    """Write every figure into `folder`; returns their paths in report order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = summary["methods"]
    metrics = ["sdr_imp", "si_sdr_imp", "stoi"] + (["pesq"] if summary.get("pesq") else [])
    if not summary.get("stoi", True):
        metrics.remove("stoi")
    figs = [
        plot_bars(folder / "bars_by_case.png", summary["by_case"], labels, metrics,
                  "Mean per case (hatched: unprocessed input and all-zero output)"),
        plot_bars(folder / "bars_by_input_sdr.png", summary["by_input_sdr"], labels, ["sdr_imp", "si_sdr_imp"],
                  "Mean per input-SDR bin"),
        plot_scatter(folder / "scatter_sdr.png", rows, labels),
    ]
    model_key = next(k for k in labels if k not in summary.get("reference_methods", []))
    for cid, ex in examples.items():
        out = ex["outputs"][model_key]
        from .metrics import sdr, si_sdr

        title = (f"{cid} ({ex['case']}): input SDR {ex['sdr_in']:.1f} dB -> {labels[model_key]} "
                 f"SDR {sdr(out, ex['clean']):.1f} dB, SI-SDR {si_sdr(out, ex['clean']) if np.any(out) else -math.inf:.1f} dB")
        figs.append(plot_example(folder / f"example_{_safe_name(cid)}.png", ex, model_key, labels[model_key], sr, title))
    return figs


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


# ------------------------------------------------------------------------------------------ HTML


def wav_base64(x: np.ndarray, sr: int) -> str:
    """16-bit PCM WAV bytes of x (peak-limited to full scale), base64-encoded for a data: URI."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(x, np.float32), -1, 1), sr, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _cell(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "&ndash;"
    if isinstance(v, float) and math.isinf(v):
        return "&minus;&infin;" if v < 0 else "&infin;"
    return f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v))


def _table(table: dict, labels: dict[str, str], metric: str, refs: list[str]) -> str:
    groups = list(next(iter(table.values())).keys())
    head = "".join(f"<th>{html.escape(g)}</th>" for g in groups)
    body = []
    for k, label in labels.items():
        cls = ' class="ref"' if k in refs else ""
        cells = "".join(f"<td>{_cell(table[k].get(g, {}).get(metric))}</td>" for g in groups)
        body.append(f"<tr{cls}><th>{html.escape(label)}</th>{cells}</tr>")
    ns = "".join(f"<td>{table[next(iter(labels))].get(g, {}).get('n', 0)}</td>" for g in groups)
    return (f"<table><caption>{html.escape(METRIC_LABELS.get(metric, metric))}</caption>"
            f"<tr><th>method</th>{head}</tr>{''.join(body)}<tr class=\"n\"><th>clips</th>{ns}</tr></table>")


def write_html(path: Path, summary: dict, figures: list[Path], examples: dict[str, dict], sr: int) -> Path:
    """One self-contained page: tables, figures (base64 PNG), audio players (base64 WAV)."""
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    metrics = ["sdr_imp", "si_sdr_imp", "sdr", "si_sdr"] + (["stoi"] if summary.get("stoi", True) else []) \
        + (["pesq"] if summary.get("pesq") else [])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Op-GAN evaluation</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}",
        "th:first-child{text-align:left}tr.ref{color:#666;font-style:italic}tr.n{color:#888}caption{font-weight:bold;text-align:left}",
        ".note{background:#fff6e0;border-left:4px solid #e0a000;padding:.6em 1em}img{max-width:100%}",
        ".ex{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:.5em}audio{width:100%}",
        "</style></head><body>",
        "<h1>Op-GAN restoration: evaluation report</h1>",
        f"<p>Data <code>{html.escape(summary['data'])}</code> (split {html.escape(summary['split'])}), "
        f"{summary['n_clips']} of {summary['clips_in_set']} clips at {summary['sample_rate']} Hz ({summary['kind']}); "
        f"model <code>{html.escape(summary['model'])}</code>.</p>",
        f"<p class='note'>{html.escape(summary['note'])}</p>",
    ]
    if summary.get("skipped_baselines"):
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in summary["skipped_baselines"].items())
        parts.append(f"<p>Skipped baselines:</p><ul>{items}</ul>")
    parts.append("<h2>By corruption case</h2>")
    parts += [_table(summary["by_case"], labels, m, refs) for m in metrics]
    parts.append("<h2>By input SDR</h2>")
    parts += [_table(summary["by_input_sdr"], labels, m, refs) for m in ("sdr_imp", "si_sdr_imp")]
    if summary.get("rtf"):
        cells = "".join(f"<tr><th>{html.escape(labels.get(k, k))}</th><td>{v:.4f}</td></tr>"
                        for k, v in summary["rtf"].items() if k not in refs)
        parts.append(f"<table><caption>Real-time factor (processing time / audio time)</caption>{cells}</table>")
    parts.append("<h2>Figures</h2>")
    for f in figures:
        parts.append(f"<p><img alt='{html.escape(Path(f).name)}' src='data:image/png;base64,{_png_base64(f)}'></p>")
    if examples:
        parts.append("<h2>Listen</h2>")
        for cid, ex in examples.items():
            parts.append(f"<h3>{html.escape(cid)} ({html.escape(ex['case'])}, input SDR {ex['sdr_in']:.1f} dB)</h3><div class='ex'>")
            players = [("clean", ex["clean"]), ("corrupted", ex["corrupted"])]
            players += [(labels[k], v) for k, v in ex["outputs"].items() if k not in ("identity", "silent")]
            for name, sig in players:
                parts.append(f"<div>{html.escape(name)}<br><audio controls preload='none' "
                             f"src='data:audio/wav;base64,{wav_base64(sig, sr)}'></audio></div>")
            parts.append("</div>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts))
    return path
