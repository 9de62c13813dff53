"""`opgan fetch`: download real recordings from Debian packages and decode them into a cache.

No root and no install: `apt-get download` fetches the .deb files, `dpkg -x` unpacks them, and the
audio is decoded into a split-aware layout (G.722 voice prompts -> 16 kHz FLAC; music and ambience
kept as their original Ogg/FLAC):

    <cache>/speech/<speaker>/<lang>_<prompt>.flac   + speech/splits.json   (4 speakers)
    <cache>/music/<track>.ogg                       + music/splits.json    (15 tracks, 22.05 kHz)
    <cache>/background/<clip>.{ogg,flac}            + background/splits.json
    <cache>/licenses/<package>.copyright, <cache>/sources.json (licences, counts, durations)

Re-running skips finished files. Without apt (not Debian/Ubuntu), it says so and exits 2: then point
`opgan build --sources` at any folder of audio instead.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["main", "fetch", "default_cache_dir", "SPEAKERS", "SPLITS_SPEC", "PACKAGES"]

# Voice-prompt packages -> speaker identity (the en and es packs are the same voice, Allison Smith).
SPEAKERS = {
    "en_US_f_Allison": ("allison_f", "en", "CC-BY-SA-3.0", "Allison Smith (theivrvoice.com), Digium"),
    "es_MX_f_Allison": ("allison_f", "es", "CC-BY-SA-3.0", "Allison Smith (theivrvoice.com), Digium"),
    "fr_CA_f_June": ("june_f", "fr", "CC-BY-SA-3.0", "June Wallack (junewallack.com), Digium"),
    "it_IT_m_Carlo": ("carlo_m", "it", "CC-BY-3.0", "Carlo Flora (carloflora.com)"),
    "ru_RU_f_IvrvoiceRU": ("ivrvoice_ru_f", "ru", "CC-BY-3.0", "Maxim Topal (ivrvoice.ru)"),
}
PACKAGES = {
    "speech": [f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it", "ru")],
    "music": ["fillets-ng-data"],
    "background": ["ufoai-sound", "sonic-pi-samples"],
}
# Held-out identities. Speech: the male voice stays in train (otherwise training hears no male
# speaker); the French (June) and Russian voices are unseen speakers for test and validation.
SPLITS_SPEC = {
    "speech": {"train": ["allison_f", "carlo_m"], "val": ["ivrvoice_ru_f"], "test": ["june_f"]},
    "music": {"val": ["rybky05", "menu"], "test": ["rybky03", "rybky10", "kufrik"]},
    "background": {"val": ["ufoai_fire", "ufoai_waterfontain", "ufoai_hum2", "sonicpi_ambi_drone"],
                   "test": ["ufoai_city_abnd_ufoai_atm", "ufoai_thunder2", "ufoai_water01",
                            "ufoai_smallfire", "sonicpi_ambi_glass_hum"]},
}


# Prompts that are tones or silence, not speech.
_NOT_SPEECH = {"beep", "beeperr", "ascending-2tone", "descending-2tone"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("OPGAN_CACHE") or Path.home() / ".cache" / "opgan")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _download(pkgs: list[str], debs: Path, update: bool) -> dict[str, Path]:
    debs.mkdir(parents=True, exist_ok=True)
    have = {p: next(iter(sorted(debs.glob(f"{p}_*.deb"))), None) for p in pkgs}
    missing = [p for p, d in have.items() if d is None]
    if missing:
        if update:
            r = _run(["apt-get", "update"], debs)
            if r.returncode != 0:
                print(f"warning: apt-get update failed ({r.stderr.strip()[-300:]}); trying the download anyway")
        r = _run(["apt-get", "download", *missing], debs)
        if r.returncode != 0 and not update:
            print("apt-get download failed; running apt-get update once and retrying ...")
            _run(["apt-get", "update"], debs)
            r = _run(["apt-get", "download", *missing], debs)
        if r.returncode != 0:
            raise RuntimeError(f"apt-get download {' '.join(missing)} failed:\n{r.stderr.strip()[-800:]}")
    out = {}
    for p in pkgs:
        d = next(iter(sorted(debs.glob(f"{p}_*.deb"))), None)
        if d is None:
            raise RuntimeError(f"{p}: no .deb after apt-get download")
        out[p] = d
    return out


def _extract(deb: Path, dest: Path) -> Path:
    if not (dest / ".done").exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        r = _run(["dpkg", "-x", str(deb), str(dest)], dest)
        if r.returncode != 0:
            raise RuntimeError(f"dpkg -x {deb} failed: {r.stderr.strip()[-500:]}")
        (dest / ".done").touch()
    return dest


def _write_flac(path: Path, x: np.ndarray, sr: int) -> None:
    from .audio import save_audio

    save_audio(path, x, sr, subtype="PCM_16", overwrite=True)


def _decode_speech(root: Path, cache: Path) -> dict:
    from G722 import G722

    counts: dict[str, int] = {}
    for voice_dir in sorted(root.glob("usr/share/asterisk/sounds/*")):
        if voice_dir.name not in SPEAKERS:
            continue
        speaker, lang, _, _ = SPEAKERS[voice_dir.name]
        for f in sorted(voice_dir.rglob("*.g722")):
            rel = f.relative_to(voice_dir).with_suffix("")
            if rel.parts[0] == "silence" or rel.name in _NOT_SPEECH:
                continue
            out = cache / "speech" / speaker / f"{lang}_{'_'.join(rel.parts)}.flac"
            counts[speaker] = counts.get(speaker, 0) + 1
            if out.exists():
                continue
            pcm = np.asarray(G722(16000, 64000).decode(f.read_bytes()), dtype=np.float32) / 32768.0
            if pcm.size == 0 or not np.any(pcm):
                counts[speaker] -= 1
                continue
            _write_flac(out, pcm, 16000)
    return counts


def _parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """(file patterns, licence) per paragraph of a machine-readable debian/copyright."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        m_files = re.search(r"^Files:(.*?)(?=^\S|\Z)", para, re.S | re.M)
        m_lic = re.search(r"^License:\s*(\S+)", para, re.M)
        if m_files and m_lic:
            out.append((m_files.group(1).split(), m_lic.group(1)))
    return out


