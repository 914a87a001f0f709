"""The one augmentation builder: an albumentations pipeline from a list of `_target_` configs.

albumentations keeps its own RNG (global seeds do not reach it), so every pipeline gets an explicit seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Augment(Protocol):
    """What fbad uses of an `A.Compose` (albumentations ships no type information)."""

    def __call__(self, *args: Any, **data: Any) -> dict[str, Any]: ...

    def set_random_seed(self, seed: int) -> None: ...


def build_augment(steps: Sequence[Mapping[str, Any]] | None, seed: int | None = None,
                  extra_masks: Sequence[str] = ()) -> Augment | None:
    """Seeded `A.Compose` of the steps (None without steps); `mask` and each name in `extra_masks` follow
    the geometric transforms."""
    if not steps:
        return None
    import albumentations as A
    from hydra.utils import instantiate

    return A.Compose([instantiate(dict(s)) for s in steps], additional_targets=dict.fromkeys(extra_masks, "mask"),
                     seed=seed)

