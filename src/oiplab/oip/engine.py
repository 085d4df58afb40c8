"""The batched ascent loop: every (map, start) element of a layer in one computation, in chunks.

Returns arrays only. Per element: the final image, final loss, steps run, whether it converged,
and whether it is *silent* (the objective was 0 at the start and its input gradient exactly 0: the
image can then never move, so the map never responds from that start; such elements stop at once,
which is exact, not an approximation).

Convergence is judged over a window of steps: the loss's relative change per step, averaged over
the last `convergence_window` steps, under `convergence_tol` (the articles' 2e-4). A window of 1
is the articles' step-to-step test, which a slowly climbing loss passes long before it flattens.

Successive halving (optional, `halving_after` > 0): the batch is laid out in groups of
`halving_group` consecutive elements that share one objective (a map's starts). After
`halving_after` steps each group's elements still ascending are ranked by their objective and
only the best `halving_keep` go on; the others stop there, keeping that step's image and loss,
marked `halted`. Most of a map's best-of-starts is decided early (the ranking after a first rung
rarely changes later), so the steps the dropped starts would have taken are saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from oiplab.oip.objectives import Objectives
from oiplab.oip.step import make_step

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AscentSettings:
    epsilon: float = 0.01  # step size on the RMS-normalized gradient (article IX)
    n_steps: int = 600  # ascent steps
    convergence_tol: float = 2e-4  # relative loss change per step counted as converged
    convergence_window: int = 1  # steps the change is measured over (see the module docstring)
    stop_on_convergence: bool = True
    n_snapshots: int = 6  # images kept at log-spaced steps
    chunk_size: int = 512  # elements per compiled batch (bounds memory)
    halving_after: int = 0  # rung step of successive halving (0: off; see the module docstring)
    halving_keep: int = 0  # elements of a group that go on after the rung
    halving_group: int = 1  # consecutive elements sharing an objective (a map's starts)

    @property
    def halving(self) -> bool:
        """Whether a rung falls inside the ascent and would drop any element."""
        return 0 < self.halving_after < self.n_steps and self.halving_keep < self.halving_group


@dataclass
class AscentResult:
    images: np.ndarray  # (B, 28, 28, 1) final images, network scale
    loss: np.ndarray  # (B,) objective at the final image
    steps: np.ndarray  # (B,) steps taken
    converged: np.ndarray  # (B,) bool
    silent: np.ndarray  # (B,) bool
    loss_history: np.ndarray  # (B, n_steps + 1) objective after each step (NaN once stopped)
    snapshot_steps: np.ndarray  # (S,) step numbers of the snapshots
    snapshots: np.ndarray  # (B, S, 28, 28) images at those steps
    halted: np.ndarray  # (B,) bool: ranked out at the halving rung (stopped after halving_after)


def snapshot_steps(n_steps: int, n_snapshots: int) -> np.ndarray:
    """Log-spaced step numbers in [1, n_steps] (fewer if they collide at small n_steps)."""
    if n_snapshots <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round(np.geomspace(1, n_steps, n_snapshots)).astype(np.int64))


def ascend(
    probe: keras.Model,
    starts: np.ndarray,
    objectives: Objectives,
    settings: AscentSettings,
    progress: Callable[[str], None] | None = log.info,
    step: Callable | None = None,
    label: str = "ascent",
) -> AscentResult:
    """Run gradient ascent on the input for every element of the batch.

    Args:
        probe: a Keras model from the network input to the target layer's output.
        starts: (B, 28, 28, 1) standardized start images.
        objectives: per-element objectives for that layer (see `objectives.py`).
        step: a compiled step from `make_step` (made here when None; pass one to reuse it).
        label: how progress lines start (one per chunk, and every few seconds inside one).
    """
    if len(starts) != len(objectives):
        raise ValueError(f"{len(starts)} start images but {len(objectives)} objectives")
    step = step or make_step(probe, settings.epsilon)
    snaps = snapshot_steps(settings.n_steps, settings.n_snapshots)
    parts = []
    n = len(starts)
    size = _chunk_size(n, settings)
    n_chunks = -(-n // size)
    for k, lo in enumerate(range(0, n, size)):
        rows = np.arange(lo, min(lo + size, n))
        t0 = time.perf_counter()
        chunk = f"{label} chunk {k + 1}/{n_chunks}"
        report = _Reporter(progress, chunk, settings.n_steps) if progress else None
        parts.append(
            _ascend_chunk(step, starts[rows], objectives.take(rows), settings, snaps, report)
        )
        if progress is not None:
            done = parts[-1]
            progress(
                f"{chunk}: {len(rows)} elements, {int(done.steps.max())} steps max, "
                f"{int(done.silent.sum())} silent, {time.perf_counter() - t0:.1f} s"
            )
    return AscentResult(
        **{
            field: np.concatenate([getattr(p, field) for p in parts])
            if field != "snapshot_steps"
            else snaps
            for field in AscentResult.__dataclass_fields__
        }
    )


def _chunk_size(n: int, s: AscentSettings) -> int:
    """Elements per chunk; with halving, whole groups only (a group is ranked inside its chunk)."""
    if not s.halving:
        return s.chunk_size
    if n % s.halving_group:
        raise ValueError(f"{n} elements do not form groups of halving_group={s.halving_group}")
    return max(s.halving_group, s.chunk_size // s.halving_group * s.halving_group)


class _Reporter:
    """Progress inside a chunk, at most every `every` seconds: step, live elements, rate, ETA."""

    def __init__(self, progress: Callable[[str], None], label: str, steps: int, every: float = 10):
        self.progress, self.label, self.steps, self.every = progress, label, steps, every
        self.start = self.last = time.perf_counter()

    def __call__(self, t: int, live: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or t == 0:
            return
        self.last = now
        rate = t / (now - self.start)  # steps per second, at the current batch size
        self.progress(
            f"{self.label}: step {t}/{self.steps}, {live} elements ascending, {rate:.1f} steps/s, "
            f"at most {(self.steps - t) / rate:.0f} s left"
        )


@dataclass
class _Chunk:
    """The state of a chunk's ascent, updated in place step by step (the loop's working arrays)."""

    x: np.ndarray  # (b, 28, 28, 1) current images
    target_mean: np.ndarray  # (b,) each start's mean and std, kept along the ascent
    target_std: np.ndarray
    steps: np.ndarray  # (b,) steps taken
    converged: np.ndarray  # (b,) bool
    silent: np.ndarray  # (b,) bool
    history: np.ndarray  # (b, n_steps + 1) objective after each step, NaN once stopped
    snapshots: np.ndarray  # (b, S, 28, 28)
    halted: np.ndarray  # (b,) bool

    @classmethod
    def start(cls, starts: np.ndarray, n_steps: int, n_snaps: int) -> _Chunk:
        b, x = len(starts), starts.astype(np.float32)
        return cls(
            x=x,
            target_mean=x.mean(axis=(1, 2, 3)).astype(np.float32),
            target_std=x.std(axis=(1, 2, 3)).astype(np.float32),
            steps=np.zeros(b, dtype=np.int64),
            converged=np.zeros(b, dtype=bool),
            silent=np.zeros(b, dtype=bool),
            history=np.full((b, n_steps + 1), np.nan, dtype=np.float32),
            snapshots=np.zeros((b, n_snaps, *starts.shape[1:3]), dtype=np.float32),
            halted=np.zeros(b, dtype=bool),
        )

    def result(self, snaps: np.ndarray) -> AscentResult:
        # Elements that stopped early keep their final image in the remaining snapshot slots.
        for j, when in enumerate(snaps):
            late = self.steps < when
            self.snapshots[late, j] = self.x[late, ..., 0]
        return AscentResult(
            images=self.x,
            # The objective at each final image is the last one recorded in its history.
            loss=self.history[np.arange(len(self.x)), self.steps],
            steps=self.steps,
            converged=self.converged,
            silent=self.silent,
            loss_history=self.history,
            snapshot_steps=snaps,
            snapshots=self.snapshots,
            halted=self.halted,
        )


def _ascend_chunk(
    step: Callable,
    starts: np.ndarray,
    obj: Objectives,
    s: AscentSettings,
    snaps: np.ndarray,
    report: Callable[[int, int], None] | None = None,
) -> AscentResult:
    c = _Chunk.start(starts, s.n_steps, len(snaps))
    live = np.arange(len(starts))  # elements still ascending; finished ones leave the batch
    for t in range(s.n_steps + 1):
        # One call gives the objective at the current images and the next images.
        x_next, loss, grad_zero = step(
            c.x[live],
            obj.channel_onehot[live],
            obj.spatial_weight[live],
            c.target_mean[live],
            c.target_std[live],
        )
        loss = np.asarray(loss, dtype=np.float32)
        c.history[live, t] = loss
        if t == 0:
            stuck = (loss <= 0) & np.asarray(grad_zero)
            c.silent[live[stuck]] = True
            keep = ~stuck
        elif t >= s.convergence_window:
            done = _converged(loss, c.history[live, t - s.convergence_window], s)
            c.converged[live[done]] = True
            keep = ~done if s.stop_on_convergence else np.ones(len(live), dtype=bool)
        else:
            keep = np.ones(len(live), dtype=bool)
        if s.halving and t == s.halving_after:
            survivors = _rung_survivors(live // s.halving_group, loss, keep, s.halving_keep)
            c.halted[live[keep & ~survivors]] = True
            keep &= survivors
        if t == s.n_steps:
            break
        if report is not None:
            report(t, len(live))
        x_next = np.asarray(x_next)
        live, x_next = live[keep], x_next[keep]
        if not len(live):
            break
        c.x[live] = x_next
        c.steps[live] += 1
        hit = np.flatnonzero(snaps == t + 1)
        if hit.size:
            c.snapshots[:, hit[0]] = c.x[..., 0]
    return c.result(snaps)


def _rung_survivors(
    group: np.ndarray, loss: np.ndarray, candidate: np.ndarray, n_keep: int
) -> np.ndarray:
    """Which elements go on after the rung: of each group's candidates (the elements still
    ascending), the `n_keep` with the highest loss; ties go to the earlier element."""
    rows = np.flatnonzero(candidate)
    # lexsort is stable and sorts by its last key first: by group, then by falling loss.
    order = rows[np.lexsort((-loss[rows], group[rows]))]
    sorted_groups = group[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    survivors = np.zeros(len(loss), dtype=bool)
    survivors[order[rank < n_keep]] = True
    return survivors


def _converged(loss: np.ndarray, before: np.ndarray, s: AscentSettings) -> np.ndarray:
    """Which elements converged: a positive loss whose relative change per step, averaged over
    the window since `before` (the loss `convergence_window` steps ago), is under the tolerance."""
    window = s.convergence_window
    change = np.abs(loss - before) / (window * np.maximum(np.abs(loss), 1e-12))
    return (loss > 0) & (change < s.convergence_tol)
