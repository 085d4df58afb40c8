"""Stage `oip`: for every map of a layer and several noise starts, the input pattern that drives it.

dvc repro oip                                   # every seed
python -m oiplab.stages.oip train.seed=0 oip.maps=[120] oip.n_starts=16
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.analysis.activations import probe_model
from oiplab.config import Config, OipConfig, layer_grid
from oiplab.data import load_standardization
from oiplab.io import atomic_dir, write_json
from oiplab.model import load_model
from oiplab.oip.engine import AscentResult, AscentSettings, ascend
from oiplab.oip.init import start_images
from oiplab.oip.objectives import Objectives, channel_objectives, neuron_objectives
from oiplab.render import save_figure
from oiplab.render.oip import evolution_figure, gallery_figure, loss_curves_figure
from oiplab.stages import stage_main
from oiplab.stages.train import model_path

RESULT_FILE = "oip.npz"


def output_dir(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.artifacts) / "oip" / f"seed_{seed}"


def metrics_path(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.metrics) / f"oip_seed_{seed}.json"


def settings_of(o: OipConfig, n_epochs: int | None = None) -> AscentSettings:
    return AscentSettings(
        epsilon=o.epsilon,
        n_epochs=n_epochs or o.n_epochs,
        conv_criterion=o.conv_criterion,
        stop_on_convergence=o.stop_on_convergence,
        n_snapshots=o.n_snapshots,
        chunk_size=o.chunk_size,
    )


def objectives_of(
    o: OipConfig, map_of_element: np.ndarray, grid: tuple[int, int, int]
) -> Objectives:
    if o.objective == "channel":
        return channel_objectives(map_of_element, grid)
    position = o.neuron_position or [grid[0] // 2, grid[1] // 2]
    return neuron_objectives(map_of_element, np.tile(position, (len(map_of_element), 1)), grid)


def census(silent: np.ndarray, loss: np.ndarray) -> dict[str, int]:
    """Per-layer counts from (n_maps, n_starts) arrays: maps with an OIP, silent maps."""
    with_oip = (loss > 0).any(axis=1)
    all_silent = silent.all(axis=1)
    return {
        "n_maps": int(len(loss)),
        "n_with_oip": int(with_oip.sum()),
        "n_silent": int(all_silent.sum()),
        "n_zero_not_silent": int((~with_oip & ~all_silent).sum()),
    }


def run(cfg: Config) -> dict[str, Any]:
    """Ascend every (map, start) of `cfg.oip.layer` for seed `cfg.train.seed` in one batch."""
    o, seed = cfg.oip, cfg.train.seed
    model = load_model(model_path(cfg, seed))
    stats = load_standardization(cfg.paths.prepared)
    grid = layer_grid(cfg.model, o.layer)
    maps = np.asarray(o.maps or range(grid[2]), dtype=np.int64)
    # Every map starts from the same n_starts images, so maps (and seeds) are compared fairly.
    starts = start_images(o.n_starts, o.grids, o.weights, o.start_seed, stats, o.smoothing)
    map_of_element = np.repeat(maps, o.n_starts)
    print(
        f"[oip] seed {seed}: {o.layer}, {len(maps)} maps x {o.n_starts} starts, "
        f"{o.n_epochs} steps max",
        flush=True,
    )
    t0 = time.perf_counter()
    result = ascend(
        probe_model(model, [o.layer]),
        np.tile(starts, (len(maps), 1, 1, 1)),
        objectives_of(o, map_of_element, grid),
        settings_of(o),
        progress=lambda m: print(m, flush=True),
    )
    seconds = time.perf_counter() - t0

    shape = (len(maps), o.n_starts)
    loss = result.loss.reshape(shape)
    silent = result.silent.reshape(shape)
    counts = census(silent, loss)
    metrics = {
        "seed": seed,
        "layer": o.layer,
        **counts,
        "seconds": round(seconds, 2),
        "steps_per_second": round(float(result.steps.sum()) / seconds, 1),
        "mean_steps": float(result.steps.mean()),
        "converged_fraction": float(result.converged.mean()),
    }
    out = output_dir(cfg, seed)
    with atomic_dir(out) as tmp:
        best = _save_arrays(tmp / RESULT_FILE, maps, starts, result, shape)
        _render(tmp, cfg, seed, maps, result, best, shape)
        write_json(tmp / "census.json", metrics)
    write_json(metrics_path(cfg, seed), metrics)
    with tracking.stage_run(cfg, "oip", seed=seed):
        tracking.log_metrics({k: v for k, v in metrics.items() if k not in ("seed", "layer")})
        tracking.log_artifacts(out, "oip")
    print(
        f"[oip] seed {seed}: {counts['n_with_oip']} of {counts['n_maps']} maps gave an OIP, "
        f"{counts['n_silent']} silent from every start ({seconds:.1f} s)",
        flush=True,
    )
    return metrics


def _save_arrays(
    path: Path, maps: np.ndarray, starts: np.ndarray, r: AscentResult, shape: tuple[int, int]
) -> np.ndarray:
    """Write the per-(map, start) results and the best start's details; return best per map."""
    loss = r.loss.reshape(shape)
    best = loss.argmax(axis=1)
    flat_best = np.arange(shape[0]) * shape[1] + best
    np.savez_compressed(
        path,
        map_index=maps,
        start_images=starts[..., 0],
        images=r.images[..., 0].reshape(*shape, 28, 28),
        loss=loss,
        steps=r.steps.reshape(shape),
        converged=r.converged.reshape(shape),
        silent=r.silent.reshape(shape),
        best_start=best,
        best_images=r.images[flat_best, ..., 0],
        best_snapshots=r.snapshots[flat_best],
        best_loss_history=r.loss_history[flat_best],
        snapshot_steps=r.snapshot_steps,
    )
    return flat_best


def _render(
    folder: Path,
    cfg: Config,
    seed: int,
    maps: np.ndarray,
    r: AscentResult,
    best: np.ndarray,
    shape: tuple[int, int],
) -> None:
    o = cfg.oip
    silent_map = r.silent.reshape(shape).all(axis=1)
    for enhance, name in ((False, "gallery_plain.png"), (True, "gallery_contrast.png")):
        fig = gallery_figure(
            r.images[best, ..., 0],
            maps,
            r.loss[best],
            silent_map,
            f"seed {seed}, {o.layer}: best of {o.n_starts} starts per map"
            + (" (contrast-enhanced)" if enhance else ""),
            enhance=enhance,
        )
        save_figure(fig, folder / name, dpi=100)
    strongest = np.argsort(-r.loss[best], kind="stable")[: o.evolution_maps]
    strongest = strongest[r.loss[best][strongest] > 0]
    for k in strongest:
        e = best[k]
        losses = r.loss_history[e, np.minimum(r.snapshot_steps, r.steps[e])]
        fig = evolution_figure(
            r.snapshots[e],
            r.snapshot_steps,
            losses,
            f"seed {seed}, {o.layer} map {maps[k]}: evolution from noise",
        )
        save_figure(fig, folder / f"evolution_map_{maps[k]:03d}.png", dpi=100)
    if len(strongest):
        fig = loss_curves_figure(
            r.loss_history[best[strongest]],
            [f"map {maps[k]}" for k in strongest],
            f"seed {seed}, {o.layer}: objective per step",
        )
        save_figure(fig, folder / "loss_curves.png", dpi=100)


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
