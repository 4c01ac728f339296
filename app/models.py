"""Model-name compatibility: beta suffixes, dated names, Supermemory-routed models."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.config import ModelEntry

_DATE_SUFFIX = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class ModelRoute:
    """How a requested model name maps onto config.yaml."""

    model: str
    betas: tuple[str, ...] = ()
    supermemory: bool = False


class ModelTable:
    """The config's model names, indexed once for per-request lookups."""

    def __init__(self, models: tuple[ModelEntry, ...]) -> None:
        self._exact = {m.name: m for m in models}
        self._undated: dict[str, ModelEntry] = {}
        for m in models:
            self._undated.setdefault(_DATE_SUFFIX.sub("", m.name), m)

    def route(self, requested: str) -> ModelRoute:
        """Split `name,beta1,beta2` and match a config model, ignoring a trailing -YYYYMMDD date."""
        name, *betas = (part.strip() for part in requested.split(","))
        entry = self._exact.get(name) or self._undated.get(_DATE_SUFFIX.sub("", name))
        return ModelRoute(
            entry.name if entry else name,
            tuple(b for b in betas if b),
            bool(entry and "supermemory.ai" in entry.api_base),
        )
