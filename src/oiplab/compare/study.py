"""The cross-seed study: match every pair of trained networks and every pair of untrained ones
(the null), then build each layer's answer with intervals and p-values.

`compare_networks` takes Keras models and images and returns a `Comparison`; it knows nothing
of files, MLflow or figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.checks import first_images
from oiplab.compare.cka import centered_gram, cka_matrix
from oiplab.compare.correlation import Units
from oiplab.compare.interpolation import barriers, evaluate_weights, path
from oiplab.compare.matching import consistency
from oiplab.compare.pairs import LayerMatch, match_layer
from oiplab.compare.stats import (
    SameIndex,
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
    order_words,
    verdict,
)
from oiplab.compare.weights import permute, weight_matching
from oiplab.config import CompareConfig, ConfigError
from oiplab.model import PERMUTABLE, PERMUTATION_OF, ModelConfig, build_model

if TYPE_CHECKING:
    import keras

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

    cka = _pairwise_cka(outs, cka_layers, pairs)
    null_cka = _pairwise_cka(null_outs, cka_layers, null_pairs)
    matched = _match_units(outs, null_outs, seeds, layers, (cka, null_cka))
    weights = [m.get_weights() for m in trained.values()]
    weight_perms = {p: weight_matching(weights[p[0]], weights[p[1]]) for p in pairs}
    say("[compare] matched every pair; resampling seeds and images")

    res = Resampling.draw(len(probe_x), len(seeds), pairs, c)
    answers, null_r = _answers(matched, weight_perms, pairs, res, c, say)

    alphas = np.linspace(0.0, 1.0, c.interpolation_points)
    curves = _interpolation_curves(
        _fresh_copy(nulls[0]),
        weights,
        _alignments(matched, weight_perms, pairs),
        alphas,
        eval_sets,
        done=lambda a, b: say(f"[compare] interpolation seeds {seeds[a]}-{seeds[b]} done"),
    )

    def by_seed(values: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
        return {(seeds[a], seeds[b]): v for (a, b), v in values.items()}

    return Comparison(
        seeds=seeds,
        answers=answers,
        matches=by_seed(_by_pair(matched, pairs)),
        weight_perms=by_seed(weight_perms),
        cka=by_seed(cka),
        cka_layers=cka_layers,
        null_r=null_r,
        alphas=alphas,
        curves=by_seed(curves),
        barriers=_barriers(curves, alphas, pairs, res.pair_weights),
    )


def comparison_images(
    data: Any, c: CompareConfig
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The probe images (the first `probe_images` test images) and the interpolation's image
    sets, disjoint from them: `(probe_x, {"test": (x, y), "train": (x, y)})`."""
    if len(data.y_test) < c.probe_images + c.eval_images:
        raise ConfigError(
            f"config key 'compare.eval_images': probe + evaluation images "
            f"({c.probe_images} + {c.eval_images}) exceed the {len(data.y_test)} test images"
        )
    held_out = slice(c.probe_images, c.probe_images + c.eval_images)
    eval_sets = {
        "test": (data.x_test[held_out], data.y_test[held_out]),
        "train": (
            first_images(data.x_train, c.eval_images, "compare.eval_images", "training"),
            data.y_train[: c.eval_images],
        ),
    }
    return data.x_test[: c.probe_images], eval_sets


def untrained_networks(model_cfg: ModelConfig, c: CompareConfig) -> list[keras.Model]:
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


def _fresh_copy(model: keras.Model) -> keras.Model:
    import keras

    return keras.models.clone_model(model)  # any network of the architecture: weights are set


@dataclass(frozen=True)
class LayerMatches:
    """One layer's matches over every trained pair and every untrained pair (in pair order)."""

    layer: str
    trained: list[LayerMatch]  # by trained pair (a, b), a < b, in `combinations` order
    null: list[LayerMatch]  # by untrained pair
    positions: int  # spatial positions per image of the layer's maps
    dead: dict[str, int]  # maps constant over the probe images, per seed (every seed)
    cka: list[float]  # the layer's linear CKA per trained pair
    null_cka: list[float]  # ... per untrained pair


