"""Tables in README and docs are generated from committed records: in sync, and rendered honestly."""
from __future__ import annotations

import json

import pytest

from opgan import tables


def test_readme_and_docs_match_their_records():
    stale = [p.name for p in tables.marked_files() if tables.replace_blocks(p.read_text()) != p.read_text()]
    assert not stale, f"out of date: {stale}; run `python -m opgan.tables`"


def test_replace_blocks_rewrites_only_marked_bodies():
    text = "a\n<!-- table:x:1 -->\nold\n<!-- /table:x:1 -->\nb\n<!-- table:y -->\n<!-- /table:y -->\n"
    out = tables.replace_blocks(text, render=lambda name: f"[{name}]\n")
    assert out == "a\n<!-- table:x:1 -->\n[x:1]\n<!-- /table:x:1 -->\nb\n<!-- table:y -->\n[y]\n<!-- /table:y -->\n"
    with pytest.raises(KeyError):
        tables.replace_blocks("<!-- table:nosuch -->\n<!-- /table:nosuch -->\n")


def test_one_splicer_for_every_generator(tmp_path):
    """A rendering of None keeps the block's body (another generator's kind: the speed tables of
    bench/tables.py, left alone here); update_files rewrites, or with check only names, stale files."""
    text = "<!-- table:speed -->\nfrom bench\n<!-- /table:speed -->\n<!-- table:x -->\nold\n<!-- /table:x -->\n"
    assert tables.block_names(text) == ["speed", "x"]
    assert tables.replace_blocks(text, render=lambda n: None if n == "speed" else "new\n") == text.replace("old", "new")
    assert tables.replace_blocks(text.split("<!-- table:x")[0]) == text.split("<!-- table:x")[0]
    f = tmp_path / "a.md"
    f.write_text(text)
    assert tables.update_files([f], render=lambda n: "new\n" if n == "x" else None, check=True) == [f]
    assert f.read_text() == text
    assert tables.update_files([f], render=lambda n: "new\n" if n == "x" else None) == [f]
    assert f.read_text() == text.replace("old", "new") and not list(tmp_path.glob(".*.tmp"))
    assert tables.update_files([f], render=lambda n: "new\n" if n == "x" else None, check=True) == []


def test_ablation_table_reads_equal_steps_and_marks_missing_values(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    run = tmp_path / "ablations" / "s" / "R1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "R1", "change": "a change", "base": ["--max-steps", "4"],
                                              "note": "n"}))
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_out,level_db,light_sdr_gain,light_worst_gain,score\n"
    (run / "metrics.csv").write_text(header + "2,60,1,2,0.5,0,,,2\n4,120,1.5,-inf,0.61,-1,0.2,-0.4,1\n"
                                     "6,180,9,9,0.9,0,0,0,9\n")
    out = tables.ablation_table("s")
    row = next(ln for ln in out.splitlines() if ln.startswith("| R1"))
    assert row == "| R1 | a change | 4 | 2 | +1.50 | -∞ | 0.610 | -1.00 | +0.20 / -0.40 | +1.00 |"
    assert tables.ablation_table("missing").startswith("_(no records")


def test_ladder_table_compares_runs_at_equal_steps_with_their_gap(tmp_path, monkeypatch):
    """Marks read the latest validation at or before them (a run that went on is cut at the budget),
    the mean is of the last three validations within it, and a run without gap.json shows dashes."""
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_out,level_db,light_sdr_gain,light_worst_gain,score\n"
    for name, vals in (("A", [1, 2, 3, 4, 5, 6]), ("B", [2, 2, 2])):
        run = tmp_path / "ablations" / "s" / name
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"name": name, "change": f"change {name}", "base": []}))
        rows = "".join(f"{1000 * (i + 1)},{60 * i},0,{v},,,,,{v}\n" for i, v in enumerate(vals))
        (run / "metrics.csv").write_text(header + rows)
    gap = {"step": 3000, "train": {"si_sdr_gain": 5.5}, "val": {"si_sdr_gain": 3.0}, "si_sdr_gain_gap": 2.5}
    (tmp_path / "ablations" / "s" / "A" / "gap.json").write_text(json.dumps(gap))
    out = tables.ladder_table("s", "4500")
    assert "SI-SDRi @2000 | @3000 | @4500 | mean of last 3 to 4500" in out
    rows = {ln.split(" | ")[0][2:]: ln for ln in out.splitlines() if ln.startswith("| A") or ln.startswith("| B")}
    assert rows["A"] == "| A | change A | +2.00 | +3.00 | +4.00 | +3.00 | 6000, +6.00 | +5.50 | +3.00 | +2.50 (3000) |"
    assert rows["B"] == "| B | change B | +2.00 | +2.00 | – | +2.00 | 3000, +2.00 | – | – | – |"  # ended first
    assert tables.ladder_table("missing", "10").startswith("_(no records")


