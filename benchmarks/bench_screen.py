"""The precursor screen's length: the whole search (screen, then the best candidates' full ascent)
with article X's 10-step screen and with shorter ones, per seed of the pipeline, in one run: maps
found, whether they are the same maps, how much of each map's top-k the screens share, seconds.

    python -m benchmarks.bench_screen [--steps 10 3 1] [--seeds 0 1]   # needs `dvc repro oip`
    # writes benchmarks/results/screen.{json,md}
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from benchmarks.common import default_config, write_results
from oiplab.analysis.activations import probe_model
from oiplab.data import load_image_target, load_prepared
from oiplab.layout import Layout, OipFiles
from oiplab.model import layer_shapes, load_model
from oiplab.oip.precursor import SearchSettings, candidate_images, search
from oiplab.oip.survey import ascent_settings, load_outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 3, 1], help="first: reference")
    parser.add_argument("--seeds", type=int, nargs="*", help="default: the study's seeds")
    args = parser.parse_args()
    cfg = default_config()
    lay, o, p = Layout.of(cfg), cfg.oip, cfg.precursor
    data = load_prepared(lay.prepared)
    target = load_image_target(lay.prepared) if o.standardize == "images" else None
    candidates = candidate_images(p.grid, p.values, data.standardization, target)
    layer_shape = layer_shapes(cfg.model)[o.layer]
    settings = replace(ascent_settings(o), chunk_size=p.chunk_size)
    rows = []
    for seed in args.seeds or cfg.seeds:
        probe = probe_model(load_model(lay.model_file(seed)), [o.layer])
        noise = load_outcome(lay.oip_dir(seed) / OipFiles.arrays)
        maps = noise["map_index"][~noise["found"]]
        reference = None
        for steps in args.steps:
            t0 = time.perf_counter()
            search_settings = replace(SearchSettings.of(p, settings), screen_steps=steps)
            found = search(probe, maps, candidates, layer_shape, search_settings, progress=None)
            row = {
                "seed": seed,
                "silent_from_noise": len(maps),
                "screen_steps": steps,
                "maps_found": int(found.found.sum()),
                "screen_seconds": found.screen_seconds,
                "search_seconds": time.perf_counter() - t0,
            }
            if reference is None:
                reference = found
            else:
                shared = [
                    len(set(a) & set(b)) / len(a)
                    for a, b in zip(found.top_candidates, reference.top_candidates, strict=True)
                ]
                row |= {
                    "same_maps_as_first": bool(np.array_equal(found.found, reference.found)),
                    "top_k_shared": float(np.mean(shared)) if shared else float("nan"),
                    "screen_speedup": reference.screen_seconds / max(found.screen_seconds, 1e-9),
                }
            rows.append(row)
            print(row, flush=True)
    meta = {"layer": o.layer, "top_k": p.top_k, "full_steps": p.full_steps, "steps": args.steps}
    path = write_results("screen", rows, meta)
    print(path.read_text())


if __name__ == "__main__":
    main()
