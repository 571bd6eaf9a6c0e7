"""The base of the frozen models that cross stage boundaries (specs, manifests, plans)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """Immutable and strict: unknown fields are refused, so a typo in a manifest or a spec fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")
