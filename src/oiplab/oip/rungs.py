"""Successive halving of a map's candidates: rank them at a few step counts (*rungs*), and only
the better half goes on ascending.

The precursor ascends each map's `top_k` screen winners for up to 1,200 steps, and what counts for
a map is its best variant (an OIP if any variant ends above 0). Most variants are clearly beaten
long before the end, and a variant at 0 can never move again (a ReLU map at 0 everywhere has an
input gradient of exactly 0, `engine`: silent), so at each rung a map's candidates still in the
race are ranked by their objective and the worse half stops there, keeping its image and objective
as they were at that rung; the best at every rung ascends the full length. With no
rungs, every candidate ascends the full length in one `ascend` call (the articles' way, bit for
bit). The saved step counts are the point; a dropped candidate with a positive objective still
counts (a map with any positive variant has an OIP), so the maps found cannot shrink through
dropping: a candidate above 0 at the end was above 0 at every rung before.

Each rung is its own `ascend` call from the images the last one ended at. The engine takes each
start's pixel mean and std as the target of its re-standardization, so a continued candidate's
targets are recomputed from an image already re-standardized to them (equal to float rounding),
and its convergence window starts afresh at each rung.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.objectives import Objectives
from oiplab.oip.step import make_step

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)


def survivors(loss: np.ndarray, racing: np.ndarray) -> np.ndarray:
    """(M, n) bool: each map's candidates that stay in the race after a rung.

    Of a row's `racing` candidates, the best `ceil(count / 2)` by `loss` stay; ties go to the lower
    column (the better screen rank); a candidate at or below 0 never stays (it cannot move again).

    Args:
        loss: (M, n) each candidate's objective at the rung.
        racing: (M, n) bool, the candidates still in the race before the rung.
    """
    if loss.shape != racing.shape:
        raise ValueError(f"loss {loss.shape} and racing {racing.shape} differ in shape")
    ranked = np.where(racing, loss, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(loss.shape[1])[None, :], axis=1)
    keep = -(-racing.sum(axis=1, keepdims=True) // 2)
    return racing & (rank < keep) & (loss > 0)


@dataclass
class RaceResult:
    images: np.ndarray  # (M, n, 28, 28, 1) where each candidate stopped, network scale
    loss: np.ndarray  # (M, n) its objective there
    steps: np.ndarray  # (M, n) steps it ascended in all
    dropped_at: np.ndarray  # (M, n) the rung step the halving stopped it at (-1: it was not)


def race(
    probe: keras.Model,
    starts: np.ndarray,
    objectives: Objectives,
    settings: AscentSettings,
    rungs: Sequence[int],
    progress: Callable[[str], None] | None = log.info,
) -> RaceResult:
    """Ascend every map's candidates for `settings.n_steps`, halving them at each of `rungs`.

    Args:
        starts: (M, n, 28, 28, 1) each map's n candidate start images, best screen rank first.
        objectives: one per candidate, in the order of `starts.reshape(M * n, ...)`.
        rungs: strictly increasing step counts (those at or past `settings.n_steps` are never
            reached); none below it ascends every candidate the full length in one `ascend` call.
    """
    m, n = starts.shape[:2]
    if list(rungs) != sorted(set(rungs)) or any(r <= 0 for r in rungs):
        raise ValueError(f"rungs {list(rungs)}: expected strictly increasing positive steps")
    rungs = [r for r in rungs if r < settings.n_steps]  # the rest are never reached
    images = starts.reshape(m * n, *starts.shape[2:]).copy()
    loss, steps = np.zeros(m * n, np.float32), np.zeros(m * n, np.int64)
    dropped_at = np.full(m * n, -1, np.int64)
    racing, moving = np.ones(m * n, bool), np.ones(m * n, bool)
    step = make_step(probe, settings.epsilon)  # compiled once for every rung
    bounds = [0, *rungs, settings.n_steps]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        rows = np.flatnonzero(moving)
        if not len(rows):
            break
        part = ascend(
            probe,
            images[rows],
            objectives.take(rows),
            replace(settings, n_steps=hi - lo, n_snapshots=0),
            progress=progress,
            step=step,
            label=f"ascent steps {lo}-{hi}" if rungs else "ascent",
        )
        images[rows], loss[rows], steps[rows] = part.images, part.loss, steps[rows] + part.steps
        done = part.silent | (part.converged & settings.stop_on_convergence)
        moving[rows[done]] = False  # stopped by the engine, for good
        if hi == settings.n_steps:
            break
        kept = survivors(loss.reshape(m, n), racing.reshape(m, n)).ravel()
        dropped_at[moving & ~kept] = hi  # stopped by the halving, not by the engine
        racing &= kept
        moving &= kept
    return RaceResult(
        images.reshape(starts.shape),
        loss.reshape(m, n),
        steps.reshape(m, n),
        dropped_at.reshape(m, n),
    )
