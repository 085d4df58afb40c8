"""OIP survey: successive halving of starts (on vs off) and the 1-start workload vs tf-keras-vis.

    PYTHONPATH=$PWD/src:$PWD[:/tmp/peer] python -m benchmarks.bench_halving \\
        --models /tmp/q1/models --prepared /tmp/q1/data/prepared --seeds 0 1
    # writes benchmarks/results/halving.{json,md}

Per seed, in one process and interleaved (old, new, old, new ... for `--repeats`), the default
survey (every map of the layer, the default starts) with `oip.halving_after=0` (every start to
the end: the old loop) and with halving (`--after`, `--keep`); other rungs and keeps are then
worked out from the old run's loss histories (a dropped start ends with its loss at the rung, a
kept one as in the old run: `simulated` rows, exact up to last-bit batch effects; the measured
row checks them); then one start: the plain survey, the
survey with `oip.wake_steps`, and the peer library's activation maximization (tf-keras-vis
0.8.7, its defaults: jitter, rotation, total-variation and L1 regularizers, RMSprop, 200 steps)
from the same start image, when it can be imported (install it outside the project's venv:
`pip install --no-deps --target /tmp/peer tf-keras-vis==0.8.7 deprecated imageio`).

Columns: maps driven above 0 (`maps_found`), the median and the smallest ratio of each map's best
activation to the reference row's over the maps both found, and the maps where it fell by more
than 1% (`maps_worse_1pct`).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import default_config, write_results
from oiplab.analysis.activations import probe_model
from oiplab.config import OipConfig
from oiplab.data import load_image_target, load_prepared
from oiplab.model import layer_shapes, load_model
from oiplab.oip.engine import _rung_survivors
from oiplab.oip.survey import starts_for, survey

log = logging.getLogger(__name__)
PEER_STEPS = 200  # tf-keras-vis's default


def compare(best: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Maps found (best > 0) and the activation ratio to `reference` over maps both found."""
    both = (best > 0) & (reference > 0)
    ratio = best[both] / reference[both]
    return {
        "maps_found": int((best > 0).sum()),
        "median_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
        "min_ratio": float(ratio.min()) if ratio.size else float("nan"),
        "maps_worse_1pct": int((ratio < 0.99).sum()),
    }


def run_survey(model: Any, o: OipConfig, shape: tuple[int, int, int], starts: np.ndarray):
    t0 = time.perf_counter()
    found = survey(model, o, shape, starts, progress=None)
    return found.loss.max(axis=1), time.perf_counter() - t0, found


def peer_ascent(probe: Any, start: np.ndarray, pixel_range: tuple[float, float]):
    """tf-keras-vis's activation maximization of every map's mean from one start image, batched
    (sample b maximizes map b); returns each map's mean activation at its final image."""
    import tensorflow as tf
    from tf_keras_vis.activation_maximization import ActivationMaximization

    n = int(probe.output.shape[-1])
    index = tf.constant(np.arange(n))

    def score(out):
        return tf.gather(tf.reduce_mean(out, axis=(1, 2)), index, axis=1, batch_dims=1)

    t0 = time.perf_counter()
    seed_input = np.tile(start[None], (n, 1, 1, 1))
    am = ActivationMaximization(probe, clone=False)
    final = am(score, seed_input=seed_input, input_range=pixel_range, steps=PEER_STEPS)
    seconds = time.perf_counter() - t0
    act = np.asarray(probe.predict(np.asarray(final), verbose=0)).mean(axis=(1, 2))
    return act[np.arange(n), np.arange(n)], seconds


