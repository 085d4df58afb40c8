"""The cross-seed study: match every pair of trained networks and every pair of untrained ones
(the null), then build each layer's answer with intervals and p-values.

`compare_networks` takes Keras models and images and returns a `Comparison`; it knows nothing
of files, MLflow or figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.compare.cka import centered_gram, cka_matrix
from oiplab.compare.correlation import Units
from oiplab.compare.interpolation import barriers, evaluate_weights, path
from oiplab.compare.matching import consistency
from oiplab.compare.pairs import LayerMatch, match_layer
from oiplab.compare.stats import (
    bootstrap_means,
    image_resamples,
    interval,
    leave_one_out_thresholds,
    pair_weights,
    resampled_correlations,
    same_index_test,
    seed_resamples,
)
from oiplab.compare.summary import (
    Answer,
    Barriers,
    Estimate,
    LayerAnswer,
    OrderTest,
    VerdictRules,
    mean_or_nan,
    verdict,
)
from oiplab.compare.weights import permute, weight_matching
from oiplab.config import CompareConfig
from oiplab.model import PERMUTABLE, PERMUTATION_OF, build_model

# CKA is also shown for the output layer, whose nodes (the classes) need no matching.
CKA_EXTRA_LAYERS = ("Dense_2",)
ALIGNMENTS = ("naive", "activations", "weights")


@dataclass
class Comparison:
    seeds: list[int]
    answers: dict[str, LayerAnswer]
    matches: dict[tuple[int, int], dict[str, LayerMatch]]  # trained pairs, by seed
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]]
    cka: dict[tuple[int, int], np.ndarray]  # (layers, layers) per trained pair
    cka_layers: list[str]
    null_r: dict[str, np.ndarray]  # the null's pooled matched r, per layer
    alphas: np.ndarray
    curves: dict[tuple[int, int], dict[str, dict[str, dict[str, list[float]]]]]
    barriers: Barriers  # alignment x image set x measure

    @property
    def verdict(self) -> str:
        return "; ".join(a.verdict for a in self.answers.values())

    def answer(self) -> Answer:
        """Per layer and for the weight interpolation: the numbers of the answer."""
        return Answer(layers=self.answers, barriers=self.barriers)

    def details(self) -> dict[str, Any]:
        """The per-pair record (JSON-able; matrices of correlations left out)."""
        return {
            "seeds": self.seeds,
            "pairs": {
                f"{a}-{b}": {
                    "layers": {
                        n: {
                            "partner": m.partner,
                            "perm": m.perm,
                            "matched_r": m.r,
                            "stable": m.stable,
                            "margin": np.nan_to_num(m.margin, nan=-1.0),
                        }
                        for n, m in layers.items()
                    },
                    "weight_perms": self.weight_perms[(a, b)],
                    "cka": {"layers": self.cka_layers, "matrix": self.cka[(a, b)]},
                    "interpolation": self.curves[(a, b)],
                }
                for (a, b), layers in self.matches.items()
            },
            "alphas": self.alphas,
            "null_matched_r": self.null_r,
            "headline": self.answer().data(),
            "verdict": self.verdict,
        }


def compare_networks(
    trained: dict[int, Any],
    nulls: list[Any],
    probe_x: np.ndarray,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    c: CompareConfig,
    progress: Callable[[str], None] | None = print,
) -> Comparison:
    """Answer, per layer, whether the trained networks share maps and their order.

    Args:
        trained: models by seed (at least two). nulls: untrained models of the architecture.
        probe_x: (n, 28, 28, 1) images the activations are compared on.
        eval_sets: name -> (x, y) images the weight interpolation is evaluated on (disjoint
            from `probe_x`, which fitted the permutations).
    """
    say = progress or (lambda _m: None)
    seeds, layers = list(trained), list(c.layers)
    cka_layers = [*layers, *CKA_EXTRA_LAYERS]
    outs = [layer_outputs(m, probe_x, cka_layers) for m in trained.values()]
    null_outs = [layer_outputs(m, probe_x, cka_layers) for m in nulls]
    pairs = list(combinations(range(len(seeds)), 2))
    null_pairs = list(combinations(range(len(nulls)), 2))
    say(f"[compare] {len(pairs)} trained pairs, {len(null_pairs)} untrained pairs (the null)")

    matches: dict = {p: {} for p in pairs}
    null_matches: dict = {p: {} for p in null_pairs}
    dead, positions = {}, {}
    for n in layers:  # one layer at a time: each network's units are standardized once
        units = [Units.of(o[n]) for o in outs]
        null_units = [Units.of(o[n]) for o in null_outs]
        for a, b in pairs:
            matches[(a, b)][n] = match_layer(units[a], units[b])
        for a, b in null_pairs:
            null_matches[(a, b)][n] = match_layer(null_units[a], null_units[b], False, False)
        dead[n] = {str(s): int(u.dead.sum()) for s, u in zip(seeds, units, strict=True)}
        positions[n] = units[0].positions
    grams = [[centered_gram(o[n]) for n in cka_layers] for o in outs]
    null_grams = [[centered_gram(o[n]) for n in cka_layers] for o in null_outs]
    cka = {p: cka_matrix(grams[p[0]], grams[p[1]]) for p in pairs}
    null_cka = {p: cka_matrix(null_grams[p[0]], null_grams[p[1]]) for p in null_pairs}
    weights = [m.get_weights() for m in trained.values()]
    weight_perms = {p: weight_matching(weights[p[0]], weights[p[1]]) for p in pairs}
    say("[compare] matched every pair; resampling seeds and images")

    rng = np.random.default_rng(c.bootstrap_seed)
    res = Resampling(
        image_resamples(len(probe_x), c.bootstrap_draws, rng),
        pair_weights(seed_resamples(len(seeds), c.bootstrap_draws, rng), pairs),
        rng,
    )
    rules = VerdictRules(c.alpha, c.same_order_fraction)
    answers, null_r = {}, {}
    for li, layer in enumerate(layers):
        answer, null_r[layer] = _layer_answer(
            layer,
            [matches[p][layer] for p in pairs],
            [null_matches[p][layer] for p in null_pairs],
            ([cka[p][li, li] for p in pairs], [null_cka[p][li, li] for p in null_pairs]),
            positions[layer],
            res,
            c,
        )
        answer.dead = dead[layer]
        answer.consistency = _consistency(matches, len(seeds), layer)
        if layer in PERMUTABLE:
            answer.weight_agreement = _agreement(matches, weight_perms, layer)
        answer.verdict = verdict(answer, rules)
        answers[layer] = answer
        say(f"[compare] {answer.verdict}")

    net = _fresh_copy(nulls[0])
    alphas = np.linspace(0.0, 1.0, c.interpolation_points)
    # Every line starts at a trained network, and the naive one ends at one: each is evaluated
    # once ((1 - 0) * a + 0 * b is a itself; a permuted end is evaluated on its own).
    ends = {
        (i, name): evaluate_weights(net, w, *xy)
        for i, w in enumerate(weights)
        for name, xy in eval_sets.items()
    }
    curves = {}
    for a, b in pairs:
        act = {n: matches[(a, b)][n].perm for n in PERMUTABLE if n in layers}
        variants = {
            "naive": weights[b],
            "activations": permute(weights[b], act),
            "weights": permute(weights[b], weight_perms[(a, b)]),
        }
        curves[(a, b)] = {
            label: {
                name: path(
                    net,
                    weights[a],
                    wb,
                    alphas,
                    *xy,
                    known={0.0: ends[(a, name)]}
                    | ({1.0: ends[(b, name)]} if label == "naive" else {}),
                )  # fmt: skip
                for name, xy in eval_sets.items()
            }
            for label, wb in variants.items()
        }
        say(f"[compare] interpolation seeds {seeds[a]}-{seeds[b]} done")
    barrier = _barriers(curves, alphas, pairs, res.pair_weights)

    return Comparison(
        seeds,
        answers,
        {(seeds[a], seeds[b]): v for (a, b), v in matches.items()},
        {(seeds[a], seeds[b]): v for (a, b), v in weight_perms.items()},
        {(seeds[a], seeds[b]): v for (a, b), v in cka.items()},
        cka_layers,
        null_r,
        alphas,
        {(seeds[a], seeds[b]): v for (a, b), v in curves.items()},
        barrier,
    )


def untrained_networks(model_cfg, c: CompareConfig) -> list:
    """The null: fresh networks of the architecture, seeded `null_seed`, `null_seed + 1`, ..."""
    nets = []
    for k in range(c.null_networks):
        seed_everything(c.null_seed + k)
        nets.append(build_model(model_cfg))
    return nets


def partner_threshold(null: list[LayerMatch], quantile: float) -> float:
    """The matched r above which a map counts as partnered: `quantile` of the null's."""
    pooled = np.concatenate([m.r for m in null])
    return float(np.quantile(pooled, quantile)) if len(pooled) else float("nan")


