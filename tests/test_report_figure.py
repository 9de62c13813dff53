"""README's before/after figure: made from the shipped gate clips by `python -m opgan.report figure`."""
from __future__ import annotations

import pytest

from opgan import report


def test_figure_draws_gate_clips_and_prints_their_scores(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert report.main(["figure", "--clips", "speech_awgn_heavy_1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = capsys.readouterr().out.splitlines()[0]
    # the shipped speech model clearly helps on this heavy-noise clip (the gate pins its mean, not this clip)
    assert line.startswith("speech_awgn_heavy_1: awgn, input SDR +2.9 dB; shipped speech model: SDRi +")
    # never overwrites without --overwrite; bad input is one line with exit 2
    assert report.main(["figure", "--clips", "speech_awgn_heavy_1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("clips,out,msg", [("nosuch", "f.png", "no gate clip 'nosuch'"),
                                           ("speech_awgn_heavy_1", "f.jpg", "must end in .png"),
                                           (",", "f.png", "names no clip")])
def test_figure_bad_input_is_one_line(tmp_path, capsys, clips, out, msg):
    assert report.main(["figure", "--clips", clips, "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / out).exists()
