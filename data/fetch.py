"""`opgan fetch`: download real recordings from Debian packages and decode them into a cache.

No root and no install: `apt-get download` fetches the .deb files, `dpkg -x` unpacks them, and the
audio is decoded into a split-aware layout (what comes from where: `opgan.data.catalog`):

    <cache>/speech/<speaker>/<lang>_<prompt>.flac  16 kHz FLAC (telephone prompts: 8 kHz upsampled)
    <cache>/speech/splits.json, speech/speakers.json  (language, sex and how it is known, F0, credits)
    <cache>/music/<track>.ogg                        the first 15 pieces, original Ogg
    <cache>/music/<track>/<track>_<k>.flac           other pieces: 22.05 kHz mono, 60 s parts
    <cache>/background/<clip>.{ogg,flac,wav}         original files; + music/ and background/splits.json
    <cache>/licenses/<package>.copyright, <cache>/sources.json (licences, labels, splits, minutes)

Re-running skips finished work: each package's results are recorded in `<cache>/_state/`, so a
finished package is neither unpacked nor decoded again. Without apt (not Debian/Ubuntu), it says so
and exits 2: then point `opgan build --sources` at any folder of audio instead.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .catalog import (BACKGROUND, BACKGROUND_SPLITS, MUSIC, MUSIC_SPLITS, PACKAGES, SENTENCE_VOICES, SPEECH_SPLITS,
                      VOICES, BackgroundSource, MusicSource, Voice)
from .labels import hash_split, median_f0, piece_families, sex_label, trim_silence, voice_groups

__all__ = ["main", "fetch", "fetch_sentences", "SENTENCES_DIR", "default_cache_dir", "PACKAGES", "speaker_splits", "parse_dep5", "license_for"]

log = logging.getLogger(__name__)

STATE_VERSION = 2
SPEECH_SR = 16000
MUSIC_SR = 22050
MUSIC_PART_S = 60.0
MIN_PIECE_S = 30.0
SPLITS = ("train", "val", "test")
SENTENCES_DIR = "sentences"  # <cache>/sentences: the eval-only sentence set's own sources root
# Prompts that are tones or silence, not speech.
_NOT_SPEECH = {"beep", "beeperr", "ascending-2tone", "descending-2tone"}
_F0_FILES = 80  # files per voice (evenly spaced) used for the F0 estimate


def default_cache_dir() -> Path:
    return Path(os.environ.get("OPGAN_CACHE") or Path.home() / ".cache" / "opgan")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _deb_of(debs: Path, pkg: str) -> Path | None:
    return next(iter(sorted(debs.glob(f"{pkg}_*.deb"))), None)


def _download(pkgs: list[str], debs: Path, update: bool) -> dict[str, Path]:
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if _deb_of(debs, p) is None]
    if missing:
        if update:
            r = _run(["apt-get", "update"], debs)
            if r.returncode != 0:
                log.warning("apt-get update failed (%s); trying the download anyway", r.stderr.strip()[-300:])
        r = _run(["apt-get", "download", *missing], debs)
        if r.returncode != 0 and not update:
            log.info("apt-get download failed; running apt-get update once and retrying ...")
            _run(["apt-get", "update"], debs)
            r = _run(["apt-get", "download", *missing], debs)
        if r.returncode != 0:
            raise RuntimeError(f"apt-get download {' '.join(missing)} failed:\n{r.stderr.strip()[-800:]}")
    out = {}
    for p in pkgs:
        d = _deb_of(debs, p)
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


def _write_audio(path: Path, x: np.ndarray, sr: int) -> None:
    from .audio import save_audio

    save_audio(path, x, sr, subtype="PCM_16", overwrite=True)


def _copy_bytes(data: bytes, out: Path) -> None:
    """Write atomically, so an interrupted run never leaves a truncated file that looks finished."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)


# --- licences ----------------------------------------------------------------------------------

