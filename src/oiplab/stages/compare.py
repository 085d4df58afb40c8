"""Stage `compare`: do independently trained seeds learn the same maps, in the same order?

dvc repro compare
python -m oiplab.stages.compare compare.probe_images=2000
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from oiplab import tracking
from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.compare.cka import centered_gram, cka_matrix
from oiplab.compare.study import compare_pair, consistency_table, match_layers
from oiplab.compare.weights import HIDDEN, cosine_rows, interpolate, permute
from oiplab.config import Config, ConfigError, layer_grid
from oiplab.data import load_prepared
from oiplab.io import atomic_dir, write_json
from oiplab.model import build_model, load_model
from oiplab.render import save_figure
from oiplab.render.compare import (
    aligned_filters_figure,
    interpolation_figure,
    matched_oip_figure,
    ordered_correlations_figure,
    summary_figure,
)
from oiplab.stages import oip as oip_stage
from oiplab.stages import stage_main
from oiplab.stages.train import model_path

CKA_LAYERS_EXTRA = ("Dense_2",)


def output_dir(cfg: Config) -> Path:
    return Path(cfg.paths.artifacts) / "compare"


def metrics_path(cfg: Config) -> Path:
    return Path(cfg.paths.metrics) / "compare.json"


def _mean_over(results: list[dict], key: str) -> float:
    values = [r[key] for r in results if key in r and r[key] is not None]
    return float(np.mean(values)) if values else float("nan")


def run(cfg: Config) -> dict[str, Any]:
    """Compare every pair of seeds (and each seed against an untrained network)."""
    c, seeds = cfg.compare, list(cfg.seeds)
    if len(seeds) < 2:
        raise ConfigError(f"config key 'seeds': compare needs at least two seeds, got {seeds}")
    data = load_prepared(cfg.paths.prepared)
    probe_x = data.x_test[: c.probe_images]
    cka_layers = list(c.layers) + list(CKA_LAYERS_EXTRA)
    models = {s: load_model(model_path(cfg, s)) for s in seeds}
    outputs = {s: layer_outputs(m, probe_x, cka_layers) for s, m in models.items()}
    weights = {s: m.get_weights() for s, m in models.items()}
    seed_everything(c.baseline_seed)
    untrained = build_model(cfg.model)
    base_out = layer_outputs(untrained, probe_x, cka_layers)
    grams = {s: [centered_gram(outputs[s][n]) for n in cka_layers] for s in seeds}
    base_grams = [centered_gram(base_out[n]) for n in cka_layers]
    print(
        f"[compare] {len(seeds)} seeds, {len(seeds) * (len(seeds) - 1) // 2} pairs, "
        f"{len(probe_x)} probe images, layers {', '.join(c.layers)}",
        flush=True,
    )

    pairs = {}
    for a, b in combinations(seeds, 2):
        pairs[(a, b)] = compare_pair(
            outputs[a], outputs[b], weights[a], weights[b], c.layers, grams[a], grams[b]
        )
        stats = pairs[(a, b)]["layers"]
        print(
            f"[compare] seeds {a}-{b}: matched corr median "
            + ", ".join(f"{n} {stats[n]['stats']['matched_corr_median']:.2f}" for n in c.layers),
            flush=True,
        )
    baseline = {s: match_layers(outputs[s], base_out, c.layers) for s in seeds}
    base_cka = {s: cka_matrix(grams[s], base_grams) for s in seeds}
    perms = {key: {n: p["layers"][n]["perm"] for n in c.layers} for key, p in pairs.items()}
    consistent = consistency_table(perms, seeds, c.layers)

    # Function check: interpolate weights before and after aligning b to a (activation matching).
    alphas = np.linspace(0.0, 1.0, c.interpolation_points)
    x_int, y_int = data.x_test[: c.interpolation_images], data.y_test[: c.interpolation_images]
    probe_net = build_model(cfg.model)
    curves = {}
    for (a, b), p in pairs.items():
        aligned_b = permute(
            weights[b], {n: p["layers"][n]["perm"] for n in HIDDEN if n in p["layers"]}
        )
        curve = {}
        for label, wb in (("naive", weights[b]), ("aligned", aligned_b)):
            accs = []
            for alpha in alphas:
                probe_net.set_weights(interpolate(weights[a], wb, float(alpha)))
                pred = np.asarray(probe_net.predict(x_int, batch_size=1000, verbose=0))
                accs.append(float((pred.argmax(1) == y_int).mean()))
            curve[label] = accs
        curves[f"{a}-{b}"] = curve

    oip_match = _matched_oips(cfg, pairs, seeds)
    summary = _summary(
        cfg, pairs, baseline, base_cka, consistent, curves, oip_match, cka_layers, seeds
    )
    out = output_dir(cfg)
    with atomic_dir(out) as tmp:
        _render(tmp, cfg, pairs, summary, weights, curves, alphas, oip_match, seeds)
        write_json(
            tmp / "compare.json",
            _details(pairs, baseline, cka_layers, curves, alphas, summary, oip_match),
        )
    write_json(metrics_path(cfg), summary["headline"])
    with tracking.stage_run(cfg, "compare") as run_:
        if run_ is not None:
            _link_seed_runs(cfg, seeds)
        tracking.log_metrics(
            {
                f"{layer}.{k}": v
                for layer, d in summary["headline"].items()
                if isinstance(d, dict)
                for k, v in d.items()
            }
        )
        tracking.log_artifacts(out, "compare")
    print(f"[compare] verdict: {summary['verdict']}", flush=True)
    return summary


def _matched_oips(cfg: Config, pairs: dict, seeds: list[int]) -> dict:
    """For the OIP layer: do matched maps have similar OIPs (Pearson correlation of images)?"""
    layer = cfg.oip.layer
    if layer not in cfg.compare.layers:
        return {}
    oips = {}
    for s in seeds:
        path = oip_stage.output_dir(cfg, s) / oip_stage.RESULT_FILE
        if not path.is_file():
            return {}
        with np.load(path) as arrays:
            full = np.zeros((layer_grid(cfg.model, layer)[2], 28, 28), np.float32)
            found = np.zeros(len(full), dtype=bool)
            full[arrays["map_index"]] = arrays["best_images"]
            found[arrays["map_index"]] = (arrays["loss"] > 0).any(axis=1)
        oips[s] = (full, found)
    out = {}
    rng = np.random.default_rng(0)
    for (a, b), p in pairs.items():
        perm = p["layers"][layer]["perm"]
        corr = p["layers"][layer]["corr"]
        (ia, fa), (ib, fb) = oips[a], oips[b]
        maps = np.flatnonzero(fa & fb[perm])
        if len(maps) < 3:
            continue
        sim = np.array([np.corrcoef(ia[i].ravel(), ib[perm[i]].ravel())[0, 1] for i in maps])
        shuffled = rng.permutation(perm[maps])
        rand = np.array(
            [
                np.corrcoef(ia[i].ravel(), ib[j].ravel())[0, 1]
                for i, j in zip(maps, shuffled, strict=True)
                if fb[j]
            ]
        )
        matched_corr = corr[maps, perm[maps]]
        rho = spearmanr(matched_corr, sim).statistic if len(maps) > 2 else float("nan")
        out[(a, b)] = {
            "maps": maps,
            "partners": perm[maps],
            "oip_similarity": sim,
            "matched_corr": matched_corr,
            "random_pair_similarity": rand,
            "spearman_corr_vs_similarity": float(rho),
            # the matched pairs' OIP images, for the gallery (kept out of compare.json)
            "images_a": ia[maps],
            "images_b": ib[perm[maps]],
        }
    return out


def _summary(
    cfg, pairs, baseline, base_cka, consistent, curves, oip_match, cka_layers, seeds
) -> dict:
    c = cfg.compare
    headline: dict[str, Any] = {}
    for layer in c.layers:
        trained = [p["layers"][layer]["stats"] for p in pairs.values()]
        chance = [baseline[s][layer]["stats"] for s in seeds]
        li = cka_layers.index(layer)
        entry = {
            "matched_corr_median": _mean_over(trained, "matched_corr_median"),
            "frac_matched_above_0.5": _mean_over(trained, "frac_matched_above_0.5"),
            "frac_matched_above_0.8": _mean_over(trained, "frac_matched_above_0.8"),
            "frac_matched_above_0.9": _mean_over(trained, "frac_matched_above_0.9"),
            "semi_corr_median": _mean_over(trained, "semi_corr_median"),
            "same_index_fraction": _mean_over(trained, "same_index_fraction"),
            "same_index_chance": trained[0]["same_index_chance"],
            "cka_diagonal": float(np.mean([p["cka"][li, li] for p in pairs.values()])),
            "baseline_matched_corr_median": _mean_over(chance, "matched_corr_median"),
            "baseline_same_index_fraction": _mean_over(chance, "same_index_fraction"),
            "baseline_cka_diagonal": float(np.mean([base_cka[s][li, li] for s in seeds])),
            "dead_maps_mean": float(
                np.mean([p["layers"][layer]["stats"]["n_dead_a"] for p in pairs.values()])
            ),
        }
        agreement = [
            p["weight_activation_agreement"][layer]
            for p in pairs.values()
            if layer in p["weight_activation_agreement"]
        ]
        if agreement:
            entry["weight_activation_agreement"] = float(np.mean(agreement))
        if layer in consistent:
            entry["permutation_consistency"] = consistent[layer]
        headline[layer] = entry
    barrier = {
        k: {
            label: float(max(0.0, (v[label][0] + v[label][-1]) / 2 - min(v[label])))
            for label in ("naive", "aligned")
        }
        for k, v in curves.items()
    }
    headline["interpolation"] = {
        "barrier_naive_mean": float(np.mean([b["naive"] for b in barrier.values()])),
        "barrier_aligned_mean": float(np.mean([b["aligned"] for b in barrier.values()])),
        "midpoint_acc_naive_mean": float(
            np.mean([v["naive"][len(v["naive"]) // 2] for v in curves.values()])
        ),
        "midpoint_acc_aligned_mean": float(
            np.mean([v["aligned"][len(v["aligned"]) // 2] for v in curves.values()])
        ),
    }
    if oip_match:
        headline["matched_oips"] = {
            "layer": cfg.oip.layer,
            "similarity_matched_mean": float(
                np.mean([np.mean(m["oip_similarity"]) for m in oip_match.values()])
            ),
            "similarity_random_mean": float(
                np.mean([np.mean(m["random_pair_similarity"]) for m in oip_match.values()])
            ),
            "spearman_corr_vs_similarity_mean": float(
                np.nanmean([m["spearman_corr_vs_similarity"] for m in oip_match.values()])
            ),
        }
    return {"headline": headline, "verdict": verdict(headline, c.layers), "barrier": barrier}


def verdict(headline: dict, layers: list[str]) -> str:
    """A plain-language answer computed from the numbers (no hand-written conclusion)."""
    parts = []
    for layer in layers:
        h = headline[layer]
        same = (
            "same order"
            if h["same_index_fraction"] > 0.5
            else (
                "order at chance"
                if h["same_index_fraction"] <= 3 * h["same_index_chance"]
                else "order partly kept"
            )
        )
        maps = (
            "nearly all maps have a partner"
            if h["frac_matched_above_0.8"] >= 0.8
            else "most maps have a partner"
            if h["frac_matched_above_0.5"] >= 0.8
            else "many maps have no close partner"
        )
        parts.append(
            f"{layer}: {maps} (median r {h['matched_corr_median']:.2f} vs "
            f"{h['baseline_matched_corr_median']:.2f} untrained), {same} "
            f"({h['same_index_fraction']:.1%} same index vs chance "
            f"{h['same_index_chance']:.1%})"
        )
    return "; ".join(parts)


def _render(folder: Path, cfg, pairs, summary, weights, curves, alphas, oip_match, seeds):
    c = cfg.compare
    (a, b), first = next(iter(pairs.items()))
    save_figure(
        ordered_correlations_figure(
            {n: first["layers"][n]["corr"] for n in c.layers},
            {n: first["layers"][n]["perm"] for n in c.layers},
            f"seed {a} vs seed {b}: map correlations, b in matched order",
        ),
        folder / f"correlations_{a}_{b}.png",
        dpi=90,
    )
    h = summary["headline"]
    save_figure(
        summary_figure(
            {n: h[n] for n in c.layers},
            {
                n: {
                    "matched_corr_median": h[n]["baseline_matched_corr_median"],
                    "same_index_fraction": h[n]["baseline_same_index_fraction"],
                }
                for n in c.layers
            },
            {n: h[n]["cka_diagonal"] for n in c.layers},
            {n: h[n]["baseline_cka_diagonal"] for n in c.layers},
            f"{len(seeds)} seeds: trained pairs vs an untrained network",
        ),
        folder / "summary.png",
    )
    perm1 = first["layers"]["Conv2D_1"]["perm"] if "Conv2D_1" in c.layers else None
    if perm1 is not None:
        fa, fb = weights[a][0], weights[b][0][..., perm1]
        cos = cosine_rows(fa.reshape(-1, fa.shape[-1]).T, fb.reshape(-1, fb.shape[-1]).T)
        save_figure(
            aligned_filters_figure(
                fa, fb, cos, f"Conv2D_1 filters: seed {a} (upper) and seed {b} re-ordered (lower)"
            ),
            folder / f"aligned_filters_{a}_{b}.png",
            dpi=100,
        )
    save_figure(
        interpolation_figure(alphas, curves, "linear interpolation of the weights"),
        folder / "interpolation.png",
    )
    if (a, b) in oip_match and c.oip_pairs_shown:
        m = oip_match[(a, b)]
        order = np.argsort(-m["matched_corr"], kind="stable")
        pick = np.concatenate([order[: c.oip_pairs_shown], order[::-1][: c.oip_pairs_shown]])
        pick = list(dict.fromkeys(pick.tolist()))
        labels = [
            f"{m['maps'][k]}->{m['partners'][k]} r {m['matched_corr'][k]:.2f} "
            f"s {m['oip_similarity'][k]:.2f}"
            for k in pick
        ]
        save_figure(
            matched_oip_figure(
                m["images_a"][pick],
                m["images_b"][pick],
                labels,
                f"{cfg.oip.layer} OIPs of matched maps, seed {a} (upper) vs {b} (lower); best and "
                f"worst matched (r: activation corr, s: OIP similarity)",
            ),
            folder / f"matched_oips_{a}_{b}.png",
            dpi=100,
        )


def _details(pairs, baseline, cka_layers, curves, alphas, summary, oip_match) -> dict:
    return {
        "pairs": {
            f"{a}-{b}": {
                "layers": {
                    n: {"stats": d["stats"], "perm": d["perm"]} for n, d in p["layers"].items()
                },
                "weight_perms": p["weight_perms"],
                "weight_activation_agreement": p["weight_activation_agreement"],
                "cka": {"layers": cka_layers, "matrix": p["cka"]},
            }
            for (a, b), p in pairs.items()
        },
        "baseline": {
            str(s): {n: d["stats"] for n, d in layers.items()} for s, layers in baseline.items()
        },
        "interpolation": {"alphas": alphas, "curves": curves, "barrier": summary["barrier"]},
        "matched_oips": {
            f"{a}-{b}": {k: v for k, v in m.items() if not k.startswith("images_")}
            for (a, b), m in oip_match.items()
        },
        "headline": summary["headline"],
        "verdict": summary["verdict"],
    }


def _link_seed_runs(cfg: Config, seeds: list[int]) -> None:
    """Tag the comparison run with the MLflow run ids of the seeds' latest train runs."""
    import mlflow

    ids = []
    for s in seeds:
        found = mlflow.search_runs(
            filter_string=f"tags.`oiplab.stage` = 'train' and tags.`oiplab.seed` = '{s}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        if found:
            ids.append(found[0].info.run_id)
    mlflow.set_tag("oiplab.seed_runs", ",".join(ids))


def main() -> None:
    stage_main(run)


if __name__ == "__main__":
    main()
