"""Pick test images by rule, using every seed's predictions so all seeds look at the same images.

The articles' image numbers index the author's own shuffled split, so they cannot be reused; the
experiment's groups (clear 4s, clear 9s, 4s that look like 9s) are selected by these rules instead:

* clear images of class c: true class c, predicted c by every seed; ranked by the smallest
  logit margin of c (its logit minus the largest other one) over the seeds: every seed must be
  sure. (Margins, not probabilities: thousands of test images reach a softmax of exactly 1.0 in
  float32, which would leave the ranking to the image index.)
* ambiguous images of class a that look like b: true class a; ranked by the lowest probability
  of b over the seeds (every seed must see some b in them), whatever the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from oiplab.analysis.activations import layer_outputs
from oiplab.errors import OiplabError
from oiplab.io import Fields, Record, read_typed, to_json
from oiplab.layout import SELECTION


class SelectionError(OiplabError, ValueError):
    """A group cannot be filled (too few candidates) or its explicit indices are invalid."""


@dataclass(frozen=True)
class GroupRule:
    name: str
    kind: str  # "clear" or "ambiguous"
    true_class: int
    count: int
    other_class: int | None = None  # ambiguous only: the class the images resemble
    indices: tuple[int, ...] = ()  # explicit test indices, used as they are when given


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def select_group(rule: GroupRule, logits: np.ndarray, labels: np.ndarray) -> dict:
    """Select one group's test indices.

    Args:
        logits: (n_seeds, n_images, n_classes) pre-softmax outputs of every seed on the test split.
        labels: (n_images,) true classes.

    Returns:
        {"name", "kind", "indices", "scores"}: indices best first, with their ranking scores.
    """
    n_images = labels.shape[0]
    logits = np.asarray(logits, dtype=np.float64)
    probs = softmax(logits)
    if rule.indices:
        bad = [i for i in rule.indices if not 0 <= i < n_images]
        if bad:
            raise SelectionError(f"group {rule.name}: test indices {bad} outside 0..{n_images - 1}")
        idx = np.asarray(rule.indices, dtype=np.int64)
        return _group(rule, idx, probs[:, idx, rule.true_class].min(axis=0))
    if rule.kind == "clear":
        predicted = probs.argmax(axis=2)  # (n_seeds, n_images)
        ok = (labels == rule.true_class) & (predicted == rule.true_class).all(axis=0)
        others = np.delete(logits, rule.true_class, axis=2).max(axis=2)
        score = (logits[:, :, rule.true_class] - others).min(axis=0)
    elif rule.kind == "ambiguous":
        ok = labels == rule.true_class
        score = probs[:, :, rule.other_class].min(axis=0)
    else:
        raise SelectionError(f"group {rule.name}: kind {rule.kind!r} is not clear or ambiguous")
    candidates = np.flatnonzero(ok)
    if len(candidates) < rule.count:
        raise SelectionError(
            f"group {rule.name}: only {len(candidates)} test images qualify, {rule.count} wanted"
        )
    # Stable sort on the negated score: ties keep the lower test index first.
    order = candidates[np.argsort(-score[candidates], kind="stable")][: rule.count]
    return _group(rule, order, score[order])


def _group(rule: GroupRule, idx: np.ndarray, scores: np.ndarray) -> dict:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "true_class": rule.true_class,
        "other_class": rule.other_class,
        "indices": [int(i) for i in idx],
        "scores": [float(s) for s in scores],
    }


def seed_logits(models: list, x_test: np.ndarray, batch_size: int) -> np.ndarray:
    """(n_seeds, n_test, n_classes) pre-softmax outputs of every seed's model on the test split.

    Computed from Dense_1's output and Dense_2's weights, since the model ends in a softmax.
    """
    out = []
    for model in models:
        hidden = layer_outputs(model, x_test, ["Dense_1"], batch_size=batch_size)["Dense_1"]
        kernel, bias = model.get_layer("Dense_2").get_weights()
        out.append(hidden.astype(np.float64) @ kernel + bias)
    return np.stack(out)


def select_groups(groups, logits: np.ndarray, labels: np.ndarray, seeds: list[int]) -> list[dict]:
    """Every configured group (`activations.groups`), with each seed's predictions for it."""
    selected = []
    for g in groups:
        rule = GroupRule(g.name, g.kind, g.true_class, g.count, g.other_class, tuple(g.indices))
        group = select_group(rule, logits, labels)
        group["predicted"] = {
            str(seed): logits[k, group["indices"]].argmax(1).tolist()
            for k, seed in enumerate(seeds)
        }
        selected.append(group)
    return selected


class SelectedGroup(Fields):
    """One group of test images, best first, with the rule that chose them."""

    name: str
    kind: str  # "clear" or "ambiguous"
    true_class: int
    other_class: int | None  # ambiguous only: the class the images resemble
    indices: list[int]  # test indices
    scores: list[float]  # their ranking scores
    predicted: dict[str, list[int]]  # per seed (as text): each image's predicted class


class Selection(Record):
    """The image selection (`artifacts/selection.json`): every configured group."""

    FILE: ClassVar[str] = SELECTION
    STAGE: ClassVar[str] = "select_images"
    WHAT: ClassVar[str] = "image selection"

    seeds: list[int]
    groups: list[SelectedGroup]

    def save_to(self, path: str | Path) -> None:
        """Write it to the file `path` (the layout's `selection()`, a file of its own)."""
        Path(path).write_text(to_json(self.data()), encoding="utf-8")

    @classmethod
    def load_from(cls, path: str | Path) -> Selection:
        return read_typed(path, cls, cls.STAGE, cls.WHAT)
