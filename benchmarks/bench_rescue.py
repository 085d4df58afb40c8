"""Silent maps, old against new in one run: the precursor search and the rescue as the articles
did them (`precursor.screen_keep=0 halving_rungs=[] rescue_halving_rungs=[]`) and with the
configured shortcuts, per seed, interleaved (old first on even seeds, new first on odd ones):
seconds per phase, maps the precursor wakes, maps the rescue then wakes, their union, and how the
precursor's OIPs differ (same top-k candidates, best activation new / old).

    python -m benchmarks.bench_rescue [--seeds 0 1] [--set paths.models=/tmp/q1/models ...]
    # needs the models and `dvc repro oip` (the silent maps); writes benchmarks/results/rescue.*
    # without the oip stage's arrays, the silent maps are those at 0 from every start (noted)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks.common import default_config, write_results
from oiplab.analysis.activations import probe_model
from oiplab.data import load_image_target, load_prepared
from oiplab.layout import Layout, OipFiles
from oiplab.model import layer_shapes, load_model
from oiplab.oip.precursor import (
    PrecursorResult,
    SearchSettings,
    Shortcuts,
    candidate_images,
    search,
)
from oiplab.oip.rescue import RescueResult, RescueSettings, preactivation_probe, rescue
from oiplab.oip.survey import ascent_settings, load_outcome


@dataclass
class Variant:
    name: str
    search: SearchSettings
    rescue: RescueSettings


def variants(cfg) -> tuple[Variant, Variant]:
    """(old, new): the articles' search and rescue, and the configured one."""
    p = cfg.precursor
    ascent = replace(ascent_settings(cfg.oip), chunk_size=p.chunk_size)
    new_search = SearchSettings.of(p, ascent)
    new_rescue = RescueSettings(ascent, p.rescue_warmup_steps, tuple(p.rescue_halving_rungs))
    old = Variant(
        "old", replace(new_search, shortcuts=Shortcuts()), replace(new_rescue, halving_rungs=())
    )
    return old, Variant("new", new_search, new_rescue)


def run_variant(v: Variant, seed_inputs: dict[str, Any]) -> tuple[PrecursorResult, RescueResult]:
    """The stage's search, then the rescue of the maps it left, under `v`."""
    s = seed_inputs
    found = search(
        s["probe"], s["maps"], s["candidates"], s["layer_shape"], v.search, progress=None
    )
    still = found.map_index[~found.found]
    saved = rescue(
        s["probe"], s["linear"], still, s["starts"], s["layer_shape"], v.rescue, progress=None
    )
    return found, saved


def row(seed: int, v: Variant, found: PrecursorResult, saved: RescueResult, seconds: float):
    by_precursor = set(found.map_index[found.found].tolist())
    by_rescue = set(saved.map_index[saved.found].tolist())
    return {
        "seed": seed,
        "variant": v.name,
        "silent_from_noise": len(found.map_index),
        "seconds": seconds,
        "screen_s": found.screen_seconds,
        "full_s": found.full_seconds,
        "rescue_s": saved.seconds,
        "screen_pairs": found.ascended_pairs,
        "full_steps": int(found.steps.sum()),
        "precursor_maps": len(by_precursor),
        "rescue_maps": len(by_rescue),
        "union": len(by_precursor | by_rescue),
    }


def compare(old: tuple, new: tuple) -> dict[str, Any]:
    """How the new precursor's and rescue's outcome differs from the old one's."""
    (fo, so), (fn, sn) = old, new
    ok = fo.found & fn.found
    ratio = fn.loss.max(axis=1)[ok] / fo.loss.max(axis=1)[ok] if ok.any() else np.ones(1)
    same_topk = int((np.sort(fo.top_candidates, 1) == np.sort(fn.top_candidates, 1)).all(1).sum())
    union_old = set(fo.map_index[fo.found]) | set(so.map_index[so.found])
    union_new = set(fn.map_index[fn.found]) | set(sn.map_index[sn.found])
    return {
        "same_precursor_maps": set(fo.map_index[fo.found]) == set(fn.map_index[fn.found]),
        "union_lost": len(union_old - union_new),
        "union_gained": len(union_new - union_old),
        "maps_same_topk": f"{same_topk}/{len(fo.map_index)}",
        "best_activation_ratio_min": float(ratio.min()),
        "best_activation_ratio_median": float(np.median(ratio)),
    }