def _fresh_copy(model):
    import keras

    return keras.models.clone_model(model)  # any network of the architecture: weights are set


@dataclass
class Resampling:
    """Shared, seeded resamples: of the probe images, and of the seeds (as pair weights)."""

    image_counts: np.ndarray  # (draws, n_images)
    pair_weights: np.ndarray  # (draws, n_pairs)
    rng: np.random.Generator  # for the relabelling test


def _layer_answer(
    layer: str,
    trained: list[LayerMatch],
    null: list[LayerMatch],
    ckas: tuple[list[float], list[float]],
    positions: int,
    res: Resampling,
    c: CompareConfig,
) -> tuple[LayerAnswer, np.ndarray]:
    """One layer's statistics from its trained and null matches (and CKA values)."""
    null_values = [m.r for m in null]
    pooled = np.concatenate(null_values)
    threshold = partner_threshold(null, c.partner_quantile)
    cut = leave_one_out_thresholds(null_values, c.partner_quantile) if len(null) > 1 else []
    null_fracs = [float((r > t).mean()) for r, t in zip(null_values, cut, strict=True) if len(r)]

    boot_r = [resampled_correlations(m.moments, res.image_counts, positions) for m in trained]
    frac = np.array([(m.r > threshold).mean() for m in trained])
    frac_b = np.stack([(r > threshold).mean(axis=1) for r in boot_r])
    median = np.array([np.median(m.r) for m in trained])
    median_b = np.stack([np.median(r, axis=1) for r in boot_r])
    stable = np.array([m.stable[m.matched].mean() for m in trained])

    def estimate(values, samples, null_values=None) -> Estimate:
        low, high = interval(bootstrap_means(samples, res.pair_weights))
        nulls = [v for v in (null_values or []) if np.isfinite(v)]
        return Estimate(
            float(np.mean(values)), low, high,
            float(np.mean(nulls)) if nulls else None, float(np.max(nulls)) if nulls else None,
        )  # fmt: skip

    n_maps = trained[0].corr.shape[1]
    order = same_index_test(
        [(d, m.partner[d]) for m in trained for d in [m.decisive(c.tie_tolerance)]],
        n_maps, c.permutation_draws, res.rng,
    )  # fmt: skip
    order_null = same_index_test(
        [(d, m.partner[d]) for m in null for d in [m.decisive(c.tie_tolerance)]],
        n_maps, c.permutation_draws, res.rng,
    )  # fmt: skip
    chance = mean_or_nan(1.0 / max(int(m.live_b.sum()), 1) for m in trained)
    answer = LayerAnswer(
        layer=layer,
        n_maps=n_maps,
        threshold=threshold,
        partnered=estimate(frac, frac_b, null_fracs),
        matched_r=estimate(median, median_b, [float(np.median(r)) for r in null_values if len(r)]),
        cka=estimate(np.array(ckas[0]), np.array(ckas[0]), ckas[1]),
        order=OrderTest(**order),
        order_null=OrderTest(**order_null),
        stable=estimate(stable, stable),
        dead={},
        consistency={"chance": chance},
    )
    answer.stable.null = chance
    return answer, pooled