def _match_units(
    outs: list[dict[str, np.ndarray]],
    null_outs: list[dict[str, np.ndarray]],
    seeds: list[int],
    layers: list[str],
    cka: tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], np.ndarray]],
) -> dict[str, LayerMatches]:
    """Match the maps of every pair of trained networks and every pair of untrained ones.

    `cka`: the trained and the untrained pairs' CKA matrices (`_pairwise_cka`, rows `layers`
    first); each layer keeps its diagonal entry.
    """
    pairs = list(combinations(range(len(outs)), 2))
    null_pairs = list(combinations(range(len(null_outs)), 2))
    matched = {}
    for li, n in enumerate(layers):  # one layer at a time: each network's units standardized once
        units = [Units.of(o[n]) for o in outs]
        null_units = [Units.of(o[n]) for o in null_outs]
        matched[n] = LayerMatches(
            layer=n,
            trained=[match_layer(units[a], units[b]) for a, b in pairs],
            null=[match_layer(null_units[a], null_units[b], False, False) for a, b in null_pairs],
            positions=units[0].positions,
            dead={str(s): int(u.dead.sum()) for s, u in zip(seeds, units, strict=True)},
            cka=[cka[0][p][li, li] for p in pairs],
            null_cka=[cka[1][p][li, li] for p in null_pairs],
        )
    return matched


def _answers(
    matched: dict[str, LayerMatches],
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]],
    pairs: list[tuple[int, int]],
    res: Resampling,
    c: CompareConfig,
    say: Callable[[str], None],
) -> tuple[dict[str, LayerAnswer], dict[str, np.ndarray]]:
    """Every layer's answer (layers in order: they share the relabelling test's generator), and
    the null's pooled matched r per layer."""
    rules = VerdictRules(c.alpha, c.same_order_fraction)
    answers, null_r = {}, {}
    for layer, m in matched.items():
        answers[layer], null_r[layer] = _layer_answer(
            m,
            consistency=_consistency(m.trained, len(m.dead)),
            weight_agreement=_agreement(m, weight_perms, pairs) if layer in PERMUTABLE else {},
            res=res,
            c=c,
            rules=rules,
        )
        say(f"[compare] {answers[layer].verdict}")
    return answers, null_r


def _by_pair(
    matched: dict[str, LayerMatches], pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, LayerMatch]]:
    """The matches regrouped: per trained pair, per layer."""
    return {p: {n: m.trained[k] for n, m in matched.items()} for k, p in enumerate(pairs)}


def _pairwise_cka(
    outs: list[dict[str, np.ndarray]], layers: list[str], pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], np.ndarray]:
    """(layers, layers) linear CKA between the two networks of every pair."""
    grams = [[centered_gram(o[n]) for n in layers] for o in outs]
    return {p: cka_matrix(grams[p[0]], grams[p[1]]) for p in pairs}


def _alignments(
    matched: dict[str, LayerMatches],
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]],
    pairs: list[tuple[int, int]],
) -> dict[tuple[int, int], dict[str, dict[str, np.ndarray] | None]]:
    """Per pair, how network b's units are re-ordered before interpolating towards it: not at
    all ("naive", None), by the activation matching, or by the weight matching."""
    return {
        p: {
            "naive": None,
            "activations": {n: matched[n].trained[k].perm for n in PERMUTABLE if n in matched},
            "weights": weight_perms[p],
        }
        for k, p in enumerate(pairs)
    }


