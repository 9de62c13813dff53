"""README and docs tables generated from committed records, never copied by hand.

A table lives between two markers in a markdown file:

    <!-- table:ablation:loss -->
    ... generated ...
    <!-- /table:ablation:loss -->

`python -m opgan.tables` re-renders every marked table in README.md and docs/**/*.md from the records
under docs/results/ (and the committed training state under training/); `--check` exits 1 when a
file is out of date (the test suite runs it, so a figure cannot drift from its record). Each table
names the command that produced its record.

Table kinds: `ablation:<suite>` (docs/results/ablations/<suite>/<run>/), `equal:<suite>:A,B/C,D` (runs
A, B against C, D at equal steps and equal training time), `ladder:<suite>:<steps>` (a ladder rung's runs
at equal steps, with their train/validation gap), `best:<suite>:<steps>:<run>,...` (chosen runs of a rung
at their best checkpoint with STOI, level and every gap record), `curve:<folder>[:<every>]`
(<folder>/metrics.csv of a committed run, e.g. training/speech; every N steps), `gate` (docs/results/gate.json), `quality:<kind>`
(docs/results/eval-<kind>.json, a copy of `opgan evaluate`'s summary.json), `rtf`
(docs/results/rtf.json from bench/restore_rtf.py), `receptive` (docs/results/receptive.json from
`python -m opgan.receptive --json`), `clean:<name>` (docs/results/<name>.json from
bench/clean_input.py: what each method does to clean clips), `versus:<folder A>,<folder B>:<set>,...`
(two versions of a model on the same test sets, from their evaluation records), `headroom:<set>,...`
(the model, DeepFilterNet3 and the oracle mask per case, from docs/results/eval-<set>.json), `steps:<folder>,...:<step>,...`
(several runs' validation at the same steps), `swing:<folder>,...:<first>-<last>` (how far each run's
validation swings over a span of steps).

This module is the one splicer of generated tables: ``bench/tables.py`` renders the GPU speed tables
(`speed`, `speed-summary`, from bench/results/) and the offline compile statistics (`sm90-stats`) into the same markers through :func:`update_files`.
Those kinds are rendered there (the package never imports bench/), so here they are left as they are.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["ROOT", "RENDERED_ELSEWHERE", "marked_files", "render_file", "replace_blocks", "update_files", "main"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
_BLOCK = re.compile(r"(<!-- table:(?P<name>[\w:.,/-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _f(v: float | str | None, digits: int = 2, sign: bool = True) -> str:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "-∞" if x < 0 else "+∞"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _val_cells(row: dict) -> list[str]:
    light = f"{_f(row.get('light_sdr_gain'))} / {_f(row.get('light_worst_gain'))}"
    return [_f(row.get("sdr_gain")), _f(row.get("si_sdr_gain")), _f(row.get("stoi_out"), 3, sign=False),
            _f(row.get("level_db")), light, _f(row.get("score"))]


_VAL_HEAD = "SDRi | SI-SDRi | STOI | level dB | light-input SDRi mean / worst | score"


def ablation_table(suite: str) -> str:
    """One row per run at its last validation (equal steps), with its training minutes."""
    folder = RESULTS / "ablations" / suite
    runs = sorted(p for p in folder.iterdir() if (p / "metrics.csv").is_file()) if folder.is_dir() else []
    if not runs:
        return f"_(no records under {_rel(folder)} yet)_\n"
    meta0 = json.loads((runs[0] / "run.json").read_text())
    base = meta0["base"]
    equal = base[base.index("--max-steps") + 1] if "--max-steps" in base else None
    lines = [f"| run | change | step | train min | {_VAL_HEAD} |", "|" + "---|" * 10]
    for run in runs:
        meta = json.loads((run / "run.json").read_text())
        rows = _read_csv(run / "metrics.csv")
        last = next((r for r in rows if r["step"] == equal), rows[-1])  # equal steps, even if a run went on
        lines.append(f"| {meta['name']} | {meta['change']} | {last['step']} | {float(last['time_s']) / 60:.0f} | "
                     + " | ".join(_val_cells(last)) + " |")
    cmd = f"python -m opgan.ablate run {suite} --data ~/.cache/opgan && python -m opgan.ablate collect {suite}"
    base = " ".join(base)
    note = f" {meta0['note']}" if meta0.get("note") else ""
    return "\n".join(lines) + f"\n\nRecords: `{_rel(folder)}/`, made by `{cmd}` (shared flags: `{base}`).{note}\n"


def equal_time_table(suite: str, pairs: str) -> str:
    """q=3 against q=1 (or any two groups of runs) at equal steps and at equal training time.

    `pairs` = "A,B/C,D": runs A and C share a seed, as do B and D; the second group's row at equal
    time is its validation whose training seconds are closest to the first group's at equal steps."""
    folder = RESULTS / "ablations" / suite
    first, second = (g.split(",") for g in pairs.split("/"))
    try:
        data = {r: _read_csv(folder / r / "metrics.csv") for r in first + second}
    except FileNotFoundError as e:
        return f"_(missing record: {e.filename})_\n"
    base = json.loads((folder / first[0] / "run.json").read_text())["base"]
    equal = base[base.index("--max-steps") + 1]
    lines = [f"| run | reading | step | train min | {_VAL_HEAD} |", "|" + "---|" * 10]
    for a, b in zip(first, second):
        ra = next(r for r in data[a] if r["step"] == equal)
        rb_steps = next((r for r in data[b] if r["step"] == equal), data[b][-1])
        rb_time = min(data[b], key=lambda r: abs(float(r["time_s"]) - float(ra["time_s"])))
        for run, reading, row in ((a, "reference", ra), (b, "equal steps", rb_steps), (b, "equal time", rb_time)):
            lines.append(f"| {run} | {reading} | {row['step']} | {float(row['time_s']) / 60:.0f} | "
                         + " | ".join(_val_cells(row)) + " |")
    return "\n".join(lines) + f"\n\nRecords: `{_rel(folder)}/` (same runs as the table above).\n"