def _license_for(path: str, dep5: list[tuple[list[str], str]], default: str) -> str:
    from fnmatch import fnmatch

    lic = default
    for pats, l in dep5:  # the last matching paragraph wins (DEP-5 rule)
        if any(fnmatch(path, p) for p in pats):
            lic = l
    return lic


def _copy_background(ufo: Path, sonic: Path, cache: Path, lic_dir: Path) -> dict[str, str]:
    bg = cache / "background"
    bg.mkdir(parents=True, exist_ok=True)
    licenses: dict[str, str] = {}
    dep5 = _parse_dep5((lic_dir / "ufoai-sound.copyright").read_text(errors="replace"))
    with zipfile.ZipFile(ufo / "usr/share/games/ufoai/base/0snd.pk3") as z:
        for info in z.infolist():
            name = info.filename
            if not (name.startswith("sound/ambience/") and name.endswith(".ogg")):
                continue
            stem = Path(name).stem
            if "alien" in stem:  # synthetic sci-fi effects, not real-world background
                continue
            out = bg / f"ufoai_{stem}.ogg"
            licenses[out.name] = _license_for(f"base/{name}", dep5, "GPL-2+")
            if not out.exists():
                out.write_bytes(z.read(info))
    for f in sorted(sonic.glob("usr/share/sonic-pi/samples/ambi_*.flac")):
        out = bg / f"sonicpi_{f.name}"
        licenses[out.name] = "CC0-1.0"
        if not out.exists():
            shutil.copyfile(f, out)
    return licenses


def _durations(folder: Path) -> tuple[int, float]:
    import soundfile as sf

    files = [p for p in folder.rglob("*") if p.suffix in (".flac", ".ogg", ".wav")]
    return len(files), float(sum(sf.info(str(p)).duration for p in files))


