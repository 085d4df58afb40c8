"""Silent maps: the precursor search against the warm-up rescue, and both in turn, per seed of the
pipeline (maps found and seconds, in one run).

    python -m benchmarks.bench_rescue            # needs `dvc repro oip` (the default study)
    # writes benchmarks/results/rescue.{json,md}
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from benchmarks.common import default_config, write_results
from oiplab.analysis.activations import probe_model
from oiplab.data import load_image_target, load_prepared
from oiplab.layout import Layout, OipFiles
from oiplab.model import layer_shapes, load_model
from oiplab.oip.precursor import SearchSettings, candidate_images, search
from oiplab.oip.rescue import preactivation_probe, rescue
from oiplab.oip.survey import ascent_settings, load_outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", help="default: the study's seeds")
    args = parser.parse_args()
    cfg = default_config()
    lay, o, p = Layout.of(cfg), cfg.oip, cfg.precursor
    data = load_prepared(lay.prepared)
    target = load_image_target(lay.prepared)
    candidates = candidate_images(p.grid, p.values, data.standardization, target)
    layer_shape = layer_shapes(cfg.model)[o.layer]
    settings = replace(ascent_settings(o), chunk_size=p.chunk_size)
    rows = []
    for seed in args.seeds or cfg.seeds:
        model = load_model(lay.model_file(seed))
        noise = load_outcome(lay.oip_dir(seed) / OipFiles.arrays)
        maps = noise["map_index"][~noise["found"]]
        starts = noise["start_images"][..., None]
        probe, linear = probe_model(model, [o.layer]), preactivation_probe(model, o.layer)
        t0 = time.perf_counter()
        found = search(
            probe, maps, candidates, layer_shape, SearchSettings.of(p, settings), progress=None
        )
        t_precursor = time.perf_counter() - t0
        warm = rescue(
            probe, linear, maps, starts, layer_shape, settings, p.rescue_warmup_steps, None
        )
        rest = found.map_index[~found.found]
        after = rescue(
            probe, linear, rest, starts, layer_shape, settings, p.rescue_warmup_steps, None
        )
        by_precursor, by_warmup = set(found.map_index[found.found]), set(warm.map_index[warm.found])
        for method, n_found, seconds in (
            ("precursor", len(by_precursor), t_precursor),
            ("warm-up", len(by_warmup), warm.seconds),
            ("precursor, then warm-up", len(by_precursor) + int(after.found.sum()),
             t_precursor + after.seconds),
        ):  # fmt: skip
            rows.append({"seed": seed, "silent_from_noise": len(maps), "method": method,
                         "maps_found": n_found, "seconds": seconds})  # fmt: skip
        rows.append(
            {
                "seed": seed,
                "silent_from_noise": len(maps),
                "method": "either alone",
                "maps_found": len(by_precursor | by_warmup),
                "note": "union of the two",
            }
        )
        print(rows[-4:], flush=True)
    path = write_results("rescue", rows, {"layer": o.layer, "warmup_steps": p.rescue_warmup_steps})
    print(path.read_text())


if __name__ == "__main__":
    main()