def _consistency(matches: dict, n_seeds: int, layer: str) -> dict[str, float]:
    """Over seed triples a<b<c: how often a->b->c lands where a->c does, for all matched maps
    and for the maps whose three matches are all stable; beside its chance level."""
    every, stable, chance = [], [], []
    for a, b, c in combinations(range(n_seeds), 3):
        ab, bc, ac = matches[(a, b)][layer], matches[(b, c)][layer], matches[(a, c)][layer]
        maps = ab.matched
        every.append(consistency(ab.partner, bc.partner, ac.partner, maps))
        ok = maps[ab.stable[maps] & ac.stable[maps]]
        ok = ok[bc.stable[ab.partner[ok]]]
        stable.append(consistency(ab.partner, bc.partner, ac.partner, ok))
        chance.append(1.0 / max(int(ac.live_b.sum()), 1))
    return {"all": mean_or_nan(every), "stable": mean_or_nan(stable), "chance": mean_or_nan(chance)}


def _agreement(matches: dict, weight_perms: dict, layer: str) -> dict[str, float]:
    """How often weight matching picks the partner activation matching picked (all / stable)."""
    every, stable, chance = [], [], []
    source = PERMUTATION_OF[layer]
    for p, layers in matches.items():
        m, w = layers[layer], weight_perms[p][source]
        every.append(float((w[m.matched] == m.partner[m.matched]).mean()))
        s = m.matched[m.stable[m.matched]]
        stable.append(float((w[s] == m.partner[s]).mean()) if len(s) else float("nan"))
        chance.append(1.0 / m.corr.shape[1])
    return {"all": mean_or_nan(every), "stable": mean_or_nan(stable), "chance": mean_or_nan(chance)}


def _barriers(curves: dict, alphas: np.ndarray, pairs: list, pair_w: np.ndarray) -> Barriers:
    out: dict[str, dict[str, dict[str, Estimate]]] = {}
    first = curves[pairs[0]]
    for label in ALIGNMENTS:
        for name in first[label]:
            per_pair = [barriers(curves[p][label][name], alphas) for p in pairs]
            for kind in per_pair[0]:
                values = np.array([b[kind] for b in per_pair])
                low, high = interval(bootstrap_means(values, pair_w))
                measure = kind.removesuffix("_barrier")
                by_set = out.setdefault(label, {}).setdefault(name, {})
                by_set[measure] = Estimate(float(values.mean()), low, high)
    return Barriers(by_alignment=out)
