"""The precursor search (article X): coarse patterns as starts for maps that never respond to noise.

All `len(values) ** (grid * grid)` images with one of a few grey values per cell of a coarse grid
(3 values on 3x3 = 19,683) are upsampled bicubically to 28x28 and standardized like the training
data. A short ascent (the *screen*) ranks them per map, and the best few go on to a full ascent.

Exact shortcut: for a ReLU layer, a (candidate, map) pair whose objective is 0 at the start has an
input gradient of exactly 0 (every pre-activation of the map is <= 0), so it can never move and its
screen loss stays 0. One forward pass over all candidates finds those pairs for every map at once;
only the others are ascended. The ranking is unchanged (tested against the unpruned screen).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oiplab.data.prepared import ImageTarget, Standardization
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.init import to_target, upsample_bicubic
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.rungs import race
from oiplab.oip.step import make_step

if TYPE_CHECKING:
    import keras

    from oiplab.config import PrecursorConfig


log = logging.getLogger(__name__)


def coarse_grids(grid: int, values: Sequence[float]) -> np.ndarray:
    """Every (grid, grid) array whose cells take one of `values`: (len(values)**(grid*grid), g, g).

    Candidate i spells i in base len(values), cell (0, 0) being the most significant digit.
    """
    cells = grid * grid
    n = len(values) ** cells
    digits = (np.arange(n)[:, None] // len(values) ** np.arange(cells - 1, -1, -1)) % len(values)
    out = np.asarray(values, dtype=np.float32)[digits].reshape(n, grid, grid)
    if len(out) != len(values) ** cells:  # the count the method promises
        raise AssertionError(f"{len(out)} candidates, expected {len(values)}**{cells}")
    return out


def candidate_images(
    grid: int, values: Sequence[float], stats: Standardization, target: ImageTarget | None = None
) -> np.ndarray:
    """(N, 28, 28, 1) candidate start images in network units: each brought to `target` (see
    `init.to_target`), or, without one, standardized globally only (the article's way, which
    lets the most contrasted candidates lead the screen).

    Read-only and made once per process for the same arguments: the stage searches every seed
    in one process, and the seeds share the data's statistics (19,683 bicubic upsamplings each).
    """
    return _candidate_images(grid, tuple(values), stats, target)


@functools.lru_cache(maxsize=2)
def _candidate_images(
    grid: int, values: tuple[float, ...], stats: Standardization, target: ImageTarget | None
) -> np.ndarray:
    images01 = upsample_bicubic(coarse_grids(grid, values))
    out = (to_target(images01, target) if target is not None else stats.apply(images01))[..., None]
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Shortcuts:
    """Work the search may skip (`conf/precursor/`); each is off at its zero value, which gives
    the articles' search bit for bit. They can change which candidates are ascended and how far,
    never whether a map with a candidate above 0 at the start is searched."""

    screen_keep: int = 0  # per map, screen only the best N candidates at the start (0: all)
    halving_rungs: tuple[int, ...] = ()  # full-ascent steps at which a map's candidates are
    # halved (`oip.rungs`); (): every top_k candidate ascends full_steps


@dataclass(frozen=True)
class SearchSettings:
    """How the precursor search ascends (`conf/precursor/`)."""

    screen_steps: int  # the short ascent that ranks every candidate per map
    top_k: int  # candidates per map that go on to the full ascent
    full_steps: int
    prune: bool  # skip (candidate, map) pairs that provably cannot move (module docstring)
    ascent: AscentSettings  # step size and chunking (its step count is replaced by the above)
    shortcuts: Shortcuts = Shortcuts()

    @classmethod
    def of(cls, p: PrecursorConfig, ascent: AscentSettings) -> SearchSettings:
        shortcuts = Shortcuts(p.screen_keep, tuple(p.halving_rungs))
        return cls(p.screen_steps, p.top_k, p.full_steps, p.prune, ascent, shortcuts)


@dataclass
class ScreenResult:
    top_candidates: np.ndarray  # (M, k) candidate indices, best first
    top_losses: np.ndarray  # (M, k) their objective after the screen
    responding: np.ndarray  # (M,) candidates with a non-zero objective at the start
    ascended_pairs: int  # (candidate, map) pairs that were actually ascended


def screen(
    probe: keras.Model,
    candidates: np.ndarray,
    maps: np.ndarray,
    layer_shape: tuple[int, int, int],
    settings: SearchSettings,
    progress: Callable[[str], None] | None = log.info,
) -> ScreenResult:
    """Short ascent (`screen_steps`) of every candidate for every map; the `top_k` candidates
    per map by loss.

    The channel objective (a map's mean activation over the layer's output shape `layer_shape`)
    is used, as in the article. Ties are broken towards the lower candidate index, so pruned and
    unpruned screens select the same candidates. With `shortcuts.screen_keep` N, only each map's
    best N candidates by their objective at the start are screened (the others keep 0).
    """
    n, chunk_size = len(candidates), settings.ascent.chunk_size
    keep = settings.shortcuts.screen_keep
    losses = np.zeros((len(maps), n), dtype=np.float32)
    live = np.ones((len(maps), n), dtype=bool)
    if settings.prune or keep:
        start_loss = _mean_activation(probe, candidates, chunk_size)[:, maps].T
        if settings.prune:
            live = start_loss > 0  # (M, N): the only pairs that can move
        if keep:
            live &= best_per_row(start_loss, keep)
    m_idx, c_idx = np.nonzero(live)
    if progress is not None:
        progress(
            f"screen: {len(maps)} maps x {n} candidates, {len(m_idx)} pairs "
            f"ascended ({settings.screen_steps} steps), {live.size - len(m_idx)} pruned "
            f"(exactly{f', or beyond the best {keep} at the start' if keep else ''})"
        )
    if len(m_idx):
        epsilon = settings.ascent.epsilon
        short = AscentSettings(
            epsilon=epsilon,
            n_steps=settings.screen_steps,
            convergence_tol=0.0,
            stop_on_convergence=False,
            n_snapshots=0,
            chunk_size=chunk_size,
        )
        result = ascend(
            probe,
            candidates[c_idx],
            channel_objectives(maps[m_idx], layer_shape),
            short,
            progress=progress,
            step=make_step(probe, epsilon),
            label="screen",
        )
        losses[m_idx, c_idx] = result.loss
    order = np.argsort(-losses, axis=1, kind="stable")[:, : settings.top_k]
    return ScreenResult(
        order, np.take_along_axis(losses, order, axis=1), live.sum(axis=1), len(m_idx)
    )


def best_per_row(values: np.ndarray, n: int) -> np.ndarray:
    """(M, N) bool: each row's `n` largest values, ties towards the lower column."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    best = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(best, order, True, axis=1)
    return best