def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """(file patterns, licence) per paragraph of a machine-readable (DEP-5) debian/copyright;
    [] for a free-form copyright file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        m_files = re.search(r"^Files:(.*?)(?=^\S|\Z)", para, re.S | re.M)
        m_lic = re.search(r"^License:\s*(\S+)", para, re.M)
        if m_files and m_lic:
            out.append((m_files.group(1).split(), m_lic.group(1)))
    return out


def license_for(path: str, dep5: list[tuple[list[str], str]], default: str,
                prefix: tuple[str, str] = ("", "")) -> str:
    """Licence of an installed file: its path mapped to the source tree (`prefix` = installed
    prefix, source prefix) and matched against the DEP-5 paragraphs (the last match wins)."""
    if prefix[0] and path.startswith(prefix[0]):
        path = path[len(prefix[0]):]
    path = prefix[1] + path
    lic = default
    for pats, name in dep5:
        if any(fnmatch(path, p) for p in pats):
            lic = name
    return lic


def _dep5(lic_dir: Path, pkg: str) -> list[tuple[list[str], str]]:
    f = lic_dir / f"{pkg}.copyright"
    return parse_dep5(f.read_text(errors="replace")) if f.is_file() else []


# --- speech ------------------------------------------------------------------------------------

def _decode_voice_file(path: Path, codec: str) -> tuple[np.ndarray, int]:
    if codec == "g722":
        from G722 import G722

        return np.asarray(G722(16000, 64000).decode(path.read_bytes()), dtype=np.float32) / 32768.0, 16000
    if codec == "gsm":
        x, sr = sf.read(str(path), format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float32")
        return x, sr
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), int(sr)


def _voice_files(v: Voice, root: Path) -> Iterator[tuple[Path, Path]]:
    """(file, path relative to the voice folder) of the speech files of one voice."""
    base = root / v.root
    exts = {"g722": (".g722",), "gsm": (".gsm",)}.get(v.codec, (".wav", ".ogg", ".flac"))
    for f in sorted(base.rglob("*")):
        rel = f.relative_to(base)
        if (f.suffix.lower() in exts and f.is_file() and rel.parts[0] not in v.skip
                and f.stem not in v.skip and f.stem not in _NOT_SPEECH
                and (not v.match or re.search(v.match, "/" + rel.as_posix()))):
            yield f, rel


def _prepare(x: np.ndarray, sr: int, trim: bool) -> tuple[np.ndarray, int] | None:
    """Mono float at 16 kHz; None if silent/empty. Narrow-band (8 kHz) prompts are upsampled too, so
    every consumer (builder, dynamic mixing, pack) takes them alike; `source_rate` in speakers.json
    says that they hold nothing above 4 kHz."""
    from .audio import resample

    if x.size == 0 or not np.all(np.isfinite(x)) or not np.any(x):
        return None
    if sr != SPEECH_SR:
        x = resample(x, sr, SPEECH_SR)
    if trim:
        x = trim_silence(x, SPEECH_SR)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if x.size < int(0.2 * SPEECH_SR) or peak == 0.0:
        return None
    if peak > 0.999:
        x = x * (0.999 / peak)
    return x.astype(np.float32), SPEECH_SR


def _sample_f0(paths: list[Path]) -> float | None:
    pick = paths if len(paths) <= _F0_FILES else [paths[int(i)] for i in np.linspace(0, len(paths) - 1, _F0_FILES)]
    sigs = []
    for p in pick:
        x, sr = sf.read(str(p), dtype="float32")
        sigs.append((x, sr))
    return median_f0(sigs)


def _fetch_voice(v: Voice, root: Path, cache: Path) -> list[dict]:
    """Decode one voice folder into speech/<speaker>[_<part>]/ and label it; returns one record per
    speaker group written."""
    by_part: dict[str, list[tuple[Path, Path]]] = {}
    for f, rel in _voice_files(v, root):
        part = rel.parts[0] if v.per_subdir and len(rel.parts) > 1 else ""
        by_part.setdefault(part, []).append((f, rel))
    if not by_part:
        raise RuntimeError(f"{v.package}: no speech files under {v.root}")
    tmp = cache / "_tmp" / f"{v.speaker}_{v.lang}"  # outside speech/, so never taken for a speaker
    shutil.rmtree(tmp, ignore_errors=True)
    written: dict[str, list[Path]] = {}
    rates: set[int] = set()
    for part, files in by_part.items():
        for f, rel in files:
            try:
                x, sr = _decode_voice_file(f, v.codec)
            except Exception as exc:  # a damaged prompt costs that prompt, not the fetch
                log.warning("skipping %s: unreadable (%s)", f, exc)
                continue
            y = _prepare(x, sr, v.trim)
            if y is None:
                continue
            out = tmp / f"{v.lang}_{'_'.join(rel.with_suffix('').parts)}.flac"
            _write_audio(out, *y)
            rates.add(sr)
            written.setdefault(part, []).append(out)
    if not written:
        raise RuntimeError(f"{v.package}: no usable speech under {v.root} (all files silent or unreadable)")
    f0 = {part: _sample_f0(paths) for part, paths in written.items()}
    groups = voice_groups(f0) if v.per_subdir else [sorted(written)]
    records = []
    for parts in groups:
        speaker = v.speaker if len(groups) == 1 else f"{v.speaker}_{'_'.join(p for p in parts if p)}"
        dest = cache / "speech" / speaker
        dest.mkdir(parents=True, exist_ok=True)
        paths = [p for part in parts for p in written.get(part, [])]
        for p in paths:
            os.replace(p, dest / p.name)
        g_f0 = f0[parts[0]] if len(parts) == 1 else _sample_f0([dest / p.name for p in paths])
        sex, source = sex_label(v.sex, v.sex_source, g_f0)
        records.append({
            "speaker": speaker, "base": v.speaker, "languages": [v.lang], "sex": sex, "sex_source": source,
            "f0_median_hz": None if g_f0 is None else round(g_f0, 1), "license": v.license,
            "attribution": v.attribution, "packages": [v.package], "source_rate": min(rates) if rates else None,
            "prompts": len(paths), "note": v.note,
            **({"parts": [p for p in parts if p]} if v.per_subdir else {}),
        })
    shutil.rmtree(tmp, ignore_errors=True)
    return records


def _merge_speakers(records: list[dict]) -> dict[str, dict]:
    """One entry per speaker id (a voice recorded in two packages, e.g. Allison's en and es)."""
    out: dict[str, dict] = {}
    for r in records:
        s = out.get(r["speaker"])
        if s is None:
            out[r["speaker"]] = {**r, "languages": list(r["languages"]), "packages": list(r["packages"])}
            continue
        s["languages"] = sorted(set(s["languages"]) | set(r["languages"]))
        s["packages"] = sorted(set(s["packages"]) | set(r["packages"]))
        s["prompts"] += r["prompts"]
    return out


def speaker_splits(speakers: dict[str, dict], spec: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """{split: [speaker ids]}: a speaker is held out when its id or its base id is listed in `spec`
    (default: the catalog's SPEECH_SPLITS)."""
    spec = SPEECH_SPLITS if spec is None else spec
    where = {b: s for s in ("val", "test") for b in spec.get(s, [])}
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for sp, rec in sorted(speakers.items()):
        out[where.get(sp, where.get(rec.get("base", sp), "train"))].append(sp)
    return out


# --- music -------------------------------------------------------------------------------------

def _track_files(m: MusicSource, root: Path) -> list[Path]:
    return sorted(f for f in root.glob(m.pattern)
                  if f.is_file() and not any(e in f.relative_to(root).as_posix() for e in m.exclude))


def _fetch_music(m: MusicSource, root: Path, cache: Path, dep5: list) -> dict[str, dict]:
    """Copy (first 15 pieces) or decode each piece into music/; returns {track id: record}."""
    from .audio import load_mono

    music = cache / "music"
    music.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    for f in _track_files(m, root):
        rel = f.relative_to(root).as_posix()
        try:
            info = sf.info(str(f))
        except Exception as exc:
            log.warning("skipping music %s: unreadable (%s)", f, exc)
            continue
        if info.duration < MIN_PIECE_S and not m.copy_original:
            continue  # jingles (victory, defeat, level done)
        tid = f.stem if m.copy_original else f"{m.prefix}_{f.stem}".replace(" ", "_")
        if tid in out:
            tid = f"{tid}_{hashlib.md5(rel.encode()).hexdigest()[:6]}"
        rec = {"package": m.package, "path": rel, "license": license_for(rel, dep5, m.license, m.dep5_prefix),
               "attribution": m.attribution, "genre": m.genre, "seconds": round(info.duration, 1)}
        if m.copy_original:
            if not (music / f.name).exists():
                _copy_bytes(f.read_bytes(), music / f.name)
        else:
            dest = music / tid
            if not (dest / ".done").exists():
                x, _ = load_mono(f, MUSIC_SR)
                peak = float(np.max(np.abs(x)))
                if peak > 0.999:
                    x = x * (0.999 / peak)
                n = int(MUSIC_PART_S * MUSIC_SR)
                starts = list(range(0, max(1, x.size - n // 6), n))  # the last part is >= 10 s
                shutil.rmtree(dest, ignore_errors=True)
                for k, s in enumerate(starts):
                    e = x.size if k == len(starts) - 1 else s + n
                    _write_audio(dest / f"{tid}_{k:02d}.flac", x[s:e], MUSIC_SR)
                (dest / ".done").touch()
        out[tid] = rec
    return out


def music_splits(tracks: dict[str, dict]) -> dict[str, list[str]]:
    """The first 15 pieces by MUSIC_SPLITS; every other source split by piece family (hash_split),
    so each source (genre) has unseen pieces in val and test and no version of a piece crosses."""
    where = {t: s for s in ("val", "test") for t in MUSIC_SPLITS.get(s, [])}
    by_prefix: dict[str, list[str]] = {}
    for tid, rec in tracks.items():
        src = next(m for m in MUSIC if m.package == rec["package"])
        if not src.copy_original:
            by_prefix.setdefault(src.prefix, []).append(tid)
    for prefix, tids in by_prefix.items():
        stems = {t: t[len(prefix) + 1:] for t in tids}
        fam = piece_families(list(stems.values()))
        split = hash_split(set(fam.values()), salt=prefix)
        fam_split = {f: s for s, fs in split.items() for f in fs}
        where.update({t: fam_split[fam[stems[t]]] for t in tids})
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for tid in sorted(tracks):
        out[where.get(tid, "train")].append(tid)
    return out


# --- background --------------------------------------------------------------------------------

def _clip_name(b: BackgroundSource, rel: str) -> str:
    parts = [p for p in Path(rel).with_suffix("").parts[-b.name_parts:] if p not in ("sounds", "sound")]
    return f"{b.prefix}_{'_'.join(parts)}"


def _background_items(b: BackgroundSource, root: Path) -> Iterator[tuple[str, bytes]]:
    if b.archive:
        with zipfile.ZipFile(root / b.archive) as z:
            for info in z.infolist():
                if fnmatch(info.filename, b.pattern):
                    yield info.filename, z.read(info)
    else:
        for f in sorted(root.glob(b.pattern)):
            if f.is_file():
                yield f.relative_to(root).as_posix(), f.read_bytes()


def _fetch_background(b: BackgroundSource, root: Path, cache: Path, dep5: list) -> dict[str, dict]:
    """Copy the source's ambience clips (exact duplicates dropped, short/excluded ones skipped)."""
    import io

    bg = cache / "background"
    bg.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    seen: set[str] = set()
    for rel, data in _background_items(b, root):
        if any(e in "/" + rel for e in b.exclude) or Path(rel).suffix.lower() not in (".ogg", ".wav", ".flac"):
            continue
        digest = hashlib.md5(data).hexdigest()
        try:
            info = sf.info(io.BytesIO(data))
        except Exception as exc:
            log.warning("skipping background %s:%s (%s)", b.package, rel, exc)
            continue
        if digest in seen or info.duration < b.min_seconds:
            continue
        seen.add(digest)
        name = _clip_name(b, rel)
        target = bg / f"{name}{Path(rel).suffix.lower()}"
        if not target.exists():
            _copy_bytes(data, target)
        out[name] = {"package": b.package, "path": rel, "license": license_for(rel, dep5, b.license, b.dep5_prefix),
                     "attribution": b.attribution, "seconds": round(info.duration, 1)}
    return out


def scene_family(stem: str) -> str:
    """A clip's scene: the first word of its stem ("TraficHigh2" -> "trafic", "f16_1" -> "f")."""
    m = re.match(r"[A-Za-z][a-z]*", stem)
    return (m.group(0) if m else stem).lower()


def _source_split(names: list[str], src: BackgroundSource) -> dict[str, str]:
    """Each clip's split: hashed by clip, or by scene family (`by_family`); families or clips that land in
    a split the source may not use (`splits`) train instead."""
    key = {c: scene_family(c[len(src.prefix) + 1:]) if src.by_family else c for c in names}
    parts = hash_split(set(key.values()), salt=src.prefix)
    split_of = {k: (s if s in src.splits else "train") for s, ks in parts.items() for k in ks}
    return {c: split_of[k] for c, k in key.items()}


def background_splits(clips: dict[str, dict]) -> dict[str, list[str]]:
    where = {c: s for s in ("val", "test") for c in BACKGROUND_SPLITS.get(s, [])}
    fixed_pkgs = {r["package"] for c, r in clips.items() if c in where}  # these keep their listed split
    for src in BACKGROUND:
        if src.package in fixed_pkgs:
            continue
        names = [c for c, r in clips.items() if r["package"] == src.package and c.startswith(src.prefix + "_")]
        where.update(_source_split(names, src))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for c in sorted(clips):
        out[where.get(c, "train")].append(c)
    return out


# --- orchestration -----------------------------------------------------------------------------

def _minutes(files: list[Path]) -> float:
    return round(sum(sf.info(str(p)).duration for p in files) / 60, 2)


def _audio_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".flac", ".ogg", ".wav") and not p.name.startswith("."))


def _process_package(pkg: str, deb: Path, cache: Path, lic_dir: Path) -> dict:
    """Unpack one package and produce everything the catalog takes from it (or reuse the record of
    an earlier run for the same .deb)."""
    state_file = cache / "_state" / f"{pkg}.json"
    if state_file.is_file():
        st = json.loads(state_file.read_text())
        if st.get("deb") == deb.name and st.get("version") == STATE_VERSION:
            return st
    t0 = time.perf_counter()
    root = _extract(deb, cache / "_extract" / pkg)
    for cp in root.glob("usr/share/doc/*/copyright"):
        shutil.copyfile(cp, lic_dir / f"{pkg}.copyright")
    dep5 = _dep5(lic_dir, pkg)
    st: dict = {"version": STATE_VERSION, "deb": deb.name, "voices": [], "music": {}, "background": {}}
    for v in VOICES:
        if v.package == pkg:
            log.info("  %s: speaker %s (%s)", pkg, v.speaker, v.lang)
            st["voices"] += _fetch_voice(v, root, cache)
    for m in MUSIC:
        if m.package == pkg:
            log.info("  %s: music %s", pkg, m.pattern)
            st["music"].update(_fetch_music(m, root, cache, dep5))
    for b in BACKGROUND:
        if b.package == pkg:
            log.info("  %s: background %s", pkg, b.pattern)
            st["background"].update(_fetch_background(b, root, cache, dep5))
    st["seconds"] = round(time.perf_counter() - t0, 1)
    state_file.parent.mkdir(exist_ok=True)
    state_file.write_text(json.dumps(st, indent=1, ensure_ascii=False) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    return st


def _split_minutes(folder: Path, splits: dict[str, list[str]]) -> dict[str, dict]:
    """Groups and minutes per split (a group is a sub-folder or a file stem)."""
    out = {}
    for s, groups in splits.items():
        files = [p for g in groups for p in ([*_audio_under(folder / g)] if (folder / g).is_dir()
                                             else sorted(folder.glob(f"{g}.*")))
                 if p.suffix in (".flac", ".ogg", ".wav")]
        out[s] = {"groups": len(groups), "files": len(files), "minutes": _minutes(files)}
    return out


def fetch(cache: Path, update: bool = False, keep_debs: bool = True) -> dict:
    """Download, unpack and decode all sources into `cache`; returns the sources.json content."""
    _check_apt()
    t0 = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    all_pkgs = list(dict.fromkeys(p for ps in PACKAGES.values() for p in ps))
    log.info("downloading %d Debian packages into %s ...", len(all_pkgs), cache / "debs")
    debs = _download(all_pkgs, cache / "debs", update)
    lic_dir = cache / "licenses"
    lic_dir.mkdir(exist_ok=True)
    voices: list[dict] = []
    tracks: dict[str, dict] = {}
    clips: dict[str, dict] = {}
    for pkg in all_pkgs:
        log.info("%s ...", pkg)
        st = _process_package(pkg, debs[pkg], cache, lic_dir)
        voices += st["voices"]
        tracks.update(st["music"])
        clips.update(st["background"])
    for scratch in ("_extract", "_tmp"):
        shutil.rmtree(cache / scratch, ignore_errors=True)

    speakers = _merge_speakers(voices)
    splits = {"speech": speaker_splits(speakers), "music": music_splits(tracks), "background": background_splits(clips)}
    for kind, sp in splits.items():
        (cache / kind / "splits.json").write_text(json.dumps(sp, indent=1) + "\n")
    for sp, rec in speakers.items():
        rec["split"] = next(s for s in SPLITS if sp in splits["speech"][s])
        rec["minutes"] = _minutes(_audio_under(cache / "speech" / sp))
    for tid, rec in tracks.items():
        rec["split"] = next(s for s in SPLITS if tid in splits["music"][s])
    for c, rec in clips.items():
        rec["split"] = next(s for s in SPLITS if c in splits["background"][s])
    (cache / "speech" / "speakers.json").write_text(json.dumps(speakers, indent=1, ensure_ascii=False) + "\n")
    summary: dict = {"packages": {p: d.name for p, d in debs.items()},
                     "download_mb": round(sum(d.stat().st_size for d in debs.values()) / 1e6, 1), "kinds": {}}
    for kind in ("speech", "music", "background"):
        files = _audio_under(cache / kind)
        summary["kinds"][kind] = {"files": len(files), "minutes": _minutes(files),
                                  "splits": _split_minutes(cache / kind, splits[kind])}
    summary["speakers"] = speakers
    summary["music_tracks"] = tracks
    summary["background_clips"] = clips
    summary["splits"] = splits
    summary["fetch_seconds"] = round(time.perf_counter() - t0, 1)
    (cache / "sources.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if not keep_debs:
        shutil.rmtree(cache / "debs", ignore_errors=True)
    return summary


def _check_apt() -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise EnvironmentError(
            "apt-get/dpkg not found: `opgan fetch` needs a Debian/Ubuntu system. Point `opgan build "
            "--sources DIR` at any folder of audio instead (wav/flac/ogg; sub-folders = speakers/tracks), "
            "or use the shipped corpus in opgan/assets/audio/corpus.")


def fetch_sentences(cache: Path, update: bool = False, keep_debs: bool = True) -> dict:
    """The eval-only sentence set (`catalog.SENTENCE_VOICES`) into `<cache>/sentences/speech/`, every
    voice in the test split, with speakers.json (labels, minutes, bandwidth); returns that dict.

    A sources root of its own, so no build of the training cache can draw from it. Build a test set
    with `opgan build --kind speech --sources <cache>/sentences --splits test --background <ambience>`.
    """
    from .bandwidth import measure_voice

    _check_apt()
    t0 = time.perf_counter()
    root_out = cache / SENTENCES_DIR
    speech = root_out / "speech"
    shutil.rmtree(speech, ignore_errors=True)  # decoded again from the .debs: the set is small
    pkgs = list(dict.fromkeys(v.package for v in SENTENCE_VOICES))
    debs = _download(pkgs, cache / "debs", update)
    lic_dir = cache / "licenses"
    lic_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for pkg in pkgs:
        root = _extract(debs[pkg], cache / "_extract" / pkg)
        for cp in root.glob("usr/share/doc/*/copyright"):
            shutil.copyfile(cp, lic_dir / f"{pkg}.copyright")
        for v in SENTENCE_VOICES:
            if v.package == pkg:
                log.info("  %s: speaker %s (%s)", pkg, v.speaker, v.lang)
                records += _fetch_voice(v, root, root_out)
        shutil.rmtree(root, ignore_errors=True)
    for scratch in (cache / "_extract", root_out / "_tmp"):
        shutil.rmtree(scratch, ignore_errors=True)
    speakers = _merge_speakers(records)
    for sp, rec in speakers.items():
        files = _audio_under(speech / sp)
        band = measure_voice(sp, files, SPEECH_SR)
        rec.update(split="test", minutes=round(band.seconds / 60, 2), band_edge_hz=band.edge_hz,
                   rolloff99_hz=band.rolloff99_hz, role="eval only (test)")
    (speech / "splits.json").write_text(json.dumps({"train": [], "val": [], "test": sorted(speakers)}, indent=1) + "\n")
    (speech / "speakers.json").write_text(json.dumps(speakers, indent=1, ensure_ascii=False) + "\n")
    if not keep_debs:
        for d in debs.values():
            d.unlink(missing_ok=True)
    log.info("sentence set: %d voices, %.1f min, %.0f s", len(speakers),
             sum(r["minutes"] for r in speakers.values()), time.perf_counter() - t0)
    return speakers


def format_summary(summary: dict) -> str:
    """Speakers per split (sex, language) and minutes per kind and split, as plain text."""
    lines = []
    for kind, v in summary["kinds"].items():
        per = ", ".join(f"{s} {d['groups']} groups / {d['minutes']:.1f} min" for s, d in v["splits"].items())
        lines.append(f"{kind:>10}: {v['files']:5d} files, {v['minutes']:7.1f} min ({per})")
    for s in SPLITS:
        sp = [f"{k} ({r['sex'] or '?'}, {'+'.join(r['languages'])})" for k, r in summary["speakers"].items()
              if r["split"] == s]
        lines.append(f"speech {s} speakers ({len(sp)}): " + ", ".join(sp))
    return "\n".join(lines)


EXAMPLES = """examples:
  opgan fetch                        # into $OPGAN_CACHE or ~/.cache/opgan (about 1.3 GB of packages)
  opgan fetch --cache /data/opgan --drop-debs --quiet
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opgan fetch", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache folder (default: $OPGAN_CACHE or ~/.cache/opgan)")
    ap.add_argument("--update", action="store_true", help="run `apt-get update` before downloading")
    ap.add_argument("--drop-debs", action="store_true", help="delete the downloaded .deb files afterwards")
    ap.add_argument("--quiet", action="store_true", help="no progress lines (warnings and the summary still print)")
    ap.add_argument("--sentences", action="store_true",
                    help=f"fetch only the eval-only sentence set (acted dialogue) into <cache>/{SENTENCES_DIR}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    cache = (args.cache or default_cache_dir()).expanduser()
    if args.sentences:
        try:
            speakers = fetch_sentences(cache, update=args.update, keep_debs=not args.drop_debs)
        except (EnvironmentError, RuntimeError) as exc:
            print(f"opgan fetch: {exc}", file=sys.stderr)
            return 2
        for sp, r in speakers.items():
            print(f"{sp}: {r['minutes']:.1f} min, {r['prompts']} files, sex {r['sex']} ({r['sex_source']}), "
                  f"band edge {r['band_edge_hz']:.0f} Hz")
        print(f"-> {cache / SENTENCES_DIR} (test split only)")
        return 0
    try:
        summary = fetch(cache, update=args.update, keep_debs=not args.drop_debs)
    except (EnvironmentError, RuntimeError) as exc:
        print(f"opgan fetch: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"{summary['download_mb']} MB of packages, {summary['fetch_seconds']} s; licences: {cache / 'licenses'}, "
          f"summary: {cache / 'sources.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