def _interpolation_curves(
    net: keras.Model,
    weights: list[list[np.ndarray]],
    alignments: dict[tuple[int, int], dict[str, dict[str, np.ndarray] | None]],
    alphas: np.ndarray,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    done: Callable[[int, int], None],
) -> dict[tuple[int, int], dict[str, dict[str, dict[str, list[float]]]]]:
    """Loss and accuracy along the weight line of every pair, per alignment and evaluation set.

    `done(a, b)` is called as each pair's lines are finished.
    """
    # Every line starts at a trained network, and the naive one ends at one: each is evaluated
    # once ((1 - 0) * a + 0 * b is a itself; a permuted end is evaluated on its own).
    ends = {
        (i, name): evaluate_weights(net, w, *xy)
        for i, w in enumerate(weights)
        for name, xy in eval_sets.items()
    }
    curves = {}
    for (a, b), by_label in alignments.items():
        curves[(a, b)] = {
            label: {
                name: path(
                    net,
                    weights[a],
                    weights[b] if perms is None else permute(weights[b], perms),
                    alphas,
                    *xy,
                    known={0.0: ends[(a, name)]}
                    | ({1.0: ends[(b, name)]} if perms is None else {}),
                )
                for name, xy in eval_sets.items()
            }
            for label, perms in by_label.items()
        }
        done(a, b)
    return curves


@dataclass
class Resampling:
    """Shared, seeded resamples: of the probe images, and of the seeds (as pair weights)."""

    image_counts: np.ndarray  # (draws, n_images)
    pair_weights: np.ndarray  # (draws, n_pairs)
    rng: np.random.Generator  # for the relabelling test

    @classmethod
    def draw(
        cls, n_images: int, n_seeds: int, pairs: list[tuple[int, int]], c: CompareConfig
    ) -> Resampling:
        """Images first, then seeds, from one generator seeded `bootstrap_seed`."""
        rng = np.random.default_rng(c.bootstrap_seed)
        images = image_resamples(n_images, c.bootstrap_draws, rng)
        seeds = seed_resamples(n_seeds, c.bootstrap_draws, rng)
        return cls(images, pair_weights(seeds, pairs), rng)


def _layer_answer(
    m: LayerMatches,
    *,
    consistency: dict[str, float],
    weight_agreement: dict[str, float],
    res: Resampling,
    c: CompareConfig,
    rules: VerdictRules,
) -> tuple[LayerAnswer, np.ndarray]:
    """One layer's answer from its trained and null matches (and CKA values); with it, the
    null's pooled matched r."""
    null_values = [n.r for n in m.null]
    threshold = partner_threshold(m.null, c.partner_quantile)
    cut = leave_one_out_thresholds(null_values, c.partner_quantile) if len(m.null) > 1 else []
    null_fracs = [float((r > t).mean()) for r, t in zip(null_values, cut, strict=True) if len(r)]

    boot_r = [resampled_correlations(_moments(t), res.image_counts, m.positions) for t in m.trained]
    frac = np.array([(t.r > threshold).mean() for t in m.trained])
    frac_b = np.stack([(r > threshold).mean(axis=1) for r in boot_r])
    median = np.array([np.median(t.r) for t in m.trained])
    median_b = np.stack([np.median(r, axis=1) for r in boot_r])
    stable = np.array([t.stable[t.matched].mean() for t in m.trained])

    def estimate(
        values: np.ndarray,
        samples: np.ndarray,
        null_values: list[float] | None = None,
        null: float | None = None,
    ) -> Estimate:
        return _estimate(values, samples, res.pair_weights, null_values, null)

    n_maps = m.trained[0].corr.shape[1]
    partnered = estimate(frac, frac_b, null_fracs)
    order = OrderTest(**_same_index(m.trained, n_maps, res.rng, c))
    order_null = OrderTest(**_same_index(m.null, n_maps, res.rng, c))
    # the chance that a stable match lands on a given live map: the stability's reference
    chance = mean_or_nan(1.0 / max(int(t.live_b.sum()), 1) for t in m.trained)
    answer = LayerAnswer(
        layer=m.layer,
        n_maps=n_maps,
        threshold=threshold,
        partnered=partnered,
        matched_r=estimate(median, median_b, [float(np.median(r)) for r in null_values if len(r)]),
        cka=estimate(np.array(m.cka), np.array(m.cka), m.null_cka),
        order=order,
        order_null=order_null,
        stable=estimate(stable, stable, null=chance),
        dead=m.dead,
        consistency=consistency,
        weight_agreement=weight_agreement,
        verdict=verdict(m.layer, partnered, order, rules),
        order_words=order_words(order, rules),
    )
    return answer, np.concatenate(null_values)


