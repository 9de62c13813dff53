"""opgan.data: real-world audio corruption, RAR dataset building, loaders (knows nothing of models).

Heavy or optional parts (torch datasets, pyroomacoustics simulation, fetch) load on first use.
"""
from .audio import AudioError, find_audio_files, load_audio, load_mono, resample, save_audio
from .corrupt import ALL_CASES, ARTIFACTS, CASES, EXTRA_CASES, LIGHT, SEVERITY, Severity, corrupt

__all__ = [
    "AudioError", "load_audio", "load_mono", "save_audio", "resample", "find_audio_files",
    "ARTIFACTS", "CASES", "EXTRA_CASES", "ALL_CASES", "SEVERITY", "LIGHT", "Severity", "corrupt",
    "AugmentConfig",
    "RIRBank", "RARFolderDataset", "MatRARDataset", "DynamicRARDataset", "open_dataset",
    "build", "default_sources", "build_default_dataset", "default_dynamic_dataset", "asset_dir",
]

_LAZY = {
    "AugmentConfig": "augment", "RIRBank": "rir", "build": "builder",
    "RARFolderDataset": "datasets", "MatRARDataset": "datasets", "DynamicRARDataset": "datasets",
    "open_dataset": "datasets", "default_dynamic_dataset": "datasets",
    "default_sources": "assets", "build_default_dataset": "assets", "asset_dir": "assets",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
