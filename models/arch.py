"""The plain-data round trip shared by the generator configs that name their network (``arch``).

A checkpoint stores a generator's config as a dict; `models.build_generator` picks the network by its
``arch`` and rebuilds the config with ``from_dict``, which refuses keys it does not know and a config
of another network, so a wrong or crafted entry fails with a one-line ValueError before anything is built.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

__all__ = ["ArchConfig"]

_C = TypeVar("_C", bound="ArchConfig")


class ArchConfig:
    """Mixin for a ``@dataclass`` config with an ``arch`` field: ``to_dict`` / ``from_dict``.

    Subclasses set ``ARCH`` (the value their ``arch`` field must hold) and ``NAME`` (how errors name them).
    """

    ARCH: ClassVar[str]
    NAME: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], d: dict[str, Any]) -> _C:
        unknown = set(d) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.NAME} config keys: {sorted(unknown)}")
        cfg = cls(**d)
        if cfg.arch != cls.ARCH:  # type: ignore[attr-defined]
            raise ValueError(f"a {cls.NAME} config has arch {cls.ARCH!r}, got {cfg.arch!r}")  # type: ignore[attr-defined]
        return cfg
