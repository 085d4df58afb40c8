"""Stage `select_images`: choose the test images of each group from all seeds' predictions.

dvc repro select_images
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from oiplab import tracking
from oiplab.analysis.activations import layer_outputs
from oiplab.analysis.selection import GroupRule, select_group
from oiplab.config import Config
from oiplab.data import load_prepared
from oiplab.errors import MissingInputError
from oiplab.io import write_json
from oiplab.model import load_model
from oiplab.stages import stage_main
from oiplab.stages.train import model_path


def selection_path(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts) / "selection.json"


def read_selection(cfg: Config) -> dict:
    path = selection_path(cfg)
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run `dvc repro select_images` first")
    return json.loads(path.read_text(encoding="utf-8"))


def test_logits(cfg: Config, x_test: np.ndarray) -> np.ndarray:
    """(n_seeds, n_test, n_classes) pre-softmax outputs of every seed's model on the test split.

    Computed from Dense_1's output and Dense_2's weights, since the model ends in a softmax.
    """
    batch = cfg.train.eval_batch_size
    out = []
    for seed in cfg.seeds:
        model = load_model(model_path(cfg, seed))
        hidden = layer_outputs(model, x_test, ["Dense_1"], batch_size=batch)["Dense_1"]
        kernel, bias = model.get_layer("Dense_2").get_weights()
        out.append(hidden.astype(np.float64) @ kernel + bias)
    return np.stack(out)


def run(cfg: Config) -> dict[str, Any]:
    """Write `artifacts/selection.json`: each group's indices, scores and per-seed predictions."""
    data = load_prepared(cfg.paths.prepared)
    logits = test_logits(cfg, data.x_test)
    groups = []
    for g in cfg.activations.groups:
        rule = GroupRule(g.name, g.kind, g.true_class, g.count, g.other_class, tuple(g.indices))
        group = select_group(rule, logits, data.y_test)
        group["predicted"] = {
            str(seed): logits[k, group["indices"]].argmax(1).tolist()
            for k, seed in enumerate(cfg.seeds)
        }
        groups.append(group)
        print(f"[select_images] {g.name}: test images {group['indices']}", flush=True)
    selection = {"seeds": list(cfg.seeds), "groups": groups}
    write_json(selection_path(cfg), selection)
    with tracking.stage_run(cfg, "select_images"):
        tracking.log_artifact(selection_path(cfg))
    return selection


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