def _mean_activation(probe, images: np.ndarray, batch: int) -> np.ndarray:
    """(N, n_maps) mean activation of every map for every image (one forward pass)."""
    out = np.asarray(probe.predict(images, batch_size=batch, verbose=0), dtype=np.float32)
    return out.reshape(len(out), -1, out.shape[-1]).mean(axis=1)


def relu_layer(probe) -> bool:
    """Whether the probe's output is a ReLU's, directly or through max pooling (the condition
    under which a zero objective implies a zero input gradient, i.e. exact pruning)."""
    import keras

    layer = probe.layers[-1]
    while isinstance(layer, keras.layers.MaxPooling2D):
        layer = layer.input._keras_history.operation
    return getattr(layer, "activation", None) is keras.activations.relu


def variant_similarity(images: np.ndarray, valid: np.ndarray) -> float:
    """Mean pairwise Pearson correlation between a map's OIP variants (valid ones only)."""
    if valid.sum() < 2:
        return float("nan")
    flat = images[valid].reshape(int(valid.sum()), -1)
    corr = np.corrcoef(flat)
    return float(corr[np.triu_indices(len(flat), 1)].mean())


@dataclass
class PrecursorResult:
    map_index: np.ndarray  # (M,) the maps searched
    n_candidates: int
    top_candidates: np.ndarray  # (M, k) candidate indices kept by the screen, best first
    screen_loss: np.ndarray  # (M, k) their objective after the screen
    images: np.ndarray  # (M, k, 28, 28) after the full ascent, network scale
    loss: np.ndarray  # (M, k) the objective there (the oip stage's units: the map's mean)
    steps: np.ndarray  # (M, k) full-ascent steps each candidate took
    dropped_at: np.ndarray  # (M, k) the halving rung it stopped at, -1 if none (`oip.rungs`)
    ascended_pairs: int
    screen_seconds: float
    full_seconds: float

    @property
    def found(self) -> np.ndarray:
        return np.asarray((self.loss > 0).any(axis=1))

    @classmethod
    def empty(cls, maps: np.ndarray, n_candidates: int, k: int) -> PrecursorResult:
        """The result of searching no maps."""
        none = np.zeros((0, k))
        return cls(
            map_index=maps,
            n_candidates=n_candidates,
            top_candidates=none.astype(np.int64),
            screen_loss=none.astype(np.float32),
            images=np.zeros((0, k, 28, 28), np.float32),
            loss=none.astype(np.float32),
            steps=none.astype(np.int64),
            dropped_at=none.astype(np.int64),
            ascended_pairs=0,
            screen_seconds=0.0,
            full_seconds=0.0,
        )

    def metrics(self) -> dict:
        """The search's own numbers (the census by cause is `oip.census`)."""
        similarity = [
            variant_similarity(im, ok) for im, ok in zip(self.images, self.loss > 0, strict=True)
        ]
        similarity = [s for s in similarity if np.isfinite(s)]
        return {
            "n_maps_searched": int(len(self.map_index)),
            "n_candidates": int(self.n_candidates),
            "found_among_searched": int(self.found.sum()),
            "variant_similarity_mean": float(np.mean(similarity)) if similarity else None,
            "screen_seconds": round(self.screen_seconds, 2),
            "full_seconds": round(self.full_seconds, 2),
            "pairs_ascended_in_screen": int(self.ascended_pairs),
        }

    def save(self, path: Path, **extra: Any) -> None:
        np.savez_compressed(
            path,
            map_index=self.map_index,
            found=self.found,
            images=self.images,
            loss=self.loss,
            top_candidates=self.top_candidates,
            screen_loss=self.screen_loss,
            steps=self.steps,
            dropped_at=self.dropped_at,
            **extra,
        )


