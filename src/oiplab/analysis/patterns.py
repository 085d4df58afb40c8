"""Patterns common to a class (the articles' FCPs): layer elements strongly active in every image of
a group and in no image of the group it is compared with, and how much images overlap.

An element is one (position, map) value of a conv or pool layer, or one node of a dense layer.
An element is *active* in an image when it exceeds `threshold` times that image's largest value in
the layer, so images of different overall brightness are judged alike.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from oiplab.analysis.selection import SelectedGroup
from oiplab.io import Fields, Real, Record
from oiplab.layout import METRICS


def active_sets(layer_output: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean (n_images, n_elements): elements above `threshold` x the image's layer maximum.

    Args:
        layer_output: (n_images, ...) one layer's output for several images.
    """
    flat = layer_output.reshape(layer_output.shape[0], -1)
    peak = flat.max(axis=1, keepdims=True)
    return (flat > threshold * peak) & (peak > 0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mean_pairwise_jaccard(sets_a: np.ndarray, sets_b: np.ndarray | None = None) -> float:
    """Mean Jaccard over image pairs: within one group (distinct pairs), or across two groups."""
    if sets_b is None:
        n = len(sets_a)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        values = [jaccard(sets_a[i], sets_a[j]) for i, j in pairs]
    else:
        values = [jaccard(a, b) for a in sets_a for b in sets_b]
    return float(np.mean(values)) if values else float("nan")


def common_elements(sets_group: np.ndarray, sets_other: np.ndarray) -> dict[str, np.ndarray]:
    """Elements active in every image of a group, and those of them active in no other image.

    Returns:
        {"common": bool (n_elements,), "distinct": bool (n_elements,)}
    """
    common = sets_group.all(axis=0)
    distinct = common & ~sets_other.any(axis=0)
    return {"common": common, "distinct": distinct}


def compare_groups(
    layer_output: np.ndarray, group: np.ndarray, other: np.ndarray, threshold: float
) -> dict:
    """Common-pattern numbers of one layer for a group against another.

    Args:
        layer_output: (n_images, ...) the layer's output for all selected images.
        group, other: integer positions (into the first axis) of the two groups' images.
    """
    sets = active_sets(layer_output, threshold)
    masks = common_elements(sets[group], sets[other])
    return {
        "n_elements": int(sets.shape[1]),
        "n_common": int(masks["common"].sum()),
        "n_distinct": int(masks["distinct"].sum()),
        "jaccard_within": mean_pairwise_jaccard(sets[group]),
        "jaccard_across": mean_pairwise_jaccard(sets[group], sets[other]),
        "masks": masks,
    }


def selected_rows(
    groups: list[SelectedGroup],
) -> tuple[list[int], list[str], dict[str, np.ndarray]]:
    """The selection's images as rows in group order: (test indices, group of each row, the
    rows of each group)."""
    indices: list[int] = []
    row_groups: list[str] = []
    positions: dict[str, np.ndarray] = {}
    for group in groups:
        positions[group.name] = np.arange(len(indices), len(indices) + len(group.indices))
        indices += group.indices
        row_groups += [group.name] * len(group.indices)
    return indices, row_groups, positions


def group_patterns(
    outputs: dict[str, np.ndarray],
    positions: dict[str, np.ndarray],
    layers: list[str],
    comparisons: list[list[str]],
    threshold: float,
) -> tuple[dict, dict]:
    """Common-pattern numbers per layer and comparison, and their masks (same keys)."""
    numbers: dict[str, dict] = {}
    masks: dict[str, dict] = {}
    for layer in layers:
        for name, other in comparisons:
            result = compare_groups(outputs[layer], positions[name], positions[other], threshold)
            key = f"{name}_vs_{other}"
            masks.setdefault(layer, {})[key] = result.pop("masks")
            numbers.setdefault(layer, {})[key] = result
    return numbers, masks


class GroupContrast(Fields):
    """One layer's common pattern of a group against another (`compare_groups`, less masks)."""

    n_elements: int
    n_common: int
    n_distinct: int
    jaccard_within: Real
    jaccard_across: Real


class PatternSummary(Record):
    """A seed's common-pattern numbers (`artifacts/activations/seed_N/metrics.json`): per layer,
    per comparison ("<group>_vs_<other>")."""

    FILE: ClassVar[str] = METRICS
    STAGE: ClassVar[str] = "activations"
    WHAT: ClassVar[str] = "common-pattern summary"

    seed: int
    n_images: int
    common: dict[str, dict[str, GroupContrast]]