def test_curve_table_thins_a_long_run_but_keeps_its_last_row(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_out,level_db,light_sdr_gain,light_worst_gain,score\n"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.csv").write_text(header + "".join(f"{s},{s},0,1,,,,,1\n" for s in (1000, 2000, 3000, 4000, 4100)))
    steps = lambda out: [ln.split(" | ")[0][2:] for ln in out.splitlines() if ln[:3] in ("| 1", "| 2", "| 3", "| 4")]  # noqa: E731
    assert steps(tables.curve_table("r")) == ["1000", "2000", "3000", "4000", "4100"]
    assert steps(tables.curve_table("r", "2000")) == ["2000", "4000", "4100"]


def test_quality_table_shows_the_octave_balance_only_when_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    allc = {"sdr_imp": 1.0, "si_sdr_imp": 0.5, "stoi": 0.8, "pesq": 2.0}
    rec = {"methods": {"identity": "unprocessed input", "opgan": "Op-GAN"}, "pesq": True,
           "by_case": {"identity": {"all": allc}, "opgan": {"all": allc}}, "level_err_db": {"identity": 0.0, "opgan": -1.0},
           "do_no_harm": {}, "rtf": {}, "n_clips": 2, "data": "x", "model": "speech",
           "verdict": {"rule": "r", "text": "t"}}
    (tmp_path / "eval-a.json").write_text(json.dumps(rec))
    assert "level vs clean in" not in tables.quality_table("a")
    rec["band_balance_db"] = {"identity": {"band_1_2k": 0.0, "band_2_4k": 0.0, "band_4_8k": 0.0},
                              "opgan": {"band_1_2k": -1.0, "band_2_4k": -3.5, "band_4_8k": -13.25}}
    (tmp_path / "eval-a.json").write_text(json.dumps(rec))
    text = tables.quality_table("a")
    assert "level vs clean in 1-2k / 2-4k / 4-8k Hz, dB" in text
    assert "| Op-GAN |" in text and "-1.00 / -3.50 / -13.25 |" in text


def test_versus_table_reads_two_versions_per_set(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)

    def rec(si: float, light: float) -> dict:
        allc = {"sdr_imp": si + 1, "si_sdr_imp": si, "stoi": 0.8, "pesq": 2.0}
        return {"methods": {"identity": "unprocessed input", "silent": "silent", "opgan": "Op-GAN"},
                "reference_methods": ["identity", "silent"],
                "by_case": {"identity": {"all": {"stoi": 0.75, "pesq": 1.9}}, "silent": {"all": {}},
                            "opgan": {"all": allc}},
                "do_no_harm": {"methods": {"opgan": {"mean_sdr_imp": light, "worst_sdr_imp": light - 2}}},
                "level_err_db": {"opgan": -1.0}, "band_balance_db": {"opgan": {"band_4_8k": -13.25}}}

    for folder, si, light in (("old", -3.66, -16.0), ("new", 0.65, 0.03)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "eval-speech-sentences.json").write_text(json.dumps(rec(si, light)))
    text = tables.versus_table("old,new:speech-sentences")
    assert "| speech-sentences | -2.66 → +1.65 | -3.66 → +0.65 | 0.800 → 0.800 (0.750) |" in text
    assert "-16.00 / -18.00 → +0.03 / -1.97" in text and "-13.25 → -13.25" in text
    assert "no record at" in tables.versus_table("old,new:speech-letters")


def test_steps_table_reads_runs_at_the_same_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_out,level_db,light_sdr_gain,light_worst_gain,score\n"
    for name, gains in (("a", (1.0, 2.0, 1.5)), ("b", (0.5, 1.0))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(header + "".join(
            f"{1000 * (i + 1)},{1800 * (i + 1)},0,{g},,,,-{i},{g}\n" for i, g in enumerate(gains)))
    text = tables.steps_table("a,b:1000,3000")
    assert "light worst at best | train h to @3000 |" in text
    assert "| `a` | +1.00 | +1.50 | +1.25 | 2000, +2.00 | -1.00 | 1.50 |" in text  # three rows of half an hour
    assert "| `b` | +0.50 | – | +0.50 | 2000, +1.00 | -1.00 | – |" in text
    assert "no training record" in tables.steps_table("a,c:1000")
    # a named .csv (a weight-averaged run's raw weights) reads the same way
    (tmp_path / "a" / "metrics-raw.csv").write_text((tmp_path / "b" / "metrics.csv").read_text())
    text = tables.steps_table("a,a/metrics-raw.csv:1000,3000")
    assert "| `a/metrics-raw.csv` | +0.50 | – | +0.50 | 2000, +1.00 | -1.00 | – |" in text
    assert "`a/metrics.csv`, `a/metrics-raw.csv`" in text


def test_swing_table_reads_the_spread_of_a_span(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_out,level_db,light_sdr_gain,light_worst_gain,score\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.csv").write_text(header + "".join(
        f"{1000 * (i + 1)},0,0,{g},,,,{w},{g}\n" for i, (g, w) in enumerate(((9.0, -9.0), (1.0, -1.0), (2.0, -3.0)))))
    text = tables.swing_table("a:2000-3000")
    assert "| `a` | 2 | +1.50 | +1.00 | +2.00 | -2.00 | -3.00 |" in text  # step 1000 is outside the span
    assert "no validation" in tables.swing_table("a:5000-6000") and "no training record" in tables.swing_table("b:0-1")


