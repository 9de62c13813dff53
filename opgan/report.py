"""Figures and the self-contained HTML report of `opgan evaluate`, and README's before/after figure.

The page opens with its reading: the verdict (decided by SI-SDRi, the rule stated), the best method
per metric and the run's details; then do-no-harm, the tables (best values bold, failed clips counted),
speed, captioned figures, example clips (best / median / worst: a player and a spectrogram for every
method, the corrupted segment marked) and the per-clip table, worst first. Figures and audio are
embedded (base64 PNG / JPEG / FLAC) so the one file can be mailed or archived.

`python -m opgan.report figure --clips ID[,ID...] --out FILE.png` draws shipped quality-gate clips
before and after the shipped model of their kind (corrupted | restored | clean spectrograms, one row
per clip, each titled with its measured SDRi / SI-SDRi / level) and prints the same figures: the
figure in README is made this way, so it can be remade and checked.
"""
from __future__ import annotations

import base64
import html
import json
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Figure", "Figures", "make_figures", "write_html", "audio_base64", "bar_limits", "plot_before_after",
           "main"]

METRIC_LABELS = {
    "sdr_imp": "SDR improvement (dB)",
    "si_sdr_imp": "SI-SDR improvement (dB)",
    "stoi": "STOI",
    "pesq": "PESQ (wide-band)",
    "sdr": "SDR (dB)",
    "si_sdr": "SI-SDR (dB)",
    "level_err_db": "level error (dB)",
}
SHORT = {"sdr_imp": "SDRi", "si_sdr_imp": "SI-SDRi", "stoi": "STOI", "pesq": "PESQ", "sdr": "SDR",
         "si_sdr": "SI-SDR", "level_err_db": "level err"}
REFERENCE_KEYS = ("identity", "silent")
ARTIFACT_COLORS = {"awgn": "#1f77b4", "background": "#2ca02c", "reverb": "#d62728"}


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Figures:
    """The charts (in report order) and, per example clip, one spectrogram strip per signal."""

    charts: list[Figure] = field(default_factory=list)
    spectrograms: dict[str, dict[str, Path]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.charts) + sum(len(v) for v in self.spectrograms.values())


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


# ------------------------------------------------------------------------------------- charts


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
            lab = label if ok.all() else f"{label} ({(~ok).sum()} not finite, not drawn)"
            if ok.any():
                lo = min(lo, pts[ok].min())
                hi = max(hi, pts[ok].max())
            marker = "x" if key in REFERENCE_KEYS else "o"
            ax.scatter(pts[ok, 0], pts[ok, 1], s=14, alpha=0.75, color=colors[key], marker=marker, label=lab)
        if math.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"input {name} (dB)")
        ax.set_ylabel(f"output {name} (dB)")
        ax.set_title(f"{name}: input vs output per clip")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def bar_limits(vals: np.ndarray, keys: list[str]) -> tuple[float, float]:
    """y-limits from every row but the silent floor (and 0), so that a floor at -10 dB or -inf does not
    squash the methods' differences; bars beyond the limits are clipped and labelled with their value."""
    scale = np.array([v for k, row in zip(keys, vals) if k != "silent" for v in row], dtype=float)
    scale = scale[np.isfinite(scale)]
    lo = min(0.0, float(scale.min())) if scale.size else 0.0
    hi = max(0.0, float(scale.max())) if scale.size else 1.0
    pad = 0.12 * ((hi - lo) or 1.0)
    return lo - pad, hi + pad


