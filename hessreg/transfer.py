"""Initial weights for fine-tuning runs (Paper B): ``Config.init`` names where a run's weights come from.

``INITS`` maps a name to ``(check, initialize)``: ``check(spec)`` validates the spec before any training and
``initialize(model, spec, device)`` loads the weights into a freshly built model (a new head stays as built).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

INITS: dict[str, tuple[Callable[[str], None], Callable[[nn.Module, str, object], None]]] = {}


def _kind(spec: str) -> str:
    kind = spec.split(":", 1)[0]
    if kind not in INITS:
        raise ValueError(f"unknown init {spec!r}; valid kinds: {', '.join(sorted(INITS)) or 'none registered'}")
    return kind


def check_init(spec: str) -> None:
    INITS[_kind(spec)][0](spec)


def initialize(model: nn.Module, spec: str, device) -> None:
    INITS[_kind(spec)][1](model, spec, device)
