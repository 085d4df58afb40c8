"""The comparison's cost: its two resampling engines against naive loops (ratios in one run), and
the whole `compare` stage on the pipeline's trained seeds (budget: 3 minutes for 5 seeds here).

    python -m benchmarks.bench_compare           # needs `dvc repro train` (the default study)
    # writes benchmarks/results/compare.{json,md}
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import default_config, timed, write_results
from oiplab.compare.stats import (
    image_resamples,
    per_image_moments,
    resampled_correlations,
    same_index_test,
)


def naive_same_index(pairs, n_maps: int, draws: int, rng) -> int:
    """The relabelling null drawn one permutation at a time (the obvious loop)."""
    null = []
    for _ in range(draws):
        count = 0
        for i, j in pairs:
            labels = rng.permutation(n_maps)
            count += int((labels[j] == i).sum())
        null.append(count)
    return len(null)


def naive_image_bootstrap(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Matched r over resampled images, recomputing every correlation from the raw values."""
    out = []
    for w in counts:
        rows = np.repeat(np.arange(len(w)), w)
        x, y = a[rows].reshape(-1, a.shape[-1]), b[rows].reshape(-1, b.shape[-1])
        out.append([np.corrcoef(x[:, k], y[:, k])[0, 1] for k in range(a.shape[-1])])
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-stage", action="store_true", help="only the engine ratios")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    pairs = [(np.arange(120), rng.permutation(128)[:120]) for _ in range(10)]
    _, fast = timed(lambda: same_index_test(pairs, 128, 10_000, rng))
    _, slow = timed(lambda: naive_same_index(pairs, 128, 500, rng))
    slow_full = slow * 10_000 / 500
    work = "same-index test: 10 pairs x 128 maps x 10,000 relabellings"
    rows.append({"workload": work, "engine": "vectorized", "seconds": fast,
                 "speedup_vs_naive": slow_full / fast})  # fmt: skip
    rows.append({"workload": work, "engine": "naive loop (500 draws, extrapolated)",
                 "seconds": slow_full})  # fmt: skip

    a = rng.normal(size=(1000, 9, 128)).astype(np.float32)
    b = (0.5 * a + rng.normal(size=a.shape)).astype(np.float32)
    counts = image_resamples(1000, 1000, rng)
    _, fast = timed(lambda: resampled_correlations(per_image_moments(a, b), counts, 9))
    _, slow = timed(lambda: naive_image_bootstrap(a, b, counts[:20]))
    slow_full = slow * 1000 / 20
    work = "matched r over resampled images: 128 maps, 1,000 images x 9 positions, 1,000 draws"
    rows.append({"workload": work, "engine": "per-image moments", "seconds": fast,
                 "speedup_vs_naive": slow_full / fast})  # fmt: skip
    rows.append({"workload": work, "engine": "naive recompute (20 draws, extrapolated)",
                 "seconds": slow_full})  # fmt: skip

    if not args.skip_stage:
        cfg = default_config()
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "oiplab.stages.compare", "--params", "params.yaml",
                 f"paths.artifacts={tmp}/artifacts", f"paths.metrics={tmp}/metrics",
                 "tracking.enabled=false"],
                check=True, cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
            seconds = time.perf_counter() - started
        pairs_n = len(cfg.seeds) * (len(cfg.seeds) - 1) // 2
        rows.append({"workload": f"compare stage: {len(cfg.seeds)} seeds ({pairs_n} pairs), "
                     f"{cfg.compare.null_networks} untrained networks, {cfg.compare.probe_images} "
                     "probe images, every statistic", "engine": "stage, whole process",
                     "seconds": seconds, "note": "budget 180 s"})  # fmt: skip
    path = write_results("compare", rows, {})
    print(path.read_text())


if __name__ == "__main__":
    main()
