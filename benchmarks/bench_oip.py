"""OIP engine speed: batched engine vs the articles' naive loop (one map, one image, eager steps).

    python -m benchmarks.bench_oip [--full]      # writes benchmarks/results/oip.{json,md}

Both run the same (map, start) pairs for the same number of steps, in one process, so the ratio
is robust to a noisy machine. `--full` adds the default workload: all 128 maps of Conv2D_3 x 8
starts x 600 steps, with and without the convergence stop.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import load_model_or_untrained, model_cfg, timed, write_results
from oiplab.analysis.activations import probe_model
from oiplab.data.prepared import Standardization
from oiplab.model import layer_shapes
from oiplab.oip.engine import AscentSettings, ascend
from oiplab.oip.init import NoiseScales, start_images
from oiplab.oip.objectives import channel_objectives

LAYER = "Conv2D_3"
MNIST_STATS = Standardization(mean=0.1307, std=0.3081)
SCALES = NoiseScales((3, 7, 14, 28), (0.2, 0.2, 0.0, 0.0))  # conf/oip/default.yaml's


def naive_ascent(probe, image: np.ndarray, map_index: int, n_steps: int, epsilon: float):
    """The articles' loop for one map and one image: an eager TensorFlow step per iteration."""
    import tensorflow as tf

    x = tf.Variable(image[None])
    mean, std = float(image.mean()), float(image.std())
    for _ in range(n_steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(probe(x, training=False)[..., map_index])
        grad = tape.gradient(loss, x)
        grad /= tf.sqrt(tf.reduce_mean(tf.square(grad))) + 1e-8
        x.assign_add(epsilon * grad)
        x.assign((x - tf.reduce_mean(x)) / tf.math.reduce_std(x) * std + mean)
    return x.numpy()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/seed_0/model.keras")
    parser.add_argument("--pairs", type=int, default=8, help="(map, start) pairs, naive run")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()

    from oiplab.backend import backend_name

    model, source = load_model_or_untrained(args.model)
    probe = probe_model(model, [LAYER])
    grid = layer_shapes(model_cfg())[LAYER]
    rng = np.random.default_rng(0)
    # Pick pairs that respond (non-silent), so both engines do every step.
    starts = start_images(64, SCALES, 0, MNIST_STATS)
    responding = np.asarray(probe.predict(starts, verbose=0)).mean(axis=(1, 2)) > 0
    candidates = np.argwhere(responding)
    picked = candidates[rng.choice(len(candidates), args.pairs, replace=False)]
    images, maps = starts[picked[:, 0]], picked[:, 1]
    settings = AscentSettings(n_steps=args.steps, convergence_tol=0.0, n_snapshots=0)
    rows = []

    work = args.pairs * args.steps
    batched, t_batched = timed(
        lambda: ascend(probe, images, channel_objectives(maps, grid), settings, progress=None)
    )
    # Warm-compiled second run: the fair steady-state number (first run includes tracing).
    batched, t_batched_warm = timed(
        lambda: ascend(probe, images, channel_objectives(maps, grid), settings, progress=None)
    )
    row = {
        "workload": f"{args.pairs} pairs x {args.steps} steps",
        "engine": "batched",
        "seconds": t_batched_warm,
        "image_grad_steps_per_s": work / t_batched_warm,
        "seconds_incl_compile": t_batched,
    }
    rows.append(row)
    if backend_name() == "tensorflow":
        finals, t_naive = timed(
            lambda: [
                naive_ascent(probe, images[k], int(maps[k]), args.steps, settings.epsilon)
                for k in range(args.pairs)
            ]
        )
        diff = float(np.abs(np.stack(finals) - batched.images).max())
        rows.append(
            {
                "workload": row["workload"],
                "engine": "naive (articles' eager loop)",
                "seconds": t_naive,
                "image_grad_steps_per_s": work / t_naive,
                "max_abs_image_diff_vs_batched": diff,
            }
        )
        rows[0]["speedup_vs_naive"] = t_naive / t_batched_warm

    if args.full:
        n_maps, n_starts, n_steps = grid[2], 8, 600
        full_starts = start_images(n_starts, SCALES, 0, MNIST_STATS)
        tiled = np.tile(full_starts, (n_maps, 1, 1, 1))
        obj = channel_objectives(np.repeat(np.arange(n_maps), n_starts), grid)
        for stop in (True, False):
            s = AscentSettings(n_steps=n_steps, convergence_tol=2e-4, stop_on_convergence=stop)
            result, seconds = timed(lambda s=s: ascend(probe, tiled, obj, s, progress=None))
            rows.append(
                {
                    "workload": f"{n_maps} maps x {n_starts} starts x {n_steps} steps",
                    "engine": "batched, stop on convergence" if stop else "batched, all steps",
                    "seconds": seconds,
                    "image_grad_steps_per_s": float(result.steps.sum()) / seconds,
                    "silent_elements": int(result.silent.sum()),
                }
            )
    path = write_results("oip", rows, {"model": source, "layer": LAYER})
    print(path.read_text())


if __name__ == "__main__":
    main()