def target_maps(target: str, maps: list[int], noise: dict, n_maps: int) -> np.ndarray:
    """The maps to search: explicit `maps`, every map (`all`), or those the noise survey found
    no OIP for (`silent`)."""
    if maps:
        return np.asarray(maps, dtype=np.int64)
    if target == "all":
        return np.arange(n_maps)
    return noise["map_index"][~noise["found"]]


def search(
    probe: keras.Model,
    maps: np.ndarray,
    candidates: np.ndarray,
    layer_shape: tuple[int, int, int],
    settings: SearchSettings,
    progress: Callable[[str], None] | None = log.info,
) -> PrecursorResult:
    """Screen every candidate for `maps`, then ascend each map's best `top_k` for `full_steps`
    (halved at `settings.halving_rungs`, `oip.rungs`).

    The full ascent uses the same objective as the oip stage (the map's mean over its
    `layer_shape`), so its losses are comparable with the survey's.
    """
    k = min(settings.top_k, len(candidates))
    settings = replace(settings, prune=settings.prune and relu_layer(probe))
    if progress is not None:
        progress(f"{len(maps)} maps, {len(candidates)} candidates, prune={settings.prune}")
    t0 = time.perf_counter()
    if not len(maps):
        return PrecursorResult.empty(maps, len(candidates), k)
    screened = screen(probe, candidates, maps, layer_shape, settings, progress=progress)
    t_screen = time.perf_counter() - t0
    full = race(
        probe,
        candidates[screened.top_candidates],
        channel_objectives(np.repeat(maps, k), layer_shape),
        replace(settings.ascent, n_steps=settings.full_steps, n_snapshots=0),
        settings.shortcuts.halving_rungs,
        progress=progress,
    )
    return PrecursorResult(
        map_index=maps,
        n_candidates=len(candidates),
        top_candidates=screened.top_candidates,
        screen_loss=screened.top_losses,
        images=full.images[..., 0],
        loss=full.loss,
        steps=full.steps,
        dropped_at=full.dropped_at,
        ascended_pairs=screened.ascended_pairs,
        screen_seconds=t_screen,
        full_seconds=time.perf_counter() - t0 - t_screen,
    )