def test_headroom_table_needs_the_oracle_row(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    case = lambda si: {"all": {"si_sdr_imp": si}, "awgn": {"si_sdr_imp": 2 * si}}  # noqa: E731
    rec = {"methods": {"identity": "unprocessed input", "opgan": "Op-GAN", "dfn": "DeepFilterNet3"},
           "reference_methods": ["identity"], "by_case": {"identity": case(0), "opgan": case(1.0), "dfn": case(0.5)}}
    (tmp_path / "eval-s.json").write_text(json.dumps(rec))
    assert "no oracle row" in tables.headroom_table("s")
    rec["methods"]["oracle"] = "oracle"
    rec["reference_methods"].append("oracle")
    rec["by_case"]["oracle"] = case(4.0)
    (tmp_path / "eval-s.json").write_text(json.dumps(rec))
    text = tables.headroom_table("s")
    assert "| s | Op-GAN | +1.00 | +2.00 |" in text and "| s | oracle | +4.00 | +8.00 |" in text
    assert "| s | DeepFilterNet3 | +0.50 | +1.00 |" in text


def test_clean_input_table_renders_each_set(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    per = {"n": 3, "si_sdr_mean": 8.91, "si_sdr_min": 3.17, "bands_db": {"band_1_2k": -4.18, "band_4_8k": -14.34}}
    rec = {"command": "python bench/clean_input.py a b", "date": "2026-12-05", "model": "speech",
           "methods": {"opgan": "Op-GAN"}, "sets": {"a": {"opgan": per}, "b": {"opgan": {**per, "si_sdr_mean": 36.0}}}}
    (tmp_path / "clean-x.json").write_text(json.dumps(rec))
    text = tables._renderer("clean:clean-x")()
    assert "`a`: 1-2k / 4-8k Hz vs clean, dB" in text and "`b`: SI-SDR mean (min)" in text
    assert "| Op-GAN | 8.91 (3.17) | -4.18 / -14.34 | 36.00 (3.17) | -4.18 / -14.34 |" in text
    assert "made by `python bench/clean_input.py a b`" in text


def test_best_table_reads_each_runs_best_step_and_every_gap_record(tmp_path, monkeypatch):
    """The best validation by score within the step budget, STOI with its input, and one cell per gap
    record (gap.json named by its validation folder, gap-<x>.json by <x>)."""
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    run = tmp_path / "ablations" / "s" / "A"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "A", "change": "change A", "base": []}))
    header = "step,time_s,sdr_gain,si_sdr_gain,stoi_in,stoi_out,level_db,score\n"
    (run / "metrics.csv").write_text(header + "1000,1,2,1,0.7,0.71,-1,1\n2000,2,3,2,0.7,0.72,-2,2\n"
                                     "3000,3,1,0.5,0.7,0.7,0,0.5\n4000,4,9,9,0.7,0.9,0,9\n")
    (run / "gap.json").write_text(json.dumps({"val_folder": "runs/ladder/val-reverb", "train": {"si_sdr_gain": 1.5},
                                              "val": {"si_sdr_gain": 0.5}}))
    (run / "gap-early.json").write_text(json.dumps({"train": {"si_sdr_gain": 4, "gate_median": 0.2},
                                                    "val": {"si_sdr_gain": 3, "gate_median": 0.1}}))
    out = tables.best_table("s:3000:A")
    row = next(ln for ln in out.splitlines() if ln.startswith("| A"))
    assert row == ("| A | change A | 2000 | +2.00 | +3.00 | 0.720 (0.700) | -2.00 | +1.17 | "
                   "early: +4.00 / +3.00 (gate median 0.20 / 0.10); val-reverb: +1.50 / +0.50 |")
    assert tables.best_table("s:3000:A,B").startswith("_(missing record")
