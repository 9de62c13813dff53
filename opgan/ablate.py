"""Recipe ablations at equal compute: named suites of training runs, run side by side and collected
into committed records that docs/training.md's tables are generated from.

    python -m opgan.ablate list                                  # suites and their runs
    python -m opgan.ablate run loss --data ~/.cache/opgan --jobs 2   # resumable: finished runs are skipped
    python -m opgan.ablate run ladder-a --data runs/ladder/fixed8 --only a-fixed-paper  # one run of a suite
    python -m opgan.ablate collect loss                          # runs/ablate/* -> docs/results/ablations/
    python -m opgan.tables                                       # re-render the tables in README/docs

Every run of a suite shares the suite's base flags (preset, steps, validation) and differs by its own
overrides, so "equal steps" holds by construction; each run's training seconds are recorded beside
its metrics so "equal wall time" can be read off too (runs that share a machine are slowed alike).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Run", "SUITES", "RESULTS_DIR", "main"]

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "results" / "ablations"


@dataclass(frozen=True)
class Run:
    name: str
    change: str  # one line for the table
    flags: tuple[str, ...] = ()


#: the seed's objective on the first shipped models' preset (f=8, q=3, residual, 8192-sample crops, lr 2e-4,
#: dynamic mixing)
_SHIP = ("--preset", "ship-v1", "--max-minutes", "0", "--ckpt-every", "200", "--val-clips", "64",
         "--no-progress", "--threads", "1", "--select-by", "score")
_RECIPE = ("--lambda-sdr", "1", "--lambda-sisdr", "1")
#: the loss suite's winner: 10·L1 + MR-STFT + SDR + SI-SDR + LSGAN
_LOSS = ("--lambda-t", "10", "--lambda-s", "0", "--lambda-mr", "1") + _RECIPE
#: the second data (opgan fetch of 2026-11-27: 20 training speakers), its 300-room bank, sqrt speaker draws
_DATA2 = ("--rirs", "RIRS", "--group-weight", "sqrt")
_HARMLESS = ("--cases", "blend:0.4,awgn:0.15,background:0.15,reverb:0.15,light:0.1,clean:0.05")

#: Learning ladder (docs/training.md, "Learning ladder"): the recipe's model, 100·L1 (+ MR-STFT on the
#: distribution rungs), no discriminator, Adam 5e-4, one thread. Crop folders come from `python -m opgan.ladder`.
_LADDER = ("--preset", "default", "--no-augment", "--group-weight", "uniform", "--lambda-adv", "0",
           "--lambda-sdr", "0", "--lambda-t", "100", "--no-progress", "--threads", "1")
#: the models every rung compares: the recipe's gated residual U-Net (f=8, q=3), a plain-conv control of the
#: same shape (q=1, PReLU between layers), the candidate with +-262 ms of context (7 dilated blocks, width
#: 16: +17 % multiply-adds; `python -m opgan.receptive`), and a reference model of the field: the `denoiser`
#: package's Demucs with its own architecture (x4 resampling, 5 levels, BiLSTM) at hidden 8 instead of 48,
#: about the U-Net's CPU time per step (`python -m opgan.receptive default default:arch=demucs`); and the same
#: Self-ONN layers in the other representation the field uses: a magnitude mask over STFT frames (models.spectral)
_PLAIN = ("--q", "1", "--activation", "prelu")
_LADDER_MODELS = (("paper", "gated residual U-Net f=8 q=3 (default preset)", ()),
                  ("plain", "plain-conv control: q=1, PReLU", _PLAIN),
                  ("context", "+ 7 dilated Self-ONN blocks at the bottleneck (d 1..64), width 16",
                   ("--context", "dilated", "--context-blocks", "7", "--context-width", "16")),
                  ("demucs", "reference: Demucs (denoiser 0.1.5) hidden 8, depth 5, resample 4 (0.96 M params)",
                   ("--arch", "demucs", "--demucs-hidden", "8", "--demucs-depth", "5", "--demucs-resample", "4")),
                  ("spectral", "Self-ONN mask over STFT frames: n_fft 512, hidden 128, 5 dilated blocks (+-272 ms), "
                   "q=3 (1.38 M params, under half the U-Net's CPU per step)", ("--arch", "spectral")))
_SPECTRAL = _LADDER_MODELS[-1][2]
_DEMUCS = _LADDER_MODELS[3][2]


# Changes to the recipe's U-Net measured on more than one rung (name, what, flags): see _recipe_variant.
_NOGATE = ("nogate", "without the clip gate (the zero-initialised residual kept)", ("--no-gate",))
_FLOOR30 = ("floor30", "with the clip gate floored at 0.3 (the preset: 0.05)", ("--gate-floor", "0.3"))
_FLOOR30_S1 = ("floor30-s1", "with the clip gate floored at 0.3, seed 1", ("--gate-floor", "0.3", "--seed", "1"))

#: rung (c)'s two changes of the task itself: a target keeping early reflections (validation stays on
#: the dry crops), and crops 4x as long at the same samples per step (so the same CPU per step)
_EARLY = ("early", "trained towards a target keeping the first 50 ms of reflections (validated against the dry "
          "clean)", ("--reverb-target", "early"))
_SISDR = ("--lambda-t", "0", "--lambda-mr", "0", "--lambda-sisdr", "1")
_LONG = ("long", "on 16384-sample crops (1 s) in batches of 2: the same samples per step", ("--clip-len", "16384",
                                                                                          "--batch-size", "2"))


#: ambience as the only interferer, from the fetch cache's six packages; validated on the shipped corpus's unheard
#: ambience (ladder-c)
_AMBIENCE6 = ("--data", "~/.cache/opgan", "--background-mix", "ambience:1", "--val-data",
              "runs/ladder/val-background-ambience")


def _seed1(variant: tuple[str, str, tuple[str, ...]]) -> tuple[str, str, tuple[str, ...]]:
    """The same change to the recipe's U-Net with seed 1."""
    name, what, flags = variant
    return f"{name}-s1", f"{what}, seed 1", flags + ("--seed", "1")


