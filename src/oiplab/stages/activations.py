"""Stage `activations`: every layer's maps for the selected images of one seed, their grids, and the
patterns common to a group (FCPs), with within- vs across-group overlaps.

    dvc repro activations        # every seed
    python -m oiplab.stages.activations train.seed=0 activations.standardize_maps=true
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.analysis.activations import layer_outputs
from oiplab.analysis.common import compare_groups
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.io import atomic_dir, write_json
from oiplab.model import load_model
from oiplab.render import save_figure
from oiplab.render.maps import activation_figure, common_pattern_figure
from oiplab.stages import stage_main
from oiplab.stages.select_images import read_selection
from oiplab.stages.train import model_path

DUMP_FILE = "activations.npz"


def output_dir(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.artifacts) / "activations" / f"seed_{seed}"


def metrics_path(cfg: Config, seed: int) -> Path:
    return Path(cfg.paths.metrics) / f"activations_seed_{seed}.json"


def run(cfg: Config) -> dict[str, Any]:
    """Dump, draw and compare the selected images' layer outputs for seed `cfg.train.seed`."""
    a = cfg.activations
    seed = cfg.train.seed
    selection = read_selection(cfg)
    data = load_prepared(cfg.paths.prepared)
    model = load_model(model_path(cfg, seed))

    # One row per selected image, in group order; `positions` maps a group to its rows.
    indices, image_groups, positions = [], [], {}
    for group in selection["groups"]:
        positions[group["name"]] = np.arange(len(indices), len(indices) + len(group["indices"]))
        indices += group["indices"]
        image_groups += [group["name"]] * len(group["indices"])
    images = data.x_test[indices]
    outputs = layer_outputs(model, images, a.layers)
    images01 = data.standardization.invert(images[..., 0])

    numbers: dict[str, Any] = {}
    out = output_dir(cfg, seed)
    with atomic_dir(out) as tmp:
        np.savez(
            tmp / DUMP_FILE,
            image_indices=np.asarray(indices),
            groups=np.asarray(image_groups),
            layer_names=np.asarray(a.layers),
            **outputs,
        )
        for row, (index, group) in enumerate(zip(indices, image_groups, strict=True)):
            for layer in a.layers:
                fig = activation_figure(
                    images01[row],
                    outputs[layer][row],
                    f"seed {seed}, {layer}, test image {index} "
                    f"({group}, label {data.y_test[index]})",
                    colormap=a.colormap,
                    standardize=a.standardize_maps,
                    contrast=a.contrast,
                    per_row=a.tiles_per_row,
                )
                save_figure(fig, tmp / "grids" / f"{group}_{index}_{layer}.png", dpi=80)
        for layer in a.common.layers:
            for name, other in a.common.comparisons:
                result = compare_groups(
                    outputs[layer], positions[name], positions[other], a.common.threshold
                )
                masks = result.pop("masks")
                numbers.setdefault(layer, {})[f"{name}_vs_{other}"] = result
                fig = common_pattern_figure(
                    outputs[layer][positions[name]].mean(axis=0),
                    masks["common"],
                    masks["distinct"],
                    f"seed {seed}, {layer}: {name} against {other}",
                    colormap=a.colormap,
                    per_row=a.tiles_per_row,
                )
                save_figure(fig, tmp / "common" / f"{layer}_{name}_vs_{other}.png", dpi=90)
        write_json(tmp / "common.json", numbers)
    metrics = {"seed": seed, "n_images": len(indices), "common": numbers}
    write_json(metrics_path(cfg, seed), metrics)

    with tracking.stage_run(cfg, "activations", seed=seed):
        tracking.log_metrics(
            {
                f"{layer}.{cmp}.{key}": value
                for layer, by_cmp in numbers.items()
                for cmp, result in by_cmp.items()
                for key, value in result.items()
            }
        )
        tracking.log_artifacts(out, "activations")
    for layer, by_cmp in numbers.items():
        for cmp, r in by_cmp.items():
            print(
                f"[activations] seed {seed} {layer} {cmp}: {r['n_common']} common, "
                f"{r['n_distinct']} distinct, Jaccard within {r['jaccard_within']:.3f} "
                f"across {r['jaccard_across']:.3f}",
                flush=True,
            )
    return metrics


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