def fetch(cache: Path, update: bool = False, keep_debs: bool = True) -> dict:
    """Download, unpack and decode all sources into `cache`; returns the sources.json content."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise EnvironmentError(
            "apt-get/dpkg not found: `opgan fetch` needs a Debian/Ubuntu system. Point `opgan build "
            "--sources DIR` at any folder of audio instead (wav/flac/ogg; sub-folders = speakers/tracks), "
            "or use the shipped corpus in opgan/assets/audio/corpus.")
    cache.mkdir(parents=True, exist_ok=True)
    all_pkgs = [p for ps in PACKAGES.values() for p in ps]
    print(f"downloading {len(all_pkgs)} Debian packages into {cache / 'debs'} ...")
    debs = _download(all_pkgs, cache / "debs", update)
    lic_dir = cache / "licenses"
    lic_dir.mkdir(exist_ok=True)
    roots = {}
    for p, deb in debs.items():
        roots[p] = _extract(deb, cache / "_extract" / p)
        for cp in roots[p].glob("usr/share/doc/*/copyright"):
            shutil.copyfile(cp, lic_dir / f"{p}.copyright")
    print("decoding G.722 voice prompts to 16 kHz FLAC ...")
    speakers: dict[str, int] = {}
    for p in PACKAGES["speech"]:
        for k, v in _decode_speech(roots[p], cache).items():
            speakers[k] = speakers.get(k, 0) + v
    music = cache / "music"
    music.mkdir(exist_ok=True)
    for f in sorted(roots["fillets-ng-data"].glob("usr/share/games/fillets-ng/music/*.ogg")):
        if not (music / f.name).exists():
            shutil.copyfile(f, music / f.name)
    bg_lic = _copy_background(roots["ufoai-sound"], roots["sonic-pi-samples"], cache, lic_dir)
    for kind, spec in SPLITS_SPEC.items():
        (cache / kind / "splits.json").write_text(json.dumps(spec, indent=1) + "\n")
    summary: dict = {"packages": {p: d.name for p, d in debs.items()}, "kinds": {}}
    for kind in ("speech", "music", "background"):
        n, dur = _durations(cache / kind)
        summary["kinds"][kind] = {"files": n, "minutes": round(dur / 60, 2)}
    summary["speech_speakers"] = {
        sp: {"prompts": speakers.get(sp, 0), "languages": sorted({v[1] for k, v in SPEAKERS.items() if v[0] == sp}),
             "license": next(v[2] for v in SPEAKERS.values() if v[0] == sp),
             "attribution": next(v[3] for v in SPEAKERS.values() if v[0] == sp)}
        for sp in sorted({v[0] for v in SPEAKERS.values()})
    }
    summary["music_license"] = "GPL-2 (fillets-ng-data, Fish Fillets NG, ALTAR interactive / Danihelka)"
    summary["background_licenses"] = bg_lic
    summary["splits"] = SPLITS_SPEC
    (cache / "sources.json").write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(cache / "_extract", ignore_errors=True)  # decoded copies are kept; re-runs re-extract
    if not keep_debs:
        shutil.rmtree(cache / "debs", ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opgan fetch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache folder (default: $OPGAN_CACHE or ~/.cache/opgan)")
    ap.add_argument("--update", action="store_true", help="run `apt-get update` before downloading")
    ap.add_argument("--drop-debs", action="store_true", help="delete the downloaded .deb files afterwards")
    args = ap.parse_args(argv)
    cache = (args.cache or default_cache_dir()).expanduser()
    try:
        summary = fetch(cache, update=args.update, keep_debs=not args.drop_debs)
    except (EnvironmentError, RuntimeError) as exc:
        print(f"opgan fetch: {exc}", file=sys.stderr)
        return 2
    for kind, v in summary["kinds"].items():
        print(f"{kind:>10}: {v['files']:5d} files, {v['minutes']:7.1f} min -> {cache / kind}")
    print(f"licences: {cache / 'licenses'}, summary: {cache / 'sources.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