def plot_bars(path: Path, table: dict, labels: dict[str, str], metrics: list[str], title: str) -> Path:
    """Grouped bars: groups (cases or input-SDR bins) x methods, one panel per metric, a legend on each."""
    plt = _plt()
    colors = _colors(list(labels))
    keys = list(labels)
    groups = list(table[keys[0]].keys())
    ncol = 2 if len(metrics) > 1 else 1
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7 * ncol, 4.4 * nrow), squeeze=False, constrained_layout=True)
    width = 0.8 / len(keys)
    xs = np.arange(len(groups))
    for ax, metric in zip(axes.flat, metrics):
        vals = np.array([[table[k].get(g, {}).get(metric, math.nan) for g in groups] for k in keys], dtype=float)
        lo, hi = bar_limits(vals, keys)
        base = 0.0 if lo <= 0.0 <= hi else lo
        for j, k in enumerate(keys):
            v = vals[j]
            ref = k in REFERENCE_KEYS
            draw = np.clip(np.nan_to_num(v, nan=base, neginf=lo, posinf=hi), lo, hi)
            bars = ax.bar(xs + (j - (len(keys) - 1) / 2) * width, draw - base, width, bottom=base,
                          color=colors[k], label=labels[k], hatch="//" if ref else None,
                          edgecolor="0.3" if ref else "white", linewidth=0.4)
            for b, val in zip(bars, v):
                if np.isfinite(val) and lo <= val <= hi:
                    continue
                text = "n/a" if np.isnan(val) else (f"{val:.1f}" if np.isfinite(val) else ("-inf" if val < 0 else "inf"))
                down = np.isnan(val) or val < lo
                ax.text(b.get_x() + b.get_width() / 2, lo if down else hi, ("↓" if down else "↑") + text,
                        ha="center", va="bottom" if down else "top", fontsize=7.5, rotation=90,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
        ax.set_ylim(lo, hi)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(xs, [f"{g}\n(n={table[keys[0]].get(g, {}).get('n', 0)})" for g in groups])
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=min(3, len(keys)), loc="lower left", bbox_to_anchor=(0.0, 1.0),
                  frameon=False, borderaxespad=0.2)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_spectrogram(path: Path, x: np.ndarray, sr: int, vmax: float, segments: list[tuple[str, int, int]]) -> Path:
    """One signal's log-spectrogram strip (90 dB range below `vmax`, shared within an example), with the
    corrupted segments drawn as coloured bars above it and dashed lines at their edges."""
    plt = _plt()
    f, _, db = _log_spec(x, sr)
    dur = len(x) / sr
    fig, (top, ax) = plt.subplots(2, 1, figsize=(6.4, 1.75), sharex=True, constrained_layout=True,
                                  gridspec_kw={"height_ratios": [1, 5], "hspace": 0.0})
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 90, vmax=vmax,
              extent=(0, dur, 0, f[-1] / 1000), interpolation="antialiased")
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6, length=2)
    top.set_ylim(0, max(1, len(segments)))
    top.axis("off")
    for i, (art, start, n) in enumerate(segments):
        a, b = start / sr, (start + n) / sr
        color = ARTIFACT_COLORS.get(art, "0.4")
        top.broken_barh([(a, b - a)], (i + 0.15, 0.7), color=color)
        top.text(a + 0.01 * dur, i + 0.5, art, va="center", ha="left", fontsize=6, color="white")
        for edge in (a, b):
            if 0 < edge < dur:
                ax.axvline(edge, color="white", ls="--", lw=0.8)
    ax.set_xlim(0, dur)
    fig.savefig(path, dpi=80, pil_kwargs={"quality": 80, "optimize": True})
    plt.close(fig)
    return path