def _estimate(
    values: np.ndarray,
    samples: np.ndarray,
    pair_weights: np.ndarray,
    null_values: list[float] | None = None,
    null: float | None = None,
) -> Estimate:
    """The mean of `values` over the trained pairs, the seed-resampled interval of the mean of
    `samples`, and the mean and largest of the finite `null_values` (without any: `null` as the
    null's value, a reference such as chance)."""
    low, high = interval(bootstrap_means(samples, pair_weights))
    nulls = [v for v in (null_values or []) if np.isfinite(v)]
    return Estimate(
        value=float(np.mean(values)),
        low=low,
        high=high,
        null=float(np.mean(nulls)) if nulls else null,
        null_high=float(np.max(nulls)) if nulls else None,
    )


def _same_index(
    matches: list[LayerMatch], n_maps: int, rng: np.random.Generator, c: CompareConfig
) -> SameIndex:
    """The relabelling test of "same order" over the decisive matches of `matches`."""
    decisive = [(d, m.partner[d]) for m in matches for d in [m.decisive(c.tie_tolerance)]]
    return same_index_test(decisive, n_maps, c.permutation_draws, rng)


def _consistency(by_pair: list[LayerMatch], n_seeds: int) -> dict[str, float]:
    """Over seed triples a<b<c: how often a->b->c lands where a->c does, for all matched maps
    and for the maps whose three matches are all stable; beside its chance level.

    `by_pair`: one layer's matches of the pairs (a, b), a < b, in `combinations` order.
    """
    matches = dict(zip(combinations(range(n_seeds), 2), by_pair, strict=True))
    every, stable, chance = [], [], []
    for a, b, c in combinations(range(n_seeds), 3):
        ab, bc, ac = matches[(a, b)], matches[(b, c)], matches[(a, c)]
        maps = ab.matched
        every.append(consistency(ab.partner, bc.partner, ac.partner, maps))
        ok = maps[ab.stable[maps] & ac.stable[maps]]
        ok = ok[bc.stable[ab.partner[ok]]]
        stable.append(consistency(ab.partner, bc.partner, ac.partner, ok))
        chance.append(1.0 / max(int(ac.live_b.sum()), 1))
    return {"all": mean_or_nan(every), "stable": mean_or_nan(stable), "chance": mean_or_nan(chance)}


def _agreement(
    matched: LayerMatches,
    weight_perms: dict[tuple[int, int], dict[str, np.ndarray]],
    pairs: list[tuple[int, int]],
) -> dict[str, float]:
    """How often weight matching picks the partner activation matching picked (all / stable)."""
    every, stable, chance = [], [], []
    source = PERMUTATION_OF[matched.layer]
    for p, m in zip(pairs, matched.trained, strict=True):
        w = weight_perms[p][source]
        every.append(float((w[m.matched] == m.partner[m.matched]).mean()))
        s = m.matched[m.stable[m.matched]]
        stable.append(float((w[s] == m.partner[s]).mean()) if len(s) else float("nan"))
        chance.append(1.0 / m.corr.shape[1])
    return {"all": mean_or_nan(every), "stable": mean_or_nan(stable), "chance": mean_or_nan(chance)}


def _barriers(
    curves: dict[tuple[int, int], dict[str, dict[str, dict[str, list[float]]]]],
    alphas: np.ndarray,
    pairs: list[tuple[int, int]],
    pair_w: np.ndarray,
) -> Barriers:
    """Each barrier's mean over the trained pairs with its seed-resampled interval."""
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


def _moments(match: LayerMatch) -> np.ndarray:
    """A trained pair's per-image moments (kept by `match_layer` for resampling the images)."""
    if match.moments is None:
        raise ValueError("a trained pair was matched without its per-image moments")
    return match.moments
