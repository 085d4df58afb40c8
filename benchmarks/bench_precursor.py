"""Precursor screen speed: 19,683 coarse candidates x 10 steps, batched (with and without the exact
pruning) against the naive per-candidate loop on a subset, in one run.

    python -m benchmarks.bench_precursor [--model models/seed_0/model.keras]
    # writes benchmarks/results/precursor.{json,md}
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.bench_oip import LAYER, MNIST_STATS, SCALES, naive_ascent
from benchmarks.common import load_model_or_untrained, model_cfg, timed, write_results
from oiplab.analysis.activations import probe_model
from oiplab.model import layer_shapes
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.init import start_images
from oiplab.oip.objectives import channel_objectives
from oiplab.oip.precursor import SearchSettings, candidate_images, screen


def silent_maps(probe, n_starts: int = 8) -> np.ndarray:
    """Maps silent from every one of the oip stage's default noise starts (its definition)."""
    starts = start_images(n_starts, SCALES, 0, MNIST_STATS)
    n_maps = int(probe.output.shape[-1])
    tiled = np.tile(starts, (n_maps, 1, 1, 1))
    obj = channel_objectives(np.repeat(np.arange(n_maps), n_starts), (3, 3, n_maps))
    result = ascend(probe, tiled, obj, AscentSettings(n_steps=1, n_snapshots=0), progress=None)
    return np.flatnonzero(result.silent.reshape(n_maps, n_starts).all(axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/seed_0/model.keras")
    parser.add_argument("--naive-candidates", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--all-maps", action="store_true", help="also screen all maps (pruned)")
    args = parser.parse_args()

    from oiplab.backend import backend_name

    model, source = load_model_or_untrained(args.model)
    probe = probe_model(model, [LAYER])
    candidates = candidate_images(3, (0.2, 0.5, 0.8), MNIST_STATS)
    n = len(candidates)
    settings = AscentSettings(chunk_size=4096, n_snapshots=0)
    silent = silent_maps(probe)
    layer_shape = layer_shapes(model_cfg())[LAYER]
    n_maps = layer_shape[2]
    # A responding map (not silent), so that the unpruned screen's every step is real work.
    busy_map = int(np.setdiff1d(np.arange(n_maps), silent)[0])
    rows = []

    for label, maps, prune in (
        (f"1 map ({busy_map}), unpruned", np.array([busy_map]), False),
        (f"1 map ({busy_map}), pruned", np.array([busy_map]), True),
        (f"all {len(silent)} silent maps, pruned", silent, True),
        *([(f"all {n_maps} maps, pruned", np.arange(n_maps), True)] if args.all_maps else []),
    ):
        if not len(maps):
            continue
        result, seconds = timed(
            lambda m=maps, p=prune: screen(
                probe,
                candidates,
                m,
                layer_shape,
                SearchSettings(args.steps, 8, 0, p, settings),
                None,
            )
        )
        rows.append(
            {
                "workload": f"{label}: {n} candidates x {args.steps} steps",
                "engine": "batched",
                "seconds": seconds,
                "pairs_ascended": result.ascended_pairs,
                "seconds_per_map": seconds / len(maps),
            }
        )
    if backend_name() == "tensorflow":
        subset = candidates[: args.naive_candidates]
        _, seconds = timed(
            lambda: [naive_ascent(probe, img, busy_map, args.steps, 0.01) for img in subset]
        )
        per_map = seconds / len(subset) * n
        rows.append(
            {
                "workload": f"1 map ({busy_map}): {len(subset)} of {n} candidates x "
                f"{args.steps} steps",
                "engine": "naive per-candidate loop",
                "seconds": seconds,
                "seconds_per_map": per_map,
                "note": "seconds_per_map extrapolated to all candidates",
            }
        )
        rows[0]["speedup_vs_naive"] = per_map / rows[0]["seconds"]
    path = write_results(
        "precursor", rows, {"model": source, "layer": LAYER, "silent_maps": len(silent)}
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