def seed_rows(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = default_config()
    model = load_model(args.models / f"seed_{seed}" / "model.keras", cfg.model)
    data = load_prepared(args.prepared, cfg.data)
    target = load_image_target(args.prepared)
    o = cfg.oip
    shape = layer_shapes(cfg.model)[o.layer]
    starts = starts_for(o, data.standardization, target, data.x_test)
    old_o = o.model_copy(update={"halving_after": 0})
    new_o = o.model_copy(update={"halving_after": args.after, "halving_keep": args.keep})
    times: dict[str, list[float]] = {"old": [], "new": []}
    best: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
        for name, oo in (("old", old_o), ("new", new_o)):
            best[name], seconds, found = run_survey(model, oo, shape, starts)
            times[name].append(seconds)
            log.info(f"seed {seed} {name}: {seconds:.1f} s, {int((best[name] > 0).sum())} maps")
            if name == "old":
                old_result = found.result
    label = f"{o.n_starts} starts"
    rows = [
        {
            "seed": seed,
            "workload": label,
            "method": "halving off (old: every start to the end)",
            "seconds": min(times["old"]),
            **compare(best["old"], best["old"]),
        },
        {
            "seed": seed,
            "workload": label,
            "method": f"halving after {args.after}, keep {args.keep}",
            "seconds": min(times["new"]),
            **compare(best["new"], best["old"]),
            "time_ratio_new_old": min(times["new"]) / min(times["old"]),
        },
    ]
    rows += simulated_rows(seed, label, old_result, o.n_starts)
    return rows + one_start_rows(seed, model, o, shape, data, target)


def simulated_rows(seed: int, label: str, old: Any, n_starts: int) -> list[dict[str, Any]]:
    """Halving at other rungs, worked out from the old run: per map, the best of the kept
    starts' final loss and the dropped starts' loss at the rung; steps as they would be."""
    rows = []
    n_maps = len(old.loss) // n_starts
    old_best = old.loss.reshape(n_maps, n_starts).max(axis=1)
    group = np.arange(len(old.loss)) // n_starts
    for after in (50, 100, 200, 300):
        for keep in (2, 3, 4):
            live = old.steps > after  # still ascending at the rung
            kept = _rung_survivors(group, old.loss_history[:, after], live, keep) | ~live
            loss = np.where(kept, old.loss, old.loss_history[:, after])
            steps = np.where(kept, old.steps, after)
            rows.append(
                {
                    "seed": seed,
                    "workload": label,
                    "method": f"simulated: halving after {after}, keep {keep}",
                    **compare(loss.reshape(n_maps, n_starts).max(axis=1), old_best),
                    "step_ratio_new_old": float(steps.sum() / old.steps.sum()),
                }
            )
    return rows


def one_start_rows(seed, model, o, shape, data, target) -> list[dict[str, Any]]:
    """One start: the plain survey, with the wake-up of silent maps, and the peer (if present)."""
    one = o.model_copy(update={"n_starts": 1, "halving_after": 0})
    starts = starts_for(one, data.standardization, target, data.x_test)
    plain, t_plain, _ = run_survey(model, one, shape, starts)
    wake = one.model_copy(update={"wake_steps": 100})
    woke, t_wake, found = run_survey(model, wake, shape, starts)
    base = {"seed": seed, "workload": "1 start"}
    rows = [
        {**base, "method": "project, plain", "seconds": t_plain, **compare(plain, plain)},
        {**base, "method": "project, wake_steps=100", "seconds": t_wake, **compare(woke, plain)},
    ]
    try:
        pixels = data.standardization.apply(np.array([0.0, 1.0]))
        probe = probe_model(model, [o.layer])
        peer, t_peer = peer_ascent(probe, starts[0], (float(pixels[0]), float(pixels[1])))
    except ImportError:
        rows.append({**base, "method": "tf-keras-vis 0.8.7: not importable, not run"})
        return rows
    rows.append(
        {
            **base,
            "method": f"tf-keras-vis 0.8.7, {PEER_STEPS} steps",
            "seconds": t_peer,
            **compare(peer, plain),
        }
    )
    rows.append(
        {**base, "method": "project wake vs peer (ratio to the peer)", **compare(woke, peer)}
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--after", type=int, default=100, help="halving rung (steps)")
    parser.add_argument("--keep", type=int, default=2, help="starts kept per map")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = [row for seed in args.seeds for row in seed_rows(seed, args)]
    o = default_config().oip
    meta = {
        "layer": o.layer,
        "n_steps": o.n_steps,
        "models": str(args.models),
        "ratios": "best activation per map / the first row of its seed and workload "
        "(the last 1-start row: / the peer), over maps both found",
    }
    path = write_results("halving", rows, meta)
    log.info(path.read_text())


if __name__ == "__main__":
    main()