def seed_inputs(cfg, seed: int, candidates: np.ndarray) -> dict[str, Any]:
    lay, o = Layout.of(cfg), cfg.oip
    model = load_model(lay.model_file(seed), cfg.model)
    arrays = lay.oip_dir(seed) / OipFiles.arrays
    noise = load_outcome(arrays) if arrays.is_file() else silent_at_start(cfg, model)
    return {
        "probe": probe_model(model, [o.layer]),
        "linear": preactivation_probe(model, o.layer),
        "maps": noise["map_index"][~noise["found"]],
        "starts": noise["start_images"][..., None],
        "candidates": candidates,
        "layer_shape": layer_shapes(cfg.model)[o.layer],
    }


def silent_at_start(cfg, model) -> dict[str, np.ndarray]:
    """The oip stage's outcome as far as the precursor needs it, when its arrays are missing:
    maps at 0 from every start are taken as those without an OIP (nearly always the same)."""
    from oiplab.oip.engine import ascend
    from oiplab.oip.objectives import channel_objectives
    from oiplab.oip.survey import starts_for

    lay, o = Layout.of(cfg), cfg.oip
    stats = load_prepared(lay.prepared, cfg.data).standardization
    starts = starts_for(o, stats, load_image_target(lay.prepared), None)
    shape = layer_shapes(cfg.model)[o.layer]
    maps = np.arange(shape[2])
    objectives = channel_objectives(np.repeat(maps, len(starts)), shape)
    tiled = np.tile(starts, (len(maps), 1, 1, 1))
    settings = replace(ascent_settings(o), n_steps=0, n_snapshots=0)
    at_start = ascend(probe_model(model, [o.layer]), tiled, objectives, settings, progress=None)
    found = (at_start.loss.reshape(len(maps), len(starts)) > 0).any(axis=1)
    return {"map_index": maps, "found": found, "start_images": starts[..., 0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", help="default: the study's seeds")
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides (paths.models=...)")
    parser.add_argument("--name", default="rescue", help="results/<name>.{json,md}")
    args = parser.parse_args()
    cfg = default_config(args.set)
    lay, p = Layout.of(cfg), cfg.precursor
    data = load_prepared(lay.prepared, cfg.data)
    target = load_image_target(lay.prepared) if cfg.oip.standardize == "images" else None
    candidates = candidate_images(p.grid, p.values, data.standardization, target)
    rows = []
    for seed in args.seeds if args.seeds is not None else cfg.seeds:
        inputs = seed_inputs(cfg, seed, candidates)
        pair = variants(cfg)
        results = {}
        for v in pair if seed % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            results[v.name] = run_variant(v, inputs)
            rows.append(row(seed, v, *results[v.name], time.perf_counter() - t0))
        rows.append(
            {"seed": seed, "variant": "new vs old"} | compare(results["old"], results["new"])
        )
        print(rows[-3:], flush=True)
    meta = {
        "layer": cfg.oip.layer,
        "new": f"screen_keep {p.screen_keep}, halving_rungs {p.halving_rungs}, "
        f"rescue_halving_rungs {p.rescue_halving_rungs}",
        "old": "screen_keep 0, halving_rungs [], rescue_halving_rungs []",
        "models": str(lay.model_file(0).parent.parent),
        "silent_maps": "the oip stage's"
        if all((lay.oip_dir(s) / OipFiles.arrays).is_file() for s in args.seeds or cfg.seeds)
        else "at 0 from every oip start (the oip stage's arrays were missing)",
    }
    path = write_results(args.name, rows, meta)
    print(path.read_text())


if __name__ == "__main__":
    main()