_EARLY_NORM_LONG = ("early-norm-long", "trained towards the early-reflection target with --spectral-norm on "
                    "16384-sample crops (1 s) in batches of 2: a crop longer than the tail it should remove",
                    _EARLY[2] + ("--spectral-norm",) + _LONG[2])


def _case_flags(case: str) -> tuple[str, ...]:
    """A rung's data flags: its case alone (for 'all', the paper's composition of cases, the recipe's
    light/clean shares removed) and its validation crop folder; none for rung (a)'s fixed batch."""
    if case == "fixed":
        return ()
    return ("--cases", "" if case == "all" else f"{case}:1", "--val-data", f"runs/ladder/val-{case}")


def _recipe_variant(rung: str, case: str, name: str, what: str, flags: tuple[str, ...]) -> Run:
    """One change to the recipe's U-Net on a rung's case (run ``<rung>-<case>-paper-<name>``)."""
    return Run(f"{rung}-{case}-paper-{name}", f"{case}: the recipe's U-Net {what}", _case_flags(case) + flags)


def _spectral_variant(rung: str, case: str, name: str, what: str, flags: tuple[str, ...]) -> Run:
    """One change to the spectral mask model on a rung's case (run ``<rung>-<case>-spectral-<name>``)."""
    return Run(f"{rung}-{case}-spectral-{name}", f"{case}: the spectral mask model {what}",
               _case_flags(case) + _SPECTRAL + flags)


def _ladder_runs(rung: str, cases: Sequence[str], seeds: Sequence[int] = (0, 1)) -> list[Run]:
    """One run per case x model x seed; each case validates on its own crop folder runs/ladder/val-<case>."""
    runs = []
    for case in cases:
        data = _case_flags(case)
        for model, what, flags in _LADDER_MODELS:
            for seed in seeds:
                tag = f"{rung}-{case}-{model}" + (f"-s{seed}" if seed else "")
                runs.append(Run(tag, f"{case}: {what}" + (f", seed {seed}" if seed else ""),
                                data + flags + (("--seed", str(seed)) if seed else ())))
    return runs