def example_signals(ex: dict, labels: dict[str, str]) -> list[tuple[str, str, np.ndarray]]:
    """[(key, label, signal)] shown for one example: clean, corrupted, then every method's output."""
    sigs = [("clean", "clean (target)", ex["clean"]), ("corrupted", "corrupted input", ex["corrupted"])]
    return sigs + [(k, labels.get(k, k), v) for k, v in ex["outputs"].items()]


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def make_figures(folder: Path, rows: list[dict], summary: dict, examples: dict[str, dict], sr: int) -> Figures:
    """Write every figure into `folder`: captioned charts and the examples' spectrogram strips."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = summary["methods"]
    metrics = ["si_sdr_imp", "sdr_imp"] + (["stoi"] if summary.get("stoi", True) else []) \
        + (["pesq"] if summary.get("pesq") else [])
    floor_note = ("Hatched: the unprocessed input and the all-zero (silent) output. The scale is set by the "
                  "other rows; a bar beyond it is clipped and labelled with its value (↓).")
    figs = Figures(charts=[
        Figure(plot_bars(folder / "bars_by_case.png", summary["by_case"], labels, metrics, "Mean per corruption case"),
               f"Mean {', '.join(SHORT[m] for m in metrics)} per corruption case and method (n = clips). {floor_note}"),
        Figure(plot_bars(folder / "bars_by_input_sdr.png", summary["by_input_sdr"], labels, ["si_sdr_imp", "sdr_imp"],
                         "Mean per input-SDR bin"),
               f"Mean SI-SDRi and SDRi by the input's SDR (hard clips on the left). {floor_note}"),
        Figure(plot_scatter(folder / "scatter_sdr.png", rows, labels),
               "Every clip's output against its input SDR (left) and SI-SDR (right); points above the dashed "
               "line improved. The silent output's SI-SDR is -inf and is not drawn."),
    ])
    for cid, ex in examples.items():
        sigs = example_signals(ex, labels)
        vmax = max(float(_log_spec(s, sr)[2].max()) for k, _, s in sigs if k in ("clean", "corrupted"))
        figs.spectrograms[cid] = {
            k: plot_spectrogram(folder / f"example_{_safe_name(cid)}_{_safe_name(k)}.jpg", s, sr, vmax, ex["segments"])
            for k, _, s in sigs
        }
    return figs


# ---------------------------------------------------------------------------------------- HTML


def audio_base64(x: np.ndarray, sr: int) -> str:
    """16-bit FLAC of x (clipped to full scale), base64-encoded for a data: URI (about half a WAV's size)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(x, np.float32), -1, 1), sr, format="FLAC", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _data_uri(path: Path) -> str:
    mime = "image/jpeg" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def _num(v: Any, digits: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "&ndash;"
    if isinstance(v, str):  # JSON-encoded infinities
        return {"-inf": "&minus;&infin;", "inf": "&infin;"}.get(v, html.escape(v))
    if math.isinf(v):
        return "&minus;&infin;" if v < 0 else "&infin;"
    v = v if round(v, digits) else 0.0  # no "-0.00"
    return (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}").replace("-", "&minus;")


def _esc(s: Any) -> str:
    return html.escape(str(s))


def _best_keys(table: dict, candidates: list[str], group: str, metric: str) -> set[str]:
    """Candidates holding the best mean of `metric` in `group` (ties all marked); level error: closest to 0."""
    vals = {k: table[k].get(group, {}).get(metric, math.nan) for k in candidates}
    vals = {k: v for k, v in vals.items() if v is not None and not math.isnan(v)}
    if not vals:
        return set()
    score = {k: -abs(v) if metric == "level_err_db" else v for k, v in vals.items()}
    top = max(score.values())
    return {k for k, v in score.items() if v == top}


def _cell(stats: dict, metric: str, best: bool) -> str:
    v = stats.get(metric, math.nan)
    text = _num(v, 3 if metric == "stoi" else 2)
    failed = stats.get("failed", {}).get(metric, 0)
    title = ""
    if failed:
        text += f"<sup class='fail'>{failed}&#x2717;</sup>"
        title = f" title='{failed} of {stats.get('n', 0)} clips failed this metric and are left out of this mean'"
    return f"<td class='best'{title}>{text}</td>" if best else f"<td{title}>{text}</td>"


def _grouped_table(table: dict, labels: dict[str, str], refs: list[str], metrics: list[str], caption: str,
                   groups: list[str] | None = None) -> str:
    """Methods x (group x metric) with a two-row header; the best candidate per column in bold."""
    groups = groups or [g for g in next(iter(table.values())) if g != "all"]  # 'all' has its own table
    candidates = [k for k in labels if k not in refs]
    head2 = "".join(f"<th>{SHORT.get(m, m)}</th>" for _ in groups for m in metrics)
    if groups == ["all"]:
        header = f"<tr><th>method</th>{head2}</tr>"
    else:
        head1 = "".join(f"<th colspan='{len(metrics)}' class='grp'>{_esc(g)}</th>" for g in groups)
        header = f"<tr><th rowspan='2'>method</th>{head1}</tr><tr>{head2}</tr>"
    best = {(g, m): _best_keys(table, candidates, g, m) for g in groups for m in metrics}
    body = []
    for k, label in labels.items():
        cls = " class='ref'" if k in refs else ""
        cells = "".join(_cell(table[k].get(g, {}), m, k in best[(g, m)]) for g in groups for m in metrics)
        body.append(f"<tr{cls}><th>{_esc(label)}</th>{cells}</tr>")
    first = next(iter(labels))
    ns = "".join(f"<td colspan='{len(metrics)}'>{table[first].get(g, {}).get('n', 0)}</td>" for g in groups)
    return (f"<p class='cap'>{caption}</p><table>{header}"
            f"{''.join(body)}<tr class='n'><th>clips</th>{ns}</tr></table>")


def _overall_table(summary: dict, metrics: list[str]) -> str:
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    overall = {k: {"all": v["all"]} for k, v in summary["by_case"].items()}
    n = summary["n_clips"]
    return _grouped_table(
        overall, labels, refs, metrics, groups=["all"],
        caption=(f"All {n} clips: mean per method. Bold: the best method per column (reference rows in grey italics "
                 "are not candidates; level error: closest to 0 dB). A superscript &#x2717; counts the clips on "
                 "which that metric failed: they are left out of the mean, see Failures."))


def _summary_section(summary: dict) -> list[str]:
    """The page's opening: verdict, the rule, best method per metric, run details, links to the data."""
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    v = summary["verdict"]
    overall = {k: s["all"] for k, s in summary["by_case"].items()}
    rows = []
    for metric, b in v["best_by_metric"].items():
        ref_cells = "".join(f"<td>{_num(overall.get(r, {}).get(metric))}</td>" for r in REFERENCE_KEYS)
        decides = " <span class='tag'>decides the verdict</span>" if metric == "si_sdr_imp" else ""
        runner = (f"{_esc(labels[b['runner_up']])} ({_num(b['runner_up_value'])})" if b["runner_up"] else "&ndash;")
        rows.append(f"<tr><th>{METRIC_LABELS[metric]}{decides}</th><td class='l'>{_esc(labels[b['method']])}</td>"
                    f"<td class='best'>{_num(b['value'], 3 if metric == 'stoi' else 2)}</td>"
                    f"<td class='l'>{runner}</td>{ref_cells}</tr>")
    run = summary.get("run", {})
    sha = run.get("checkpoint_sha256")
    skipped = "; ".join(f"{k} ({m})" for k, m in summary.get("skipped_baselines", {}).items())
    n_fail = sum(e["n"] for per in summary.get("failures", {}).values() for e in per.values())
    details = [
        ("result", f"{summary['n_clips']} of {summary['clips_in_set']} clips, {summary['sample_rate']} Hz "
                   f"{_esc(summary['kind'])}, {summary.get('audio_seconds', 0):.0f} s of audio"),
        ("data", f"<code>{_esc(summary['data'])}</code> (split {_esc(summary['split'])})"),
        ("model", f"{_esc(labels.get('opgan', summary.get('model_name', '')))}: <code>{_esc(run.get('checkpoint', summary['model']))}</code>"
                  + (f" (sha256 {sha[:12]})" if sha else "")),
        ("methods", ", ".join(_esc(l) for k, l in labels.items() if k not in refs)
                    + (f"; skipped: {_esc(skipped)}" if skipped else "")),
        ("metric failures", f"{n_fail} (clip, method, metric) scores could not be computed" if n_fail else "none"),
        ("clips left out", _left_out(summary)),
        ("device", f"{_esc(run.get('device', '?'))}: {_esc(run.get('hardware', '?'))}"),
        ("version", f"opgan-selfonn {_esc(run.get('opgan_version', '?'))}, torch {_esc(run.get('torch_version', '?'))}"),
        ("date", _esc(run.get("date", "?"))),
        ("data files", "<a href='metrics.csv'>metrics.csv</a> (every clip &times; method) and "
                       "<a href='summary.json'>summary.json</a> (all means), beside this page"),
    ]
    return [
        "<section class='summary'><h2>Summary</h2>",
        f"<p class='verdict'>{_esc(v['text'])}</p>",
        f"<p class='rule'><b>Verdict rule.</b> {_esc(v['rule'])}</p>",
        "<table><caption>Best method per metric (mean over all clips)</caption><tr><th>metric</th><th>best method</th>"
        "<th>mean</th><th>runner-up</th><th>unprocessed input</th><th>silent output (floor)</th></tr>"
        + "".join(rows) + "</table>",
        "<table class='kv'><caption>Run</caption>"
        + "".join(f"<tr><th>{k}</th><td class='l'>{val}</td></tr>" for k, val in details) + "</table></section>",
    ]


def _do_no_harm_section(summary: dict) -> list[str]:
    d = summary["do_no_harm"]
    labels = summary["methods"]
    head = (f"<h2>Do no harm</h2><p>Clips that are already good (input SDR &ge; {d['min_input_sdr_db']:g} dB) should "
            "come out nearly untouched: a negative SDRi here is damage done to good audio.</p>")
    if not d["n_clips"]:
        return [head + f"<p>No clip of this set has an input SDR of {d['min_input_sdr_db']:g} dB or more.</p>"]
    rows = "".join(
        f"<tr{' class=ref' if k in summary.get('reference_methods', []) else ''}><th>{_esc(labels[k])}</th>"
        f"<td>{m['n']}</td><td>{_num(m['mean_sdr_imp'], signed=True)}</td>"
        f"<td>{_num(m['worst_sdr_imp'], signed=True)}</td><td class='l'>{_esc(m['worst_id'] or '')}</td>"
        f"<td>{_num(m['mean_si_sdr_imp'], signed=True)}</td><td>{m['failed']}</td></tr>"
        for k, m in d["methods"].items())
    return [head, f"<table><caption>{d['n_clips']} clips with input SDR &ge; {d['min_input_sdr_db']:g} dB</caption>"
                  "<tr><th>method</th><th>clips</th><th>mean SDRi</th><th>worst SDRi</th><th>worst clip</th>"
                  f"<th>mean SI-SDRi</th><th>SDR failed</th></tr>{rows}</table>"]


def _failures_section(summary: dict) -> list[str]:
    fails = summary.get("failures", {})
    if not fails:
        return ["<h2>Failures</h2><p>Every metric was computed on every clip for every method.</p>"]
    labels = summary["methods"]
    merged: dict[tuple[str, int, str], list[str]] = {}  # a crashed method fails every metric alike: one row
    for k, per in fails.items():
        for m, e in per.items():
            merged.setdefault((k, e["n"], e["first"]), []).append(m)
    rows = "".join(f"<tr><th>{_esc(labels.get(k, k))}</th><td class='l'>{_esc(', '.join(ms))}</td><td>{n}</td>"
                   f"<td class='l'>{_esc(first)}</td></tr>" for (k, n, first), ms in merged.items())
    return ["<h2>Failures</h2><p>A metric that raised, warned that its value is a placeholder, or gave nan on a clip "
            "is left out of that mean and counted here (per clip: the <code>failed</code> column of metrics.csv).</p>",
            "<table><tr><th>method</th><th class='l'>metric</th><th>clips</th><th class='l'>first reason (clip)</th></tr>"
            f"{rows}</table>"]


def _rtf_section(summary: dict) -> list[str]:
    if not summary.get("rtf"):
        return []
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    audio = summary.get("audio_seconds", 0.0)
    rows = "".join(f"<tr><th>{_esc(labels.get(k, k))}</th><td>{v:.4f}</td><td>{v * audio:.1f}</td></tr>"
                   for k, v in summary["rtf"].items() if k not in refs)
    run = summary.get("run", {})
    return ["<h2>Speed</h2>", f"<table><caption>Real-time factor = processing time / audio duration (below 1 is "
            f"faster than real time) over {audio:.0f} s of audio, on {_esc(run.get('device', '?'))}: "
            f"{_esc(run.get('hardware', '?'))}</caption><tr><th>method</th><th>RTF</th><th>processing (s)</th></tr>"
            f"{rows}</table>"]


def _examples_section(summary: dict, figures: Figures, examples: dict[str, dict], sr: int) -> list[str]:
    if not examples:
        return []
    labels = summary["methods"]
    parts = ["<h2>Listen: best, median and worst clip</h2>",
             "<p>Chosen by the model's SI-SDRi, each from a different clean passage. Every row: the signal's "
             "player and log-spectrogram (90 dB range, one colour scale per clip). Coloured bars above each "
             "spectrogram and dashed lines mark where each corruption is active; a bar across the whole width "
             "means the whole clip.</p>"]
    for cid, ex in examples.items():
        segs = ", ".join(f"{a} {s / sr:.2f}&ndash;{(s + n) / sr:.2f} s" for a, s, n in ex["segments"]) or "not recorded"
        parts.append(f"<h3><span class='tag'>{_esc(ex['tag'])}</span> {_esc(cid)} ({_esc(ex['case'])}, input SDR "
                     f"{_num(ex['sdr_in'])} dB; corrupted: {segs})</h3><div class='ex'>")
        for key, label, sig in example_signals(ex, labels):
            sc = ex["scores"].get("identity" if key == "corrupted" else key)
            score = ""
            if key == "corrupted":
                score = (f"<br><small>SI-SDR {_num(sc['si_sdr'])} dB, SDR {_num(sc['sdr'])} dB, STOI "
                         f"{_num(sc['stoi'], 3)}, level {_num(sc['level_err_db'], signed=True)} dB</small>")
            elif sc is not None and key != "clean":
                score = (f"<br><small>SI-SDRi {_num(sc['si_sdr_imp'], signed=True)} dB, SDRi "
                         f"{_num(sc['sdr_imp'], signed=True)} dB, STOI {_num(sc['stoi'], 3)}, "
                         f"level {_num(sc['level_err_db'], signed=True)} dB</small>")
            img = figures.spectrograms.get(cid, {}).get(key)
            pic = (f"<img alt='spectrogram: {_esc(label)}' src='{_data_uri(img)}'>" if img else "")
            parts.append(f"<div class='lab'><b>{_esc(label)}</b>{score}</div><audio controls preload='metadata' "
                         f"src='data:audio/flac;base64,{audio_base64(sig, sr)}'></audio><div>{pic}</div>")
        parts.append("</div>")
    return parts


def _left_out(summary: dict) -> str:
    """Skipped (unreadable) and degenerate (scored, not averaged) clips: counts and the first reason."""
    parts = []
    for what, note in (("skipped_clips", "skipped: could not be read"),
                       ("degenerate_clips", "degenerate: scored but left out of every mean")):
        clips = summary.get(what) or {}
        if clips:
            cid, why = next(iter(clips.items()))
            parts.append(f"{len(clips)} {note} (e.g. {_esc(cid)}: {_esc(why)})")
    return "; ".join(parts) or "none"


def _per_clip_section(summary: dict, rows: list[dict]) -> list[str]:
    """Every clip, worst first by the model's SI-SDRi (failed scores first): SI-SDRi and SDRi per method."""
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    cands = [k for k in labels if k not in refs]
    by = {(r["id"], r["method"]): r for r in rows}
    ids = list(dict.fromkeys(r["id"] for r in rows))
    tags = {e["id"]: e["tag"] for e in summary.get("examples", [])}

    def key(cid: str) -> float:
        r = by.get((cid, "opgan"))
        v = r["si_sdr_imp"] if r else math.nan
        return -math.inf if math.isnan(v) else v

    ids.sort(key=key)
    head = "".join(f"<th colspan='2' class='grp'>{_esc(labels[k])}</th>" for k in cands)
    sub = "<th>SI-SDRi</th><th>SDRi</th>" * len(cands)
    body = []
    for i, cid in enumerate(ids, 1):
        first = by[(cid, "identity")]
        cells = "".join(f"<td>{_num(by[(cid, k)]['si_sdr_imp'], signed=True)}</td>"
                        f"<td>{_num(by[(cid, k)]['sdr_imp'], signed=True)}</td>" if (cid, k) in by else "<td></td><td></td>"
                        for k in cands)
        tag = f" <span class='tag'>{_esc(tags[cid])}</span>" if cid in tags else ""
        if first.get("degenerate"):
            tag += " <span class='tag'>degenerate</span>"
        body.append(f"<tr><td>{i}</td><td class='l'>{_esc(cid)}{tag}</td><td class='l'>{_esc(first['case'])}</td>"
                    f"<td>{_num(first['sdr_in'])}</td><td>{_num(first['si_sdr_in'])}</td>{cells}</tr>")
    return ["<h2>Every clip, worst first</h2>",
            f"<p>Sorted by {_esc(labels.get('opgan', 'the model'))}'s SI-SDRi, lowest first. All metrics per clip: "
            "<a href='metrics.csv'>metrics.csv</a>.</p>",
            "<div class='scroll'><table class='clips'><thead><tr><th rowspan='2'>#</th><th rowspan='2' class='l'>clip</th>"
            "<th rowspan='2' class='l'>case</th><th rowspan='2'>input SDR</th><th rowspan='2'>input SI-SDR</th>"
            f"{head}</tr><tr>{sub}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"]


CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td.l,th.l{text-align:left}th.grp{text-align:center;background:#f3f3f3}
tr.ref{color:#666;font-style:italic}tr.n{color:#888}caption,p.cap{text-align:left;font-size:13px;padding:.3em 0;color:#333}p.cap{margin:.8em 0 0}
td.best{font-weight:bold;background:#e8f5e9}sup.fail{color:#b00020;font-weight:bold;margin-left:2px}
.summary{border:1px solid #cfd8dc;background:#fafcfd;padding:.2em 1.2em .6em;border-radius:6px}
.verdict{font-size:1.15em;font-weight:600;margin:.5em 0}.rule{font-size:.9em;color:#444}
table.kv th{background:#f7f7f7;font-weight:600}.note{background:#fff6e0;border-left:4px solid #e0a000;padding:.6em 1em}
.tag{background:#37474f;color:#fff;border-radius:3px;padding:0 .35em;font-size:.75em;font-weight:normal}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:13px;color:#444;margin-top:.3em}
.ex{display:grid;grid-template-columns:minmax(170px,1fr) 300px minmax(320px,2.2fr);gap:.4em .8em;align-items:center}
.ex img{width:100%;display:block}audio{width:100%}
.scroll{max-height:32em;overflow:auto;border:1px solid #ddd}table.clips{margin:0}
table.clips thead th{position:sticky;background:#f3f3f3}table.clips thead tr:first-child th{top:0}
table.clips thead tr:nth-child(2) th{top:1.6em}
"""


def write_html(path: Path, summary: dict, figures: Figures, examples: dict[str, dict], sr: int,
               rows: list[dict]) -> Path:
    """One self-contained page: summary first, then tables, speed, figures, examples and every clip."""
    labels, refs = summary["methods"], summary.get("reference_methods", [])
    metrics = ["si_sdr_imp", "sdr_imp", "si_sdr", "sdr"] + (["stoi"] if summary.get("stoi", True) else []) \
        + (["pesq"] if summary.get("pesq") else []) + ["level_err_db"]
    case_metrics = ["si_sdr_imp", "sdr_imp"] + (["stoi"] if summary.get("stoi", True) else []) \
        + (["pesq"] if summary.get("pesq") else [])
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Op-GAN evaluation: "
             f"{_esc(summary.get('model_name', ''))} on {summary['n_clips']} clips</title><style>{CSS}</style></head><body>",
             "<h1>Op-GAN restoration: evaluation report</h1>"]
    parts += _summary_section(summary)
    parts.append(f"<p class='note'>{_esc(summary['note'])}</p>")
    parts += _do_no_harm_section(summary)
    parts.append("<h2>Results</h2>")
    parts.append(_overall_table(summary, metrics))
    parts.append(_grouped_table(summary["by_case"], labels, refs, case_metrics,
                                "By corruption case: mean per method (bold: best method per column)"))
    parts.append(_grouped_table(summary["by_input_sdr"], labels, refs, ["si_sdr_imp", "sdr_imp"],
                                "By input SDR: mean per method (bold: best method per column)"))
    parts += _failures_section(summary)
    parts += _rtf_section(summary)
    parts.append("<h2>Figures</h2>")
    for fig in figures.charts:
        parts.append(f"<figure><img alt='{_esc(Path(fig.path).name)}' src='{_data_uri(fig.path)}'>"
                     f"<figcaption>{_esc(fig.caption)}</figcaption></figure>")
    parts += _examples_section(summary, figures, examples, sr)
    parts += _per_clip_section(summary, rows)
    parts.append("</body></html>")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------- before/after figure


@dataclass
class BeforeAfter:
    """One clip drawn by `plot_before_after`: the three signals and the title that names its scores."""

    title: str
    corrupted: np.ndarray
    restored: np.ndarray
    clean: np.ndarray
    sr: int


def plot_before_after(path: Path, rows: Sequence[BeforeAfter]) -> Path:
    """Corrupted | restored | clean log-spectrograms, one row per clip, one colour scale per row (set by
    the corrupted and clean signals, as in the report's examples)."""
    plt = _plt()
    fig = plt.figure(figsize=(11, 2.9 * len(rows)), layout="constrained")
    for sub, row in zip(np.atleast_1d(fig.subfigures(len(rows), 1)), rows):
        axes = sub.subplots(1, 3, sharey=True)
        specs = [_log_spec(x, row.sr) for x in (row.corrupted, row.restored, row.clean)]
        vmax = max(float(specs[0][2].max()), float(specs[2][2].max()))
        dur = len(row.clean) / row.sr
        for ax, (f, _, db), name in zip(axes, specs, ("corrupted input", "restored", "clean (target)")):
            im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                           extent=(0, dur, 0, f[-1] / 1000), interpolation="antialiased")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("kHz", fontsize=8)
        sub.suptitle(row.title, fontsize=10)
        sub.colorbar(im, ax=axes[-1], label="dB", shrink=0.9)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=80)
    plt.close(fig)
    from PIL import Image  # matplotlib's own dependency

    # a 256-colour palette: the noise texture makes a full-colour PNG ~4x larger for no visible gain
    Image.open(buf).convert("RGB").quantize(256).save(path, optimize=True)
    return path


def _gate_row(clip_id: str, model: str | None) -> tuple[BeforeAfter, str]:
    """Restore one shipped gate clip as `opgan gate` scores it; the row and a one-line result."""
    from opgan.data.assets import require_asset
    from opgan.data.audio import load_mono
    from opgan.enhance import enhance_signal, load_restorer
    from opgan.gate import GATE_DIR
    from opgan.metrics import level_db, sdr, si_sdr

    meta = json.loads(require_asset(GATE_DIR / "gate.json", "the quality-gate clips").read_text())
    clip = next((c for c in meta["clips"] if c["id"] == clip_id), None)
    if clip is None:
        raise ValueError(f"no gate clip {clip_id!r} (ids are in {GATE_DIR / 'gate.json'}, e.g. "
                         f"{meta['clips'][0]['id']})")
    y, sr = load_mono(GATE_DIR / clip["kind"] / f"{clip_id}_corrupted.flac")
    x, _ = load_mono(GATE_DIR / clip["kind"] / f"{clip_id}_clean.flac")
    restorer = load_restorer(model or clip["kind"])
    if restorer.sample_rate != sr:
        raise ValueError(f"{clip_id} is at {sr} Hz, the model at {restorer.sample_rate} Hz")
    est = enhance_signal(restorer, y)
    sdri, si_sdri, level = sdr(est, x) - sdr(y, x), si_sdr(est, x) - si_sdr(y, x), level_db(est, x)
    model_name = model or f"shipped {clip['kind']} model"
    case = clip["case"] if clip["artifacts"] == clip["case"] else f"{clip['case']} ({clip['artifacts']})"
    title = (f"{case}, input SDR {clip['sdr_in']:+.1f} dB; {model_name}: SDRi {sdri:+.2f} dB, "
             f"SI-SDRi {si_sdri:+.2f} dB, output level {level:+.2f} dB vs clean")
    return BeforeAfter(title, y, est, x, sr), f"{clip_id}: {title}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m opgan.report figure ...`: README's before/after figure from the shipped gate clips."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m opgan.report", description=__doc__.split("\n\n")[-1],
                                 epilog="example: python -m opgan.report figure --clips speech_awgn_heavy_1 "
                                        "--out docs/figures/before-after.png")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("figure", help="before/after spectrograms of shipped quality-gate clips")
    f.add_argument("--clips", required=True, help="comma list of gate clip ids (opgan/assets/gate/gate.json)")
    f.add_argument("--model", default=None, help="speech | music | checkpoint (default: the clip's kind)")
    f.add_argument("--out", type=Path, required=True, help="PNG to write")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    from opgan.checkpoint import CheckpointError
    from opgan.data.audio import AudioError

    try:
        if args.out.suffix.lower() != ".png":
            raise ValueError(f"--out {args.out} must end in .png")
        if args.out.exists() and not args.overwrite:
            raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
        ids = [c.strip() for c in args.clips.split(",") if c.strip()]
        if not ids:
            raise ValueError("--clips names no clip")
        made = [_gate_row(cid, args.model) for cid in ids]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot_before_after(args.out, [row for row, _ in made])
    except (OSError, ValueError, AudioError, CheckpointError) as e:  # one line, never a traceback
        print(f"opgan.report: {e}", file=sys.stderr)
        return 2
    for _, line in made:
        print(line)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
