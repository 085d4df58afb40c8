"""Stage `precursor`: coarse-pattern starts for the maps that stayed silent from noise (article X).

dvc repro precursor                      # every seed, for the maps the oip stage left silent
python -m oiplab.stages.precursor train.seed=0 precursor.maps=[1,3,5]
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.analysis.activations import probe_model
from oiplab.config import Config, layer_grid
from oiplab.data import load_standardization
from oiplab.errors import MissingInputError
from oiplab.io import atomic_dir, write_json
from oiplab.model import load_model
from oiplab.oip.engine import ascend
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.precursor import candidate_images, relu_layer, screen, variant_similarity
from oiplab.render import save_figure
from oiplab.render.oip import gallery_figure
from oiplab.stages import oip as oip_stage
from oiplab.stages import stage_main
from oiplab.stages.train import model_path

RESULT_FILE = "precursor.npz"


def output_dir(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.artifacts) / "precursor" / f"seed_{seed}"


def metrics_path(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.metrics) / f"precursor_seed_{seed}.json"


def noise_results(cfg: Config, seed: int) -> dict[str, np.ndarray]:
    """The oip stage's per-map outcome for this seed: map indices, OIP found, silent."""
    path = oip_stage.output_dir(cfg, seed) / oip_stage.RESULT_FILE
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run `dvc repro oip` first")
    with np.load(path) as arrays:
        return {
            "map_index": arrays["map_index"],
            "found": (arrays["loss"] > 0).any(axis=1),
            "silent": arrays["silent"].all(axis=1),
        }


def run(cfg: Config) -> dict[str, Any]:
    """Screen all coarse candidates for the target maps of seed `cfg.train.seed`, then optimize."""
    o, p, seed = cfg.oip, cfg.precursor, cfg.train.seed
    noise = noise_results(cfg, seed)
    n_maps_layer = layer_grid(cfg.model, o.layer)[2]
    if p.maps:
        maps = np.asarray(p.maps, dtype=np.int64)
    elif p.target == "all":
        maps = np.arange(n_maps_layer)
    else:
        maps = noise["map_index"][noise["silent"]]
    model = load_model(model_path(cfg, seed))
    probe = probe_model(model, [o.layer])
    candidates = candidate_images(p.grid, p.values, load_standardization(cfg.paths.prepared))
    prune = p.prune and relu_layer(probe)
    settings = replace(
        oip_stage.settings_of(o, n_epochs=p.full_steps), chunk_size=p.chunk_size, n_snapshots=0
    )
    print(
        f"[precursor] seed {seed}: {len(maps)} maps of {o.layer}, {len(candidates)} "
        f"candidates, prune={prune}",
        flush=True,
    )

    t0 = time.perf_counter()
    found = np.zeros(len(maps), dtype=bool)
    k = min(p.top_k, len(candidates))
    images = np.zeros((len(maps), k, 28, 28), dtype=np.float32)
    final_loss = np.zeros((len(maps), k), dtype=np.float32)
    screened = None
    if len(maps):
        screened = screen(
            probe,
            candidates,
            maps,
            p.screen_steps,
            k,
            settings,
            prune=prune,
            progress=lambda m: print(m, flush=True),
        )
    t_screen = time.perf_counter() - t0
    if len(maps):
        starts = candidates[screened.top_candidates.ravel()]
        full = ascend(
            probe,
            starts,
            channel_objectives(np.repeat(maps, k), (1, 1, n_maps_layer)),
            settings,
            progress=lambda m: print(m, flush=True),
        )
        images = full.images[..., 0].reshape(len(maps), k, 28, 28)
        final_loss = full.loss.reshape(len(maps), k)
        found = (final_loss > 0).any(axis=1)
    t_full = time.perf_counter() - t0 - t_screen

    silent_from_noise = set(noise["map_index"][noise["silent"]].tolist())
    found_maps = set(maps[found].tolist())
    similarity = [variant_similarity(images[i], final_loss[i] > 0) for i in range(len(maps))]
    similarity = [s for s in similarity if np.isfinite(s)]
    metrics = {
        "seed": seed,
        "layer": o.layer,
        "n_maps_searched": int(len(maps)),
        "n_candidates": int(len(candidates)),
        "from_noise": int(noise["found"].sum()),
        "from_precursor": len(found_maps & silent_from_noise),
        "still_silent": len(silent_from_noise - found_maps),
        "found_among_searched": int(found.sum()),
        "variant_similarity_mean": float(np.mean(similarity)) if similarity else None,
        "screen_seconds": round(t_screen, 2),
        "full_seconds": round(t_full, 2),
        "pairs_ascended_in_screen": int(screened.ascended_pairs) if screened else 0,
    }
    out = output_dir(cfg, seed)
    with atomic_dir(out) as tmp:
        np.savez_compressed(
            tmp / RESULT_FILE,
            map_index=maps,
            found=found,
            images=images,
            loss=final_loss,
            top_candidates=screened.top_candidates if screened else np.zeros((0, k), int),
            screen_loss=screened.top_losses if screened else np.zeros((0, k), np.float32),
        )
        if len(maps):
            best = final_loss.argmax(axis=1)
            fig = gallery_figure(
                images[np.arange(len(maps)), best],
                maps,
                final_loss[np.arange(len(maps)), best],
                ~found,
                f"seed {seed}, {o.layer}: OIPs from coarse precursors "
                f"({int(found.sum())} of {len(maps)} maps)",
                enhance=True,
            )
            save_figure(fig, tmp / "gallery.png", dpi=100)
            shown = np.flatnonzero(found)[:16]
            if len(shown):
                fig = gallery_figure(
                    images[shown].reshape(-1, 28, 28),
                    np.repeat(maps[shown], k),
                    final_loss[shown].ravel(),
                    (final_loss[shown] <= 0).ravel(),
                    f"seed {seed}: the {k} variants per map (one row a map)",
                    enhance=True,
                    per_row=k,
                )
                save_figure(fig, tmp / "variants.png", dpi=100)
        write_json(tmp / "census.json", metrics)
    write_json(metrics_path(cfg, seed), metrics)
    with tracking.stage_run(cfg, "precursor", seed=seed):
        tracking.log_metrics(
            {k_: v for k_, v in metrics.items() if k_ not in ("seed", "layer") and v is not None}
        )
        tracking.log_artifacts(out, "precursor")
    print(
        f"[precursor] seed {seed}: from noise {metrics['from_noise']}, from precursor "
        f"{metrics['from_precursor']}, still silent {metrics['still_silent']} "
        f"(screen {t_screen:.1f} s, full {t_full:.1f} s)",
        flush=True,
    )
    return metrics


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