def _distribution_rung(minutes: int) -> tuple[str, ...]:
    """Rungs (b)-(d): 100·L1 + MR-STFT on dynamic mixing, ended by an equal minute cap (steps unbounded)."""
    return _LADDER + ("--lambda-mr", "1", "--max-minutes", str(minutes), "--max-steps", "1000000",
                      "--val-every", "1000", "--ckpt-every", "250", "--val-clips", "0")


SUITES: dict[str, dict] = {
    # (a) overfit one fixed batch: --data and --val-data are the same folder of 8 crops.
    "ladder-a": {
        "kind": "speech",
        "base": _LADDER + ("--no-dynamic", "--cases", "", "--max-steps", "1500", "--val-every", "300",
                           "--ckpt-every", "300", "--val-clips", "0", "--no-val-stoi", "--max-minutes", "0",
                           "--val-data", "DATA"),
        "note": "Rung (a): 100·L1 on one fixed batch of 8 training crops of 4096 samples (input SI-SDR -5..10 dB), "
                "validated on the same crops. --data: `python -m opgan.ladder crops runs/ladder/fixed8 --split "
                "train --n 8 --si-sdr=-5,10`.",
        "runs": _ladder_runs("a", ["fixed"]),
    },
    # (b) AWGN only, (c) each single corruption, (d) the full blend: equal CPU time (the minute cap ends
    # every run), 100·L1 + MR-STFT, on the shipped recordings; validation on unseen speakers' crops.
    "ladder-b": {
        "kind": "speech",
        "base": _distribution_rung(120),
        "note": "Rung (b): AWGN only, 120 CPU-minutes per run on one thread. Validation: `python -m opgan.ladder "
                "crops runs/ladder/val-awgn --split val --case awgn --n 64 --clip-len 16000 --si-sdr=-5,20`.",
        "runs": _ladder_runs("b", ["awgn"]) + [_recipe_variant("b", "awgn", *v) for v in (
            ("voices", "on the fetched corpus (17 full-band training voices, minutes each) instead of the shipped "
             "recordings' 5 short ones", ("--data", "~/.cache/opgan")),
            ("norm", "with its input scaled to a fixed RMS (output scaled back), as Demucs normalises its input",
             ("--input-norm",)),
            ("prelu", "(q=3) with PReLU between layers instead of the tanh bound", ("--activation", "prelu")),
            _NOGATE,
            ("nogate-s1", "without the clip gate, seed 1", ("--no-gate", "--seed", "1")),
            _FLOOR30,
            _FLOOR30_S1,
            ("f16", "at f=16 (0.98 M parameters, about Demucs' 0.96 M; 2.7x the CPU per step, so a third of the "
             "steps)", ("--filters", "16")),
            ("voices-floor30-decay", "with the rung's measured gains combined: the fetched corpus's 17 voices, the "
             "gate floored at 0.3, and the learning rate halved every 15,000 steps",
             ("--data", "~/.cache/opgan", "--gate-floor", "0.3", "--lr-half-life", "15000")))]
        + [_spectral_variant("b", "awgn", "norm", "with every tanh's input normalised per frame (--spectral-norm)",
                             ("--spectral-norm",))]
        + [Run("b-awgn-plain-lr2e4", "awgn: plain-conv control: q=1, PReLU, Adam 2e-4 (at 5e-4 its validation "
               "swings by 5 dB)", _case_flags("awgn") + _PLAIN + ("--lr", "2e-4"))],
    },
    "ladder-c": {
        "kind": "speech",
        "base": _distribution_rung(60),
        "note": "Rung (c): each single corruption (background, reverb), 60 CPU-minutes per run. Validation folders "
                "as rung (b)'s, one per case; the ambience-only folder: `python -m opgan.ladder crops "
                "runs/ladder/val-background-ambience --split val --case background --background-mix ambience:1 "
                "--n 64 --clip-len 16000 --si-sdr=-30,30`.",
        "runs": _ladder_runs("c", ["background", "reverb"]) + [_recipe_variant("c", "reverb", *v) for v in (
            _EARLY, _seed1(_EARLY), _LONG, _seed1(_LONG),
            ("early-nogate", "trained towards the early-reflection target without the clip gate (its gate shut on "
             "most crops with it)", _EARLY[2] + _NOGATE[2]),
            ("sisdr", "trained on -SI-SDR alone instead of 100·L1 + MR-STFT: an objective that cannot be lowered by "
             "turning the output down", _SISDR),
            ("sisdr-nogate", "trained on -SI-SDR alone, without the clip gate (with it the gate fell to its floor)",
             _SISDR + _NOGATE[2]))]
        + [_spectral_variant("c", "reverb", *v) for v in (_EARLY, _LONG)]
        + [_spectral_variant("c", "reverb", "norm", "with every tanh's input normalised per frame (--spectral-norm): "
                             "the change that let it learn ambience", ("--spectral-norm",)),
           _spectral_variant("c", "reverb", "early-norm", "trained towards the early-reflection target with "
                             "--spectral-norm", _EARLY[2] + ("--spectral-norm",)),
           _spectral_variant("c", "reverb", "early-norm-mag", "trained towards the early-reflection target with "
                             "--spectral-norm on the MR-STFT magnitudes alone (no 100·L1): a magnitude mask keeps "
                             "the reverberant phase, which a waveform loss punishes whatever the mask does",
                             _EARLY[2] + ("--spectral-norm", "--lambda-t", "0")),
           _spectral_variant("c", "reverb", *_EARLY_NORM_LONG),
           _spectral_variant("c", "reverb", *_seed1(_EARLY_NORM_LONG))]
        + [_spectral_variant("c", "background", "ambience", "with ambience as the only interferer in training and "
                             "validation (the shipped corpus's pool is by file half other talkers)",
                             ("--background-mix", "ambience:1", "--val-data", "runs/ladder/val-background-ambience")),
           _spectral_variant("c", "background", "ambience-synth", "trained with half its backgrounds synthetic "
                             "(shaped, modulated, bursty or tonal noise, a new one every draw), half the recorded "
                             "ambience; validated on unheard recorded ambience",
                             ("--background-mix", "ambience:1,synthetic:1", "--val-data",
                              "runs/ladder/val-background-ambience")),
           _spectral_variant("c", "background", "ambience-fetch4", "with ambience as the only interferer, drawn "
                             "from the fetch cache's 61 training clips of its first four packages (ufoai, sonic-pi, "
                             "megaglest, supertux) instead of the shipped corpus's 11; validated on the same unheard "
                             "ambience. Sources root: the cache with `background/` holding only those packages' clips",
                             ("--data", "runs/ladder/src-ambience4", "--background-mix", "ambience:1", "--val-data",
                              "runs/ladder/val-background-ambience")),
           _spectral_variant("c", "background", "ambience-fetch6", "with ambience as the only interferer, drawn "
                             "from the fetch cache's 196 training clips of six packages (the four above plus "
                             "lincity-ng city life and scorched3d outdoor scenes); validated on the same unheard "
                             "ambience", _AMBIENCE6),
           _spectral_variant("c", "background", "ambience-fetch6-long", "as ambience-fetch6, on 16384-sample crops "
                             "(1 s) in batches of 2: speech pauses inside a crop show the interferer alone",
                             _AMBIENCE6 + _LONG[2]),
           _spectral_variant("c", "background", "ambience-fetch6-sisdr", "as ambience-fetch6, trained on -SI-SDR "
                             "alone: every crop weighs the same in dB, light ones included", _AMBIENCE6 + _SISDR),
           _spectral_variant("c", "background", "ambience-fetch6-lr1e4", "as ambience-fetch6 at a learning rate of "
                             "1e-4 instead of 5e-4", _AMBIENCE6 + ("--lr", "1e-4")),
           _spectral_variant("c", "background", "ambience-fetch6-norm", "as ambience-fetch6, with every tanh's input "
                             "normalised per frame (--spectral-norm): trained without it, every tanh saturates and "
                             "the mask stops depending on the input", _AMBIENCE6 + ("--spectral-norm",)),
           _spectral_variant("c", "background", "ambience-fetch6-norm-lr1e4", "as ambience-fetch6, with both changes "
                             "that kept it unsaturated: --spectral-norm and a learning rate of 1e-4",
                             _AMBIENCE6 + ("--spectral-norm", "--lr", "1e-4")),
           _spectral_variant("c", "background", "ambience-fetch6-norm-s1", "as ambience-fetch6-norm, seed 1",
                             _AMBIENCE6 + ("--spectral-norm", "--seed", "1")),
           Run("c-background-demucs-ambience-fetch6", "background: the reference (Demucs, as c-background-demucs) "
               "trained as ambience-fetch6", _case_flags("background") + _DEMUCS + _AMBIENCE6)],
    },
    "ladder-d": {
        "kind": "speech",
        "base": _distribution_rung(60),
        "note": "Rung (d): the full mixture (the paper's composition: half blends, half single artifacts), 60 "
                "CPU-minutes per run; validation on `crops runs/ladder/val-all --split val --case all --n 64 "
                "--clip-len 16000`.",
        "runs": _ladder_runs("d", ["all"]) + [_recipe_variant("d", "all", *v) for v in (
            _FLOOR30,
            _FLOOR30_S1,
            _NOGATE,
            ("voices", "on the fetched corpus (17 full-band training voices) instead of the shipped recordings' 5",
             ("--data", "~/.cache/opgan")),
            ("voices-floor30", "on the fetched corpus with the clip gate floored at 0.3",
             ("--data", "~/.cache/opgan", "--gate-floor", "0.3")),
            _EARLY, _seed1(_EARLY))]
        + [_spectral_variant("d", "all", *v) for v in (_EARLY, _seed1(_EARLY))],
    },
    # Loss terms against attenuation, on the first (4-speaker) data: 1200 steps each.
    "loss": {
        "kind": "speech", "base": _SHIP + ("--max-steps", "1200", "--val-every", "400"),
        "note": "Ran on the first `opgan fetch` data (4 speakers, 2 in training; validation: 1 unseen speaker); "
                "the `ship-v1` preset was then called `ship`.",
        "runs": [
            Run("A0-seed", "seed objective: LSGAN + 100·L1 + log-power L1"),
            Run("A1-sisdr-level", "+ SI-SDR + level terms", ("--lambda-sisdr", "1", "--lambda-level", "1")),
            Run("A2-sdr-sisdr", "+ SDR + SI-SDR terms (per clip, dB)", _RECIPE),
            Run("A3-sdr-sisdr-mr", "L1 ×10, MR-STFT instead of log-power L1, + SDR + SI-SDR",
                ("--lambda-t", "10", "--lambda-s", "0", "--lambda-mr", "1") + _RECIPE),
            Run("A4-no-adv", "A3 without the adversarial term (no discriminator)",
                ("--lambda-t", "10", "--lambda-s", "0", "--lambda-mr", "1", "--lambda-adv", "0") + _RECIPE),
            Run("A5-no-l1", "A3 without the L1 term (MR-STFT + SDR + SI-SDR + LSGAN)",
                ("--lambda-t", "0", "--lambda-s", "0", "--lambda-mr", "1") + _RECIPE),
        ],
    },
    # On the second data: learning rate, do-no-harm cases, augmentation, then q at equal steps (2 seeds).
    "recipe": {
        "kind": "speech", "base": _SHIP + _LOSS + _DATA2 + ("--max-steps", "1500", "--val-every", "500"),
        "note": "Ran on the second `opgan fetch` data (20 training speakers; validation: 4 unseen speakers, 64 "
                "clips). The two seed-1 runs were validated on other clips (the validation seed then followed "
                "the training seed), so compare them with each other, not with the seed-0 rows.",
        "runs": [
            Run("B0-lr2e-4", "loss winner on the new data, lr 2e-4 (the ship preset's)"),
            Run("B1-lr1e-3", "lr 1e-3", ("--lr", "1e-3")),
            Run("B2-harmless", "lr 1e-3 + light/clean cases (15 %)", ("--lr", "1e-3") + _HARMLESS),
            Run("B3-augment", "B2 + augmentation (speed, EQ, level, band limits)",
                ("--lr", "1e-3", "--augment") + _HARMLESS),
            Run("B4-q1", "B3 at q=1 (CNN-GAN)", ("--lr", "1e-3", "--augment", "--q", "1") + _HARMLESS),
            Run("B3-augment-s1", "B3, seed 1", ("--lr", "1e-3", "--augment", "--seed", "1") + _HARMLESS),
            Run("B4-q1-s1", "B4, seed 1", ("--lr", "1e-3", "--augment", "--q", "1", "--seed", "1") + _HARMLESS),
        ],
    },
    # The shipped recipe (the `ship` preset: gated residual generator, 100·L1 + SDR capped at 30 dB +
    # LSGAN, light/clean cases, augmentation, sqrt speakers, lr 5e-4) against its alternatives, and
    # q=3 vs q=1 at equal steps (2 seeds; q=1 also runs on, for the equal-time reading).
    "ship": {
        "note": "The second `opgan fetch` data, 64 validation clips of 4 unseen speakers (the same clips for "
                "every seed).",
        "kind": "speech", "base": ("--preset", "ship", "--max-minutes", "0", "--no-progress", "--rirs", "RIRS",
                                   "--max-steps", "2000", "--val-every", "500") + _HARMLESS,
        "runs": [
            Run("C0-recipe", "the ship preset (gated, 100·L1 + SDR≤30 dB + LSGAN, lr 5e-4)"),
            Run("C1-ungated", "without the clip gate", ("--no-gate",)),
            Run("C2-q1", "q=1 (CNN-GAN); runs to 4000 steps for the equal-time reading",
                ("--q", "1", "--max-steps", "4000")),
            Run("C3-seed-loss", "the seed's objective (100·L1 + log-power L1 + LSGAN) in this setup",
                ("--lambda-sdr", "0", "--lambda-s", "1")),
            Run("C0-recipe-s1", "C0, seed 1", ("--seed", "1")),
            Run("C2-q1-s1", "C2, seed 1", ("--q", "1", "--max-steps", "4000", "--seed", "1")),
        ],
    },
}