def ladder_table(suite: str, steps: str) -> str:
    """A ladder rung's runs side by side at equal steps: validation SI-SDRi at a few step counts up to
    ``steps`` (the equal-CPU budget), the mean of the last three validations there (one validation
    swings by ~0.5 dB), the run's own end, and the training-crop vs validation-crop gap (gap.json)."""
    folder = RESULTS / "ablations" / suite
    runs = sorted(p for p in folder.iterdir() if (p / "metrics.csv").is_file()) if folder.is_dir() else []
    if not runs:
        return f"_(no records under {_rel(folder)} yet)_\n"
    budget = int(steps)
    marks = [int(round(budget / 3, -3)) or budget // 3, int(round(2 * budget / 3, -3)) or 2 * budget // 3, budget]
    head = " | ".join(f"@{m}" for m in marks)
    lines = [f"| run | change | SI-SDRi {head} | mean of last 3 to {budget} | run's end: step, SI-SDRi | "
             "training crops | validation crops | gap (checkpoint step) |", "|" + "---|" * 10]
    for run in runs:
        meta = json.loads((run / "run.json").read_text())
        rows = [r for r in _read_csv(run / "metrics.csv") if r.get("si_sdr_gain", "") != ""]
        upto = [r for r in rows if int(r["step"]) <= budget]
        if not upto:
            continue
        # the latest validation at or before each mark
        cells = [_f(next((r["si_sdr_gain"] for r in reversed(upto) if int(r["step"]) <= m), None))
                 if m <= int(rows[-1]["step"]) else "–" for m in marks]  # "–": the run ended before the mark
        last3 = sum(float(r["si_sdr_gain"]) for r in upto[-3:]) / len(upto[-3:])
        end = rows[-1]
        gap = run / "gap.json"
        g = json.loads(gap.read_text()) if gap.is_file() else {}
        gcells = ([_f(_num(g, "train", "si_sdr_gain")), _f(_num(g, "val", "si_sdr_gain")),
                   f"{_f(g.get('si_sdr_gain_gap'))} ({g.get('step', '–')})"] if g else ["–", "–", "–"])
        lines.append(f"| {meta['name']} | {meta['change']} | " + " | ".join(cells) + f" | {_f(last3)} | "
                     f"{end['step']}, {_f(end['si_sdr_gain'])} | " + " | ".join(gcells) + " |")
    return "\n".join(lines) + (f"\n\nRecords: `{_rel(folder)}/` (`python -m opgan.ablate run {suite} --steps {budget}"
                               f" --runs-dir runs/ladder`, then `python -m opgan.ladder gap` per run and "
                               f"`python -m opgan.ablate collect {suite} --runs-dir runs/ladder`). SI-SDRi in dB on "
                               "the validation crops of unheard speakers; training/validation crops: the gap "
                               "tool's reading of the run's best.pt.\n")


def best_table(spec: str) -> str:
    """Chosen runs of a rung (``<suite>:<steps>:<run>,<run>,...``) at their best validation up to ``steps``:
    SI-SDRi beside SDRi, STOI and level (reverberation's metric trap), and every gap record of the run
    (gap.json: the crops it was validated on; gap-<name>.json: another pair, e.g. the early-reflection
    targets of the same crops), with the clip gate's median on each where the model has one, and a mask
    model's share of saturated units in its last hidden layer (near 1: a fixed equaliser)."""
    suite, steps, names = spec.split(":", 2)
    folder = RESULTS / "ablations" / suite
    lines = ["| run | change | best step | SI-SDRi | SDRi | STOI (input) | level dB | mean SI-SDRi of last 3 | "
             "gap records: training / validation crops SI-SDRi |", "|" + "---|" * 9]
    for name in names.split(","):
        run = folder / name
        if not (run / "metrics.csv").is_file():
            return f"_(missing record: {_rel(run / 'metrics.csv')})_\n"
        meta = json.loads((run / "run.json").read_text())
        rows = [r for r in _read_csv(run / "metrics.csv")
                if r.get("si_sdr_gain", "") != "" and int(r["step"]) <= int(steps)]
        best = max(rows, key=lambda r: float(r["score"]))
        last3 = sum(float(r["si_sdr_gain"]) for r in rows[-3:]) / len(rows[-3:])
        gaps = []
        for g in sorted(run.glob("gap*.json")):
            rec = json.loads(g.read_text())
            label = g.stem[4:] or Path(rec.get("val_folder", "")).name
            gate = (f" (gate median {_f(_num(rec, 'train', 'gate_median'), sign=False)} / "
                    f"{_f(_num(rec, 'val', 'gate_median'), sign=False)})" if _num(rec, "val", "gate_median") is not None
                    else "")
            sat = (f" (saturated {_f(_num(rec, 'train', 'hidden_saturated'), sign=False)} / "
                   f"{_f(_num(rec, 'val', 'hidden_saturated'), sign=False)})"
                   if _num(rec, "val", "hidden_saturated") is not None else "")
            gaps.append(f"{label}: {_f(_num(rec, 'train', 'si_sdr_gain'))} / {_f(_num(rec, 'val', 'si_sdr_gain'))}"
                        + gate + sat)
        lines.append(f"| {name} | {meta['change']} | {best['step']} | {_f(best['si_sdr_gain'])} | "
                     f"{_f(best['sdr_gain'])} | {_f(best.get('stoi_out'), 3, sign=False)} "
                     f"({_f(best.get('stoi_in'), 3, sign=False)}) | {_f(best.get('level_db'))} | {_f(last3)} | "
                     + ("; ".join(gaps) or "–") + " |")
    return "\n".join(lines) + (f"\n\nRecords: `{_rel(folder)}/` (`python -m opgan.ablate run {suite} --steps {steps} "
                               f"--runs-dir runs/ladder --only ...`, `python -m opgan.ladder gap` per run and pair of "
                               f"crop folders, then `python -m opgan.ablate collect {suite} --runs-dir runs/ladder`). "
                               "Validation columns: the run's own validation crops at its best step (by score).\n")


def curve_table(folder: str, every: str = "") -> str:
    """Validation against steps and training hours of a committed run folder (e.g. training/speech);
    ``every``: only the validations at multiples of that many steps (and the last) of a long run."""
    path = ROOT / folder / "metrics.csv"
    if not path.is_file():
        return f"_(no training record at {_rel(path)} yet)_\n"
    lines = [f"| step | train h | {_VAL_HEAD} |", "|" + "---|" * 8]
    rows = _read_csv(path)
    if every:
        rows = [r for i, r in enumerate(rows) if int(r["step"]) % int(every) == 0 or i == len(rows) - 1]
    for row in rows:
        lines.append(f"| {row['step']} | {float(row['time_s']) / 3600:.2f} | " + " | ".join(_val_cells(row)) + " |")
    jsonl = ROOT / folder / "metrics.jsonl"
    changes = []
    if jsonl.is_file():
        for line in jsonl.read_text().splitlines():
            rec = json.loads(line) if '"resume"' in line else None
            if rec and rec.get("kind") == "resume":
                what = ", ".join(f"{k} {a} → {b}" for k, (a, b) in rec["changed"].items())
                changes.append(f"step {rec['step']}: {what}")
    summary = ROOT / folder / "summary.json"
    done = (" Changed on resume (logged in metrics.jsonl): " + "; ".join(changes) + ".") if changes else ""
    if summary.is_file():
        sm = json.loads(summary.read_text())
        done += (f" The run ended at step {sm['step']} ({sm.get('stop_reason', '')}) after {sm['wall_s'] / 60:.0f} min "
                f"wall, {sm['train_s'] / 60:.0f} min of training; best.pt is step {sm['best_step']} "
                f"(by {sm.get('select_by', 'sdr_gain')}).")
    return "\n".join(lines) + f"\n\nRecord: `{_rel(path)}` (written by the training run itself).{done}\n"


def _model_key(rec: dict) -> str:
    """The evaluated model's key in an `opgan evaluate` record: its first method that is not a reference row."""
    return next(m for m in rec["methods"] if m not in rec.get("reference_methods", ["identity", "silent"]))


def _validation_files(names: str) -> list[str]:
    """The validation-row files ``steps:`` and ``swing:`` tables read: each comma-separated name a run folder
    (its metrics.csv) or a named .csv (a weight-averaged run's metrics-raw.csv)."""
    return [f if f.endswith(".csv") else f"{f}/metrics.csv" for f in names.split(",")]


def steps_table(spec: str) -> str:
    """Runs side by side at equal steps: ``<folder>,<folder>,...:<step>,<step>,...``, each folder a run's
    metrics.csv (a training folder or a candidate record), or a named .csv of validation rows (a weight-
    averaged run's metrics-raw.csv: its raw weights); validation SI-SDRi at each step, the mean over
    those steps (one validation swings by a few tenths of a dB), each run's best, and the training hours to
    the last step shown (runs that differ in cost per step are then also compared at equal time)."""
    folders, _, steps = spec.partition(":")
    marks = [int(s) for s in steps.split(",")]
    lines = ["| run | " + " | ".join(f"SI-SDRi @{m}" for m in marks) + " | mean | best: step, SI-SDRi | light worst at best "
             f"| train h to @{marks[-1]} |", "|" + "---|" * (len(marks) + 5)]
    files = _validation_files(folders)
    for folder, file in zip(folders.split(","), files):
        path = ROOT / file
        if not path.is_file():
            return f"_(no training record at {_rel(path)} yet)_\n"
        rows = {int(r["step"]): r for r in _read_csv(path)}
        at = [float(rows[m]["si_sdr_gain"]) if m in rows else math.nan for m in marks]
        seen = [v for v in at if math.isfinite(v)]
        best = max(rows.values(), key=lambda r: float(r["score"]))
        lines.append(f"| `{folder}` | " + " | ".join(_f(v) for v in at)
                     + f" | {_f(sum(seen) / len(seen)) if seen else '–'} | {best['step']}, {_f(float(best['si_sdr_gain']))}"
                     f" | {_f(_num(best, 'light_worst_gain'))} | "
                     + (f"{float(rows[marks[-1]]['time_s']) / 3600:.2f} |" if marks[-1] in rows else "– |"))
    return "\n".join(lines) + "\n\nRecords: " + ", ".join(f"`{f}`" for f in files) + \
        " (written by the training runs; the same validation clips).\n"


def swing_table(spec: str) -> str:
    """How much runs swing from one validation to the next over a span of steps:
    ``<folder or .csv>,...:<first>-<last>``. Per run: the validations in the span, SI-SDRi mean / lowest /
    highest, and the worst light clip's SDR gain, mean / lowest (one validation can read a checkpoint in a
    bad moment; a weight average should not)."""
    names, _, span = spec.partition(":")
    lo, _, hi = span.partition("-")
    lines = ["| run | validations | SI-SDRi mean | lowest | highest | light worst: mean | lowest |", "|" + "---|" * 7]
    files = _validation_files(names)
    for name, file in zip(names.split(","), files):
        path = ROOT / file
        if not path.is_file():
            return f"_(no training record at {_rel(path)} yet)_\n"
        rows = [r for r in _read_csv(path) if int(lo) <= int(r["step"]) <= int(hi)]
        if not rows:
            return f"_(no validation of {_rel(path)} between steps {lo} and {hi})_\n"
        si = [float(r["si_sdr_gain"]) for r in rows]
        worst = [v for v in (_num(r, "light_worst_gain") for r in rows) if v is not None]
        lines.append(f"| `{name}` | {len(rows)} | {_f(sum(si) / len(si))} | {_f(min(si))} | {_f(max(si))} | "
                     + (f"{_f(sum(worst) / len(worst))} | {_f(min(worst))} |" if worst else "– | – |"))
    return "\n".join(lines) + "\n\nRecords: " + ", ".join(f"`{f}`" for f in files) + \
        f" (validations at steps {lo} to {hi}; the same validation clips).\n"


def headroom_table(sets: str) -> str:
    """What a magnitude mask could gain against what the model and DeepFilterNet3 gain, per case (SI-SDRi),
    from records that hold the `oracle` row (`opgan evaluate --baselines oracle`)."""
    lines: list[str] = []
    for name in sets.split(","):
        path = RESULTS / f"eval-{name}.json"
        if not path.is_file():
            return f"_(no record at {_rel(path)} yet)_\n"
        rec = json.loads(path.read_text())
        if "oracle" not in rec["by_case"]:
            return f"_(no oracle row in {_rel(path)}: evaluate with --baselines ...,oracle)_\n"
        model = _model_key(rec)
        cases = [c for c in ("all", "blend", "awgn", "background", "reverb") if c in rec["by_case"][model]]
        if not lines:
            lines = ["| set | method | " + " | ".join(f"{c} SI-SDRi" for c in cases) + " |", "|" + "---|" * (len(cases) + 2)]
        for m in (model, "dfn", "oracle"):
            if m in rec["by_case"]:
                lines.append(f"| {name} | {rec['methods'][m]} | "
                             + " | ".join(_f(_num(rec["by_case"][m], c, "si_sdr_imp")) for c in cases) + " |")
    return "\n".join(lines) + "\n\nRecords: " + ", ".join(f"`docs/results/eval-{n}.json`" for n in sets.split(",")) + \
        " (`opgan evaluate ... --baselines noisereduce,wpe,dfn,oracle`; the oracle sees the clean).\n"


def gate_table() -> str:
    path = RESULTS / "gate.json"
    if not path.is_file():
        return f"_(no record at {_rel(path)} yet)_\n"
    rec = json.loads(path.read_text())
    lines = ["| model | clips | SDRi (floor) | SI-SDRi (floor) | output level dB | light-input SDRi mean (floor) | "
             "light worst (floor) |", "|---|---|---|---|---|---|---|"]
    for kind, s in rec["scores"].items():
        f = rec["floors"].get(kind, {})
        pair = lambda k: f"{_f(s[k])} ({_f(f.get(k))})"  # noqa: E731
        lines.append(f"| {kind} | {s['clips']:.0f} | {pair('sdri')} | {pair('si_sdri')} | {_f(s['level_db'])} | "
                     f"{pair('light_mean_sdri')} | {pair('light_worst_sdri')} |")
    return "\n".join(lines) + f"\n\nRecord: `{_rel(path)}`, made by `{rec['command']}`.\n"


def _num(d: dict, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    try:
        return float(d)  # "-inf" strings in the JSON come back as floats
    except (TypeError, ValueError):
        return None


def _verdict_text(rec: dict) -> str:
    """The verdict as `opgan evaluate` words it now, read from the record's means (records keep the
    wording of the version that made them)."""
    from .evaluate import verdict

    nan = float("nan")
    by_case = {m: {c: {k: nan if v is None else v for k, v in vals.items()} for c, vals in cases.items()}
               for m, cases in rec["by_case"].items()}  # a metric the record could not score (PESQ on music)
    try:
        return verdict(by_case, rec["methods"], rec.get("reference_methods", ["identity", "silent"]))["text"]
    except (KeyError, TypeError, ValueError):
        return rec["verdict"]["text"]


def quality_table(kind: str) -> str:
    """Per-method summary of an `opgan evaluate` run: overall scores, do-no-harm, level, per case."""
    path = RESULTS / f"eval-{kind}.json"
    if not path.is_file():
        return f"_(no record at {_rel(path)} yet)_\n"
    rec = json.loads(path.read_text())
    methods = list(rec["methods"])
    pesq = rec.get("pesq", False)
    harm = rec.get("do_no_harm", {})
    bands = rec.get("band_balance_db")  # records made before the per-octave check have none
    octaves = " / ".join(b[5:].replace("_", "-") for b in next(iter(bands.values()), {})) if bands else ""
    head = ["method", "SDRi", "SI-SDRi", "STOI"] + (["PESQ"] if pesq else []) + \
        ["output level vs clean, dB", f"inputs ≥ {harm.get('min_input_sdr_db', 15):g} dB: SDRi mean / worst", "RTF"] + \
        ([f"level vs clean in {octaves} Hz, dB"] if bands else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        allc = rec["by_case"][m].get("all", {})
        h = harm.get("methods", {}).get(m, {})
        row = [rec["methods"][m], _f(_num(allc, "sdr_imp")), _f(_num(allc, "si_sdr_imp")),
               _f(_num(allc, "stoi"), 2, sign=False)] + ([_f(_num(allc, "pesq"), 2, sign=False)] if pesq else []) + \
            [_f(_num(rec.get("level_err_db", {}), m)), f"{_f(_num(h, 'mean_sdr_imp'))} / {_f(_num(h, 'worst_sdr_imp'))}",
             _f(_num(rec.get("rtf", {}), m), 3, sign=False)] + \
            ([" / ".join(_f(_num(bands.get(m, {}), b)) for b in bands.get(m, {}))] if bands else [])
        lines.append("| " + " | ".join(row) + " |")
    cases = [c for c in ("blend", "awgn", "background", "reverb") if c in rec["by_case"][methods[0]]]
    lines += ["", "| method | " + " | ".join(f"{c} SDRi / SI-SDRi" for c in cases) + " |", "|" + "---|" * (len(cases) + 1)]
    for m in methods:
        bc = rec["by_case"][m]
        lines.append(f"| {rec['methods'][m]} | " + " | ".join(
            f"{_f(_num(bc, c, 'sdr_imp'))} / {_f(_num(bc, c, 'si_sdr_imp'))}" for c in cases) + " |")
    lines += _background_lines(rec, methods)
    run = rec.get("run", {})
    lines.append(f"\n{rec['n_clips']} clips of `{Path(rec['data']).name}` ({rec.get('split', '')}), "
                 f"model `{rec['model']}`; {run.get('hardware', '')}, {str(run.get('date', ''))[:10]}; RTF = wall "
                 f"seconds per second of audio on that machine as it was loaded. "
                 f"Verdict ({rec['verdict']['rule'].split(';')[0]}): {_verdict_text(rec)} "
                 f"Record: `{_rel(path)}` (copy of the run's summary.json).")
    return "\n".join(lines) + "\n"


def _background_lines(rec: dict, methods: list[str]) -> list[str]:
    """The background case by what interferes: a mask can lower ambience, not tell a competing talker from
    the target. Records made before the split have none."""
    by = rec.get("by_background")
    if not by or not by.get(methods[0]):
        return []
    kinds = [k for k in ("ambience", "synthetic", "music", "speech") if k in by[methods[0]]]
    if not kinds:
        return []
    n = {k: by[methods[0]][k].get("n", 0) for k in kinds}
    lines = ["", "| method | " + " | ".join(f"background case, {k} ({n[k]} clips): SDRi / SI-SDRi" for k in kinds) + " |",
             "|" + "---|" * (len(kinds) + 1)]
    for m in methods:
        b = by.get(m, {})
        lines.append(f"| {rec['methods'][m]} | " + " | ".join(
            f"{_f(_num(b, k, 'sdr_imp'))} / {_f(_num(b, k, 'si_sdr_imp'))}" for k in kinds) + " |")
    return lines


def versus_table(spec: str) -> str:
    """Two versions of a model on the same test sets, from their `opgan evaluate` records: ``spec`` is
    ``<folder A>,<folder B>:<set>,<set>,...``, each folder holding ``eval-<set>.json`` (docs/results/
    for the shipped model); the row per set reads A → B."""
    folders, _, sets = spec.partition(":")
    dirs = [ROOT / f for f in folders.split(",")]
    head = ["set", "SDRi", "SI-SDRi", "STOI (input)", "PESQ (input)", "inputs ≥ 15 dB: SDRi mean / worst",
            "output level vs clean, dB", "4–8 kHz vs clean, dB", "background case SI-SDRi"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def overall(r: dict, m: str) -> dict:
        return r["by_case"][m].get("all", {})

    def harm(r: dict, m: str) -> dict:
        return r.get("do_no_harm", {}).get("methods", {}).get(m, {})

    for name in sets.split(","):
        recs = []
        for d in dirs:
            path = d / f"eval-{name}.json"
            if not path.is_file():
                return f"_(no record at {_rel(path)} yet)_\n"
            recs.append(json.loads(path.read_text()))
        model = [_model_key(r) for r in recs]
        inp = overall(recs[0], "identity")  # the same inputs under both versions

        def cell(get) -> str:
            return " → ".join(get(r, m) for r, m in zip(recs, model))

        lines.append("| " + " | ".join([
            name,
            cell(lambda r, m: _f(_num(overall(r, m), "sdr_imp"))),
            cell(lambda r, m: _f(_num(overall(r, m), "si_sdr_imp"))),
            cell(lambda r, m: _f(_num(overall(r, m), "stoi"), 3, sign=False)) + f" ({_f(_num(inp, 'stoi'), 3, sign=False)})",
            cell(lambda r, m: _f(_num(overall(r, m), "pesq"), 2, sign=False)) + f" ({_f(_num(inp, 'pesq'), 2, sign=False)})",
            cell(lambda r, m: f"{_f(_num(harm(r, m), 'mean_sdr_imp'))} / {_f(_num(harm(r, m), 'worst_sdr_imp'))}"),
            cell(lambda r, m: _f(_num(r.get("level_err_db", {}), m))),
            cell(lambda r, m: _f(_num(r.get("band_balance_db", {}).get(m, {}), "band_4_8k"))),
            cell(lambda r, m: _f(_num(r["by_case"][m], "background", "si_sdr_imp"))),
        ]) + " |")
    lines.append(f"\nRecords: `eval-<set>.json` in {' and '.join(f'`{_rel(d)}/`' for d in dirs)} (copies of "
                 f"`opgan evaluate`'s summary.json, one build of each set).")
    return "\n".join(lines) + "\n"


def clean_input_table(name: str) -> str:
    """What each method does to clean clips (bench/clean_input.py's record docs/results/<name>.json)."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return f"_(no record at {_rel(path)} yet)_\n"
    rec = json.loads(path.read_text())
    sets = list(rec["sets"])
    octaves = list(next(iter(next(iter(rec["sets"].values())).values()))["bands_db"])
    bands = " / ".join(b[5:].replace("_", "-") for b in octaves)
    lines = ["| method | " + " | ".join(f"`{s}`: SI-SDR mean (min) | `{s}`: {bands} Hz vs clean, dB" for s in sets) + " |",
             "|" + "---|" * (1 + 2 * len(sets))]
    for key, label in rec["methods"].items():
        cells = []
        for s in sets:
            v = rec["sets"][s][key]
            cells += [f"{_f(v['si_sdr_mean'], sign=False)} ({_f(v['si_sdr_min'], sign=False)})",
                      " / ".join(_f(v["bands_db"][b]) for b in octaves)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n = next(iter(next(iter(rec["sets"].values())).values()))["n"]
    return "\n".join(lines) + (f"\n\n{n} clean clips per set, model `{rec['model']}`, {str(rec['date'])[:10]}. "
                               f"Record: `{_rel(path)}`, made by `{rec['command']}`.\n")


def rtf_table() -> str:
    """Restore speed of the shipped models (bench/restore_rtf.py's record)."""
    path = RESULTS / "rtf.json"
    if not path.is_file():
        return f"_(no record at {_rel(path)} yet)_\n"
    rec = json.loads(path.read_text())
    lines = ["| model | threads | CPU RTF | wall RTF best / median | load average during the runs |",
             "|---|---|---|---|---|"]
    for r in rec["rows"]:
        lines.append(f"| {r['model']} | {r['threads']} | {r['cpu_rtf']:.3f} | {r['wall_rtf_best']:.3f} / "
                     f"{r['wall_rtf_median']:.3f} | {r['load_avg'][0]:.1f}–{r['load_avg'][1]:.1f} |")
    return "\n".join(lines) + (f"\n\n{rec['rows'][0]['seconds']:g} s of audio per run, {rec['machine']}, torch "
                               f"{rec['torch']}, {rec['date']}. Record: `{_rel(path)}`, made by `{rec['command']}`.\n")


def receptive_rows(rows: list[dict]) -> str:
    """The markdown table `python -m opgan.receptive` prints (rows: its Profile fields as a dict)."""
    def ms(n: float, rate: int) -> str:
        return "whole clip" if n < 0 else f"{n:.0f} ({1000 * n / rate:.1f} ms)"

    head = ("model", "params", "rf90 samples (ms)", "rf99 samples (ms)", "support samples (ms)", "MMAC/s audio",
            "ms/step")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in rows:
        t = p.get("ms_per_step")
        cells = (f"`{p['name']}`", f"{p['params']:,}", ms(p["rf90"], p["rate"]), ms(p["rf99"], p["rate"]),
                 ms(p["support"], p["rate"]), f"{p['macs_per_s'] / 1e6:.0f}",
                 f"{t:.0f}" if isinstance(t, (int, float)) and t == t else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def receptive_table() -> str:
    """Receptive field, size and speed of generators (the record of `python -m opgan.receptive --json`)."""
    path = RESULTS / "receptive.json"
    if not path.is_file():
        return f"_(no record at {_rel(path)} yet)_\n"
    rec = json.loads(path.read_text())
    return receptive_rows(rec["rows"]) + (f"\n\nms/step: CPU forward + backward at batch {rec['batch']} x {rec['crop']} "
                                          f"on one thread, median of {rec['steps']} steps, models timed in turn on "
                                          f"{rec['machine']} (load average {rec['load_avg']:.1f}); torch {rec['torch']}, "
                                          f"{rec['date']}. Record: `{_rel(path)}`, made by `{rec['command']}`.\n")


#: table kinds whose blocks another generator fills, and its command: left untouched here
RENDERED_ELSEWHERE = {"speed": "python bench/tables.py", "speed-summary": "python bench/tables.py",
                      "sm90-stats": "python bench/tables.py"}


def _renderer(name: str) -> Callable[[], str | None]:
    kind, _, arg = name.partition(":")
    if kind in RENDERED_ELSEWHERE:
        return lambda: None
    table: dict[str, Callable[[], str]] = {
        "ablation": lambda: ablation_table(arg),
        "curve": lambda: curve_table(*arg.split(":", 1)),
        "ladder": lambda: ladder_table(*arg.split(":", 1)),
        "best": lambda: best_table(arg),
        "gate": gate_table,
        "quality": lambda: quality_table(arg),
        "rtf": rtf_table,
        "receptive": receptive_table,
        "clean": lambda: clean_input_table(arg),
        "equal": lambda: equal_time_table(*arg.split(":", 1)),
        "versus": lambda: versus_table(arg),
        "steps": lambda: steps_table(arg),
        "swing": lambda: swing_table(arg),
        "headroom": lambda: headroom_table(arg),
    }
    if kind not in table:
        raise KeyError(f"unknown table {name!r}")
    return table[kind]


def replace_blocks(text: str, render: Callable[[str], str | None] = lambda n: _renderer(n)()) -> str:
    """`text` with the body of every marked table replaced by its rendering; a block whose rendering
    is None (another generator's kind) keeps its body."""
    def sub(m: re.Match) -> str:
        body = render(m.group("name"))
        return m.group(0) if body is None else m.group(1) + body + m.group(4)

    return _BLOCK.sub(sub, text)


def block_names(text: str) -> list[str]:
    """The names of the marked tables in ``text``, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def marked_files(root: Path = ROOT) -> list[Path]:
    """The files that may hold generated tables: README.md and the markdown under docs/."""
    return [p for p in (root / "README.md", *sorted((root / "docs").glob("**/*.md"))) if p.is_file()]


def render_file(path: Path, check: bool, render: Callable[[str], str | None] | None = None) -> bool:
    """Re-render (or, with check, compare) one file; returns True when it was up to date. The file is
    replaced atomically (a temporary file beside it, then a rename)."""
    old = path.read_text()
    new = replace_blocks(old) if render is None else replace_blocks(old, render)
    if new != old and not check:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        tmp.replace(path)
    return new == old


def update_files(files: Sequence[Path], render: Callable[[str], str | None] | None = None,
                 check: bool = False) -> list[Path]:
    """Re-render (or, with check, compare) the marked tables of ``files``; returns the stale ones.
    ``render``: name -> body, None to leave a block alone (default: this module's kinds)."""
    return [p for p in files if not render_file(p, check, render)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m opgan.tables", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    args = ap.parse_args(argv)
    stale = update_files(marked_files(), check=args.check)
    for p in stale:
        print(f"{p.relative_to(ROOT)}: {'out of date (run python -m opgan.tables)' if args.check else 'updated'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