def _run_dir(runs_dir: Path, run: Run) -> Path:
    return runs_dir / run.name


def _is_done(run_dir: Path) -> bool:
    s = run_dir / "summary.json"
    if not s.is_file():
        return False
    summary = json.loads(s.read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    # equal-time suites end by their minute cap: such a run is finished, not interrupted
    return summary.get("step", 0) >= cfg.get("max_steps", 0) or summary.get("stop_reason") == "max_minutes"


def _command(suite: dict, run: Run, data: str, runs_dir: Path, minutes: float | None = None,
             steps: int | None = None) -> list[str]:
    rirs = str(Path(data) / "rirs_16k_n300_s0.npz")  # made by `opgan build --n-rirs 300` (or gate/ablate docs)
    # RIRS: the sources root's room bank; DATA: the suite's --data itself (e.g. validating on the training crops);
    # a flag "~/..." is expanded as a shell would (the records keep "~")
    flags = [rirs if f == "RIRS" else data if f == "DATA" else str(Path(f).expanduser()) if f.startswith("~/") else f
             for f in (*suite["base"], *run.flags)]
    cmd = [sys.executable, "-m", "opgan", "train", *flags, *(("--data", data) if data else ()),
           "--data-kind", suite["kind"], "--runs-dir", str(runs_dir), "--name", run.name]
    if minutes is not None:  # the last flag wins: one shorter (or longer) equal-time cap for every run
        cmd += ["--max-minutes", f"{minutes:g}"]
    if steps is not None:  # equal steps instead: where models of equal CPU cost per step ran on a shared machine
        cmd += ["--max-steps", str(steps), "--max-minutes", "0"]
    if (runs_dir / run.name / "last.pt").is_file():
        cmd.append("--resume")
    return cmd


def run_suite(name: str, data: str, runs_dir: Path, jobs: int = 1, only: Sequence[str] = (),
              minutes: float | None = None, steps: int | None = None) -> int:
    """Run (or resume) the suite's unfinished runs, `jobs` at a time; returns the number that failed."""
    suite = SUITES[name]
    todo = [r for r in suite["runs"] if (not only or r.name in only) and not _is_done(_run_dir(runs_dir, r))]
    failed = 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    while todo:
        batch, todo = todo[:jobs], todo[jobs:]
        procs = []
        for r in batch:
            log = open(runs_dir / f"{r.name}.log", "a")
            print(f"[ablate] {r.name}: {r.change}", flush=True)
            procs.append((r, subprocess.Popen(_command(suite, r, data, runs_dir, minutes, steps), stdout=log, stderr=subprocess.STDOUT),
                          log))
        for r, p, log in procs:
            rc = p.wait()
            log.close()
            if rc:
                failed += 1
                print(f"[ablate] {r.name} failed (exit {rc}); see {runs_dir / (r.name + '.log')}", file=sys.stderr)
    return failed


def collect(name: str, runs_dir: Path, out: Path = RESULTS_DIR) -> list[str]:
    """Copy each finished run's config, summary and metrics into the committed records."""
    done = []
    for r in SUITES[name]["runs"]:
        src = _run_dir(runs_dir, r)
        if not (src / "metrics.csv").is_file():
            continue
        dst = out / name / r.name
        dst.mkdir(parents=True, exist_ok=True)
        home = str(Path.home())
        gaps = sorted(p.name for p in src.glob("gap*.json"))  # python -m opgan.ladder gap [--out gap-<x>.json]
        for f in ("config.json", "summary.json", "metrics.csv", *gaps):
            if (src / f).is_file():
                if f.endswith(".json"):  # records name no machine's home: ~ as the user typed it
                    (dst / f).write_text((src / f).read_text().replace(f'"{home}/', '"~/'))
                else:
                    shutil.copyfile(src / f, dst / f)
        (dst / "run.json").write_text(json.dumps({"name": r.name, "change": r.change, "flags": list(r.flags),
                                                  "suite": name, "base": list(SUITES[name]["base"]),
                                                  "note": SUITES[name].get("note", "")}, indent=1) + "\n")
        done.append(r.name)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m opgan.ablate", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the suites and their runs")
    r = sub.add_parser("run", help="run (or resume) a suite")
    r.add_argument("suite", choices=sorted(SUITES))
    r.add_argument("--data", default="", help="sources root of the suite's kind (e.g. ~/.cache/opgan), a crop "
                   "folder (ladder-a); '' = the shipped recordings")
    r.add_argument("--runs-dir", type=Path, default=Path("runs/ablate"))
    r.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses one thread)")
    r.add_argument("--only", default="", help="comma-separated run names")
    r.add_argument("--minutes", type=float, default=None,
                   help="training-minute cap for every run instead of the suite's (recorded in each config.json)")
    r.add_argument("--steps", type=int, default=None,
                   help="a step cap for every run instead of any minute cap: equal CPU time for models of equal "
                        "CPU cost per step (`python -m opgan.receptive`) on a machine shared with other work")
    c = sub.add_parser("collect", help="copy finished runs into docs/results/ablations/")
    c.add_argument("suite", choices=sorted(SUITES))
    c.add_argument("--runs-dir", type=Path, default=Path("runs/ablate"))
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, suite in SUITES.items():
            print(f"{name} ({suite['kind']}): {' '.join(suite['base'])}")
            for run in suite["runs"]:
                print(f"  {run.name:<22} {run.change}  {' '.join(run.flags)}")
        return 0
    if args.cmd == "run":
        only = [s for s in args.only.split(",") if s]
        data = str(Path(args.data).expanduser()) if args.data else ""
        if args.minutes is not None and not args.minutes > 0:
            ap.error("--minutes must be > 0")
        if args.steps is not None and not args.steps > 0:
            ap.error("--steps must be > 0")
        if args.steps is not None and args.minutes is not None:
            ap.error("--steps and --minutes are two caps: give one")
        return 1 if run_suite(args.suite, data, args.runs_dir, args.jobs, only, args.minutes, args.steps) else 0
    names = collect(args.suite, args.runs_dir)
    print(f"collected {len(names)} runs into {RESULTS_DIR / args.suite}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
