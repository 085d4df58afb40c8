"""The cross-seed study: match every pair of trained networks and every pair of untrained ones
(the null), then build each layer's answer with intervals and p-values.

`compare_networks` takes Keras models and images and returns a `Comparison`; it knows nothing
of files, MLflow or figures.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from oiplab.analysis.activations import layer_outputs
from oiplab.backend import seed_everything
from oiplab.checks import first_images
from oiplab.compare.cka import centered_gram, cka_matrix, debiased_cka
from oiplab.compare.correlation import Units
from oiplab.compare.identity import (
    LinearFits,
    linear_fits,
    rotation_null,
    sibling_rate,
    split_images,
)
from oiplab.compare.inference import (
    auroc,
    exact_same_index_test,
    jackknife_interval,
    keep_rate_upper_bound,
    trained_vs_untrained,
)
from oiplab.compare.interpolation import barriers, evaluate_weights, path
from oiplab.compare.matching import consistency
from oiplab.compare.pairs import LayerMatch, match_layer, matched_r
from oiplab.compare.stats import (
    bootstrap_means,
    image_resamples,
    interval,
    leave_one_out_thresholds,
    pair_weights,
    resampled_correlations,
    seed_pairs,
    seed_resamples,
)
from oiplab.compare.summary import (
    Answer,
    Barriers,
    Estimate,
    LayerAnswer,
    OrderTest,
    VerdictRules,
    identity_words,
    mean_or_nan,
    order_words,
    verdict,
)
from oiplab.compare.weights import permute, weight_matching
from oiplab.config import CompareConfig, ConfigError
from oiplab.model import PERMUTABLE, PERMUTATION_OF, ModelConfig, build_model

if TYPE_CHECKING:
    import keras


log = logging.getLogger(__name__)

# CKA is also shown for the output layer, whose nodes (the classes) need no matching.
CKA_EXTRA_LAYERS = ("Dense_2",)
ALIGNMENTS = ("naive", "activations", "weights")
WeightPerms = list[dict[str, np.ndarray]]  # per pair (in pair order), layer -> permutation


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
    nulls: list[Any] | UntrainedSide,
    probe_x: np.ndarray,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    c: CompareConfig,
    progress: Callable[[str], None] | None = log.info,
) -> Comparison:
    """Answer, per layer, whether the trained networks share maps and their order.

    Args:
        trained: models by seed (at least two). nulls: untrained models of the architecture, or
            their side measured once (`measure_untrained`, on the same `probe_x` and settings)
            where several comparisons share it.
        probe_x: (n, 28, 28, 1) images the activations are compared on.
        eval_sets: name -> (x, y) images the weight interpolation is evaluated on (disjoint
            from `probe_x`, which fitted the permutations).
    """
    say = progress or (lambda _m: None)
    side = nulls if isinstance(nulls, UntrainedSide) else measure_untrained(nulls, probe_x, c)
    side.check(probe_x, c)
    seeds, layers = list(trained), list(c.layers)
    cka_layers = [*layers, *CKA_EXTRA_LAYERS]
    outs = [layer_outputs(m, probe_x, cka_layers) for m in trained.values()]
    pairs = list(combinations(range(len(seeds)), 2))
    say(f"{len(pairs)} trained pairs, {len(side.cka)} untrained pairs (the null)")

    weights = [m.get_weights() for m in trained.values()]
    weight_perms = {p: weight_matching(weights[p[0]], weights[p[1]]) for p in pairs}
    both = (
        None if side.weight_perms is None else ([weight_perms[p] for p in pairs], side.weight_perms)
    )
    study = study_layers(outs, side, seeds, c, both, say)
    matched, cka, res = study.matched, study.cka, study.res
    alphas = np.linspace(0.0, 1.0, c.interpolation_points)
    curves = _interpolation_curves(
        _fresh_copy(side.network()),
        weights,
        _alignments(matched, weight_perms, pairs),
        alphas,
        eval_sets,
        done=lambda a, b: say(f"interpolation seeds {seeds[a]}-{seeds[b]} done"),
    )

    def by_seed(values: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
        return {(seeds[a], seeds[b]): v for (a, b), v in values.items()}

    return Comparison(
        seeds=seeds,
        answers=study.answers,
        matches=by_seed(_by_pair(matched, pairs)),
        weight_perms=by_seed(weight_perms),
        cka=by_seed(cka),
        cka_layers=cka_layers,
        null_r=study.null_r,
        alphas=alphas,
        curves=by_seed(curves),
        barriers=_barriers(curves, alphas, SeedEstimates(pairs, len(seeds), res)),
    )


@dataclass(frozen=True)
class NullLayer:
    """One layer of the untrained side: the untrained networks measured among themselves."""

    units: list[Units]  # per untrained network (their halves dropped once the pairs are matched)
    matches: list[LayerMatch]  # per untrained pair, in `combinations` order, without moments
    threshold: float  # the partner threshold: `partner_quantile` of the pooled matched r
    siblings: list[float]  # per untrained network
    fits: list[LinearFits]  # per untrained pair


@dataclass(frozen=True)
class UntrainedSide:
    """The null of a comparison, which depends only on the untrained networks, the probe images
    and the settings: measured once, it serves every comparison of trained networks on the same
    images (compare_split's designs; the default study's numbers are those of measuring it anew).
    """

    outs: list[dict[str, np.ndarray]]  # per untrained network, layer -> outputs (CKA layers too)
    weight_perms: WeightPerms | None  # per untrained pair (None: no weight agreement)
    cka: dict[tuple[int, int], np.ndarray]  # (layers, layers) per untrained pair
    debiased: dict[str, list[float]]  # per matched layer, the debiased CKA per untrained pair
    layers: dict[str, NullLayer]
    fit_images: np.ndarray  # (n_images,) the identity fits' split (`split_images`)
    settings: CompareConfig  # what it was measured with
    probe_digest: str  # of the probe images ("" where made from outputs: not checked)
    nets: list[Any] = field(default_factory=list)  # the untrained models, where given

    def network(self) -> Any:
        """A network of the architecture (its weights are set before each use)."""
        if not self.nets:
            raise ValueError("this untrained side was measured from outputs: it has no network")
        return self.nets[0]

    def check(self, probe_x: np.ndarray, c: CompareConfig) -> None:
        """Fail where the side was measured on other images or with other settings."""
        if self.settings != c:
            raise ValueError("the untrained side was measured with other compare settings")
        if self.probe_digest and self.probe_digest != _digest(probe_x):
            raise ValueError("the untrained side was measured on other probe images")


def measure_untrained(nulls: list[Any], probe_x: np.ndarray, c: CompareConfig) -> UntrainedSide:
    """The untrained side of a comparison of networks on `probe_x` (see `UntrainedSide`)."""
    cka_layers = [*c.layers, *CKA_EXTRA_LAYERS]
    outs = [layer_outputs(m, probe_x, cka_layers) for m in nulls]
    weights = [m.get_weights() for m in nulls]
    perms = [weight_matching(weights[a], weights[b]) for a, b in seed_pairs(len(nulls))]
    side = untrained_side(outs, c, perms)
    return replace(side, probe_digest=_digest(probe_x), nets=list(nulls))


def untrained_side(
    null_outs: list[dict[str, np.ndarray]],
    c: CompareConfig,
    weight_perms: WeightPerms | None = None,
) -> UntrainedSide:
    """The untrained side from the untrained networks' outputs on the probe images (`c.layers`,
    and optionally more layers for the CKA matrix after them), and their pairs' weight matchings."""
    null_pairs = seed_pairs(len(null_outs))
    cka, debiased = _pairwise_cka(null_outs, list(null_outs[0]), null_pairs, c.layers)
    fit_images = _fit_images(len(null_outs[0][c.layers[0]]), c)[0]
    layers = {}
    for n in c.layers:  # one layer at a time: each network's units standardized once
        units = [Units.of(o[n]) for o in null_outs]
        matches = [match_layer(units[a], units[b], False) for a, b in null_pairs]
        threshold = partner_threshold(matches, c.partner_quantile)
        siblings = [sibling_rate(u, threshold) for u in units]
        fits = [linear_fits(units[a], units[b], fit_images) for a, b in null_pairs]
        units = [u.without_halves() for u in units]
        layers[n] = NullLayer(units, matches, threshold, siblings, fits)
    return UntrainedSide(
        null_outs, weight_perms, cka, debiased, layers, fit_images, c.model_copy(), ""
    )


def _fit_images(n_images: int, c: CompareConfig) -> tuple[np.ndarray, np.random.Generator]:
    """The identity fits' split of the probe images, and the generator that drew it (the
    rotation null draws from it next)."""
    rng = np.random.default_rng([c.bootstrap_seed, 1])  # apart from the bootstrap's stream
    return split_images(n_images, c.identity_held_out, rng), rng


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


@dataclass(frozen=True)
class StudyLayers:
    """The layers' part of a study: matches, answers, CKA matrices, the shared resamples."""

    matched: dict[str, LayerMatches]
    answers: dict[str, LayerAnswer]
    null_r: dict[str, np.ndarray]  # the null's pooled matched r, per layer
    cka: dict[tuple[int, int], np.ndarray]  # (layers, layers) per trained pair
    res: Resampling


def study_layers(
    outs: list[dict[str, np.ndarray]],
    null_outs: list[dict[str, np.ndarray]] | UntrainedSide,
    seeds: list[int],
    c: CompareConfig,
    weight_perms: tuple[WeightPerms, WeightPerms] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> StudyLayers:
    """Every layer's answer from the networks' outputs on the probe images.

    Args:
        outs, null_outs: per trained / untrained network, layer -> (n_images, ...) outputs
            (`c.layers`, and optionally more layers for the CKA matrix after them); the
            untrained ones may come as their side measured once (`untrained_side`).
        seeds: the trained networks' seeds. weight_perms: the trained and the untrained pairs'
            weight matchings (None: no weight agreement).
    """
    side = null_outs if isinstance(null_outs, UntrainedSide) else untrained_side(null_outs, c)
    cka_layers = list(outs[0])
    pairs = seed_pairs(len(outs))
    cka, debiased = _pairwise_cka(outs, cka_layers, pairs, c.layers)
    matched = _match_units(outs, side, seeds, cka, c)
    cross = sum(m.identity.cross_seconds for m in matched.values())
    say(f"trained x untrained pairs matched in {cross:.1f} s (the permutation test)")
    res = Resampling.draw(len(outs[0][c.layers[0]]), len(seeds), pairs, c)
    answers, null_r = _answers(matched, weight_perms, (debiased, side.debiased), res, c, say)
    return StudyLayers(matched, answers, null_r, cka, res)


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
    identity: Identity  # unit or subspace: the references, and the pair statistic of all networks


@dataclass(frozen=True)
class Identity:
    """One layer's references for "does a unit recur, or only its subspace?" (`identity`), and
    the pair statistic of the trained-vs-untrained test."""

    rotation: np.ndarray  # (trained pairs, draws) partnered fraction, a's live units rotated
    siblings: list[float]  # per trained network, then (`null_siblings`) per untrained one
    null_siblings: list[float]
    fits: list[LinearFits]  # per trained pair, fitted on probe images, scored on held-out ones
    null_fits: list[LinearFits]  # per untrained pair
    median_r: np.ndarray  # (n, n) median matched r over all networks (trained first)
    cross_seconds: float  # time spent matching the trained x untrained cross pairs


def _match_units(
    outs: list[dict[str, np.ndarray]],
    side: UntrainedSide,
    seeds: list[int],
    cka: dict[tuple[int, int], np.ndarray],
    c: CompareConfig,
) -> dict[str, LayerMatches]:
    """Match the maps of every pair of trained networks (with the halves, for stability), and
    each layer's identity references; the untrained pairs' come from `side`.

    `cka`: the trained pairs' CKA matrices (`_pairwise_cka`, rows `layers` first); each layer
    keeps its diagonal entry, and the untrained pairs' from `side.cka`.
    """
    pairs = seed_pairs(len(outs))
    null_pairs = list(side.cka)
    fit_images, rng = _fit_images(len(outs[0][c.layers[0]]), c)
    matched = {}
    for li, n in enumerate(c.layers):  # one layer at a time: each network's units standardized once
        units = [Units.of(o[n]) for o in outs]
        null = side.layers[n]
        # per-image moments serve only the image bootstrap, used where the jackknife is not
        trained = [match_layer(units[a], units[b], not jackknife(len(outs))) for a, b in pairs]
        matched[n] = LayerMatches(
            layer=n,
            trained=trained,
            null=null.matches,
            positions=units[0].positions,
            dead={str(s): int(u.dead.sum()) for s, u in zip(seeds, units, strict=True)},
            cka=[cka[p][li, li] for p in pairs],
            null_cka=[side.cka[p][li, li] for p in null_pairs],
            identity=_identity(units, null, trained, fit_images, c, rng),
        )
    return matched


def _identity(
    units: list[Units],
    null: NullLayer,
    matches: list[LayerMatch],
    fit_images: np.ndarray,
    c: CompareConfig,
    rng: np.random.Generator,
) -> Identity:
    """The rotation null of every trained pair, every network's sibling rate, the held-out linear
    fits of every pair, and the median matched r of every pair of networks (cross pairs matched
    here, without halves or moments: only their median r is needed); the untrained networks'
    own from `null`."""
    pairs = seed_pairs(len(units))
    null_pairs = seed_pairs(len(null.units))
    threshold = null.threshold
    rotation = np.array(
        [
            rotation_null(units[a], units[b], threshold, c.rotation_draws, rng, m.corr).null
            for (a, b), m in zip(pairs, matches, strict=True)
        ]
    )
    start = time.perf_counter()
    everyone = [*units, *null.units]
    median_r = np.zeros((len(everyone), len(everyone)))
    known = {(a, b): m for (a, b), m in zip(pairs, matches, strict=True)}
    known |= {
        (a + len(units), b + len(units)): m
        for (a, b), m in zip(null_pairs, null.matches, strict=True)
    }
    for a, b in combinations(range(len(everyone)), 2):
        r = known[(a, b)].r if (a, b) in known else matched_r(everyone[a], everyone[b])
        median_r[a, b] = median_r[b, a] = float(np.median(r)) if len(r) else 0.0
    cross = time.perf_counter() - start
    return Identity(
        rotation=rotation,
        siblings=[sibling_rate(u, threshold) for u in units],
        null_siblings=null.siblings,
        fits=[linear_fits(units[a], units[b], fit_images) for a, b in pairs],
        null_fits=null.fits,
        median_r=median_r,
        cross_seconds=cross,
    )


def _answers(
    matched: dict[str, LayerMatches],
    weight_perms: tuple[WeightPerms, WeightPerms] | None,
    debiased: tuple[dict[str, list[float]], dict[str, list[float]]],
    res: Resampling,
    c: CompareConfig,
    say: Callable[[str], None],
) -> tuple[dict[str, LayerAnswer], dict[str, np.ndarray]]:
    """Every layer's answer (layers in order: they share the relabelling test's generator), and
    the null's pooled matched r per layer.

    `weight_perms`: the trained and the untrained pairs' weight matchings; `debiased`: the
    trained and the untrained pairs' debiased CKA per layer.
    """
    rules = VerdictRules(c.alpha, c.same_order_fraction, c.most_fraction)
    answers, null_r = {}, {}
    for layer, m in matched.items():
        n_nulls = _seeds_of_pairs(len(m.null))
        answers[layer], null_r[layer] = _layer_answer(
            m,
            Comparators(
                consistency=_consistency(m.trained, len(m.dead))
                | _untrained(_consistency(m.null, n_nulls)),
                weight_agreement=(
                    _agreement(m.layer, m.trained, weight_perms[0])
                    | _untrained(_agreement(m.layer, m.null, weight_perms[1]))
                    if layer in PERMUTABLE and weight_perms
                    else {}
                ),
                debiased=(debiased[0][layer], debiased[1][layer]),
            ),
            res=res,
            c=c,
            rules=rules,
        )
        say(f"{answers[layer].verdict}")
    return answers, null_r


def _untrained(record: dict[str, float]) -> dict[str, float]:
    """A comparator's record on untrained pairs, under keys beside the trained ones' (its chance
    is the trained one's: the same maps)."""
    return {"untrained": record["all"], "untrained_stable": record["stable"]}


def _seeds_of_pairs(n_pairs: int) -> int:
    """n with n (n - 1) / 2 = n_pairs."""
    return int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))


def _by_pair(
    matched: dict[str, LayerMatches], pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, LayerMatch]]:
    """The matches regrouped: per trained pair, per layer."""
    return {p: {n: m.trained[k] for n, m in matched.items()} for k, p in enumerate(pairs)}


def _pairwise_cka(
    outs: list[dict[str, np.ndarray]],
    layers: list[str],
    pairs: list[tuple[int, int]],
    matched_layers: list[str],
) -> tuple[dict[tuple[int, int], np.ndarray], dict[str, list[float]]]:
    """(layers, layers) linear CKA between the two networks of every pair, and per matched layer
    the debiased CKA of every pair (from the same Grams: the debiased estimator is unchanged by
    centring)."""
    grams = [[centered_gram(o[n]) for n in layers] for o in outs]
    debiased = {
        n: [debiased_cka(grams[a][k], grams[b][k]) for a, b in pairs]
        for k, n in enumerate(layers)
        if n in matched_layers
    }
    return {p: cka_matrix(grams[p[0]], grams[p[1]]) for p in pairs}, debiased


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


@dataclass(frozen=True)
class Comparators:
    """One layer's comparators, each with the untrained pairs' value beside (`_untrained`)."""

    consistency: dict[str, float]
    weight_agreement: dict[str, float]  # permutable layers only
    debiased: tuple[list[float], list[float]]  # debiased CKA per trained, per untrained pair


def _layer_answer(
    m: LayerMatches,
    comp: Comparators,
    *,
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
    est = SeedEstimates(seed_pairs(len(m.dead)), len(m.dead), res)

    frac = np.array([(t.r > threshold).mean() for t in m.trained])
    median = np.array([np.median(t.r) for t in m.trained])
    boot = est.image_samples(m, threshold)  # only where the jackknife is undefined (2 seeds)
    n_maps = m.trained[0].corr.shape[1]
    order = _same_index(m.trained, n_maps, rules.alpha, c)
    answer = LayerAnswer(
        layer=m.layer,
        n_maps=n_maps,
        threshold=threshold,
        partnered=est(frac, boot[0], null_fracs, clip=True),
        matched_r=est(median, boot[1], [float(np.median(r)) for r in null_values if len(r)]),
        cka=est(np.array(m.cka), None, m.null_cka),
        order=order,
        order_null=_same_index(m.null, n_maps, rules.alpha, c),
        stable=est(_stability(m.trained), None, list(_stability(m.null)), clip=True),
        dead=m.dead,
        consistency=comp.consistency,
        weight_agreement=comp.weight_agreement,
        cka_debiased=est(np.array(comp.debiased[0]), None, comp.debiased[1]),
        **_identity_fields(m, est, res.rng),
        identity="",
        order_words=order_words(order, rules),
    )
    answer.identity = identity_words(
        answer.partnered, answer.rotation_null, answer.vs_untrained_p, rules
    )
    answer.verdict = verdict(answer, rules)
    return answer, np.concatenate(null_values)


def _stability(matches: list[LayerMatch]) -> np.ndarray:
    """Per pair, the share of its matches with the same partner on either half of the images."""
    return np.array([t.stable[t.matched].mean() if len(t.matched) else np.nan for t in matches])


def _identity_fields(
    m: LayerMatches, est: SeedEstimates, rng: np.random.Generator
) -> dict[str, Any]:
    """The unit-or-subspace numbers of one layer (`LayerAnswer.rotation_null` to `auroc`), and
    the trained-vs-untrained label-permutation p of the median matched r."""
    ident = m.identity
    draws = ident.rotation[np.isfinite(ident.rotation)]
    rot_low, rot_high, rot_95 = (
        np.percentile(draws, [2.5, 97.5, 95]) if len(draws) else (np.nan,) * 3
    )
    rotation = Estimate(
        value=mean_or_nan(draws),
        low=float(rot_low),
        high=float(rot_high),
        null_high=float(rot_95),
    )
    n_trained = len(ident.siblings)
    trained = np.arange(len(ident.median_r)) < n_trained
    return {
        "rotation_null": rotation,
        "siblings": _network_mean(ident.siblings, ident.null_siblings),
        "one_to_one": est(
            np.array([f.one_to_one for f in ident.fits]),
            None,
            [f.one_to_one for f in ident.null_fits],
        ),
        "many_to_one": est(
            np.array([f.many_to_one for f in ident.fits]),
            None,
            [f.many_to_one for f in ident.null_fits],
        ),
        "auroc": _auroc([t.r for t in m.trained], [t.r for t in m.null]),
        "vs_untrained_p": trained_vs_untrained(ident.median_r, trained, rng).p_value,
    }


def _network_mean(values: list[float], null_values: list[float]) -> Estimate:
    """The mean of a per-network value with a t interval over the (independent) networks, beside
    the untrained networks' mean and largest value."""
    v = np.array([x for x in values if np.isfinite(x)])
    nulls = [x for x in null_values if np.isfinite(x)]
    half = np.nan
    if len(v) > 1:
        half = float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    value = mean_or_nan(v)
    return Estimate(
        value=value,
        low=float(np.clip(value - half, 0.0, 1.0)),  # NaN stays NaN (one network: no interval)
        high=float(np.clip(value + half, 0.0, 1.0)),
        null=mean_or_nan(nulls),
        null_high=float(np.max(nulls)) if nulls else None,
    )


def _auroc(trained: list[np.ndarray], untrained: list[np.ndarray]) -> Estimate:
    """AUROC of trained against untrained matched r with its seed jackknife interval (NaN with
    fewer than three networks on either side, where leaving one out leaves no pair); null 0.5."""
    if min(_seeds_of_pairs(len(trained)), _seeds_of_pairs(len(untrained))) < 3:
        x, y = np.concatenate(trained), np.concatenate(untrained)
        value = float(sps.mannwhitneyu(x, y).statistic / (len(x) * len(y)))
        return Estimate(value, float("nan"), float("nan"), null=0.5)
    a = auroc(trained, untrained)
    return Estimate(a.value, a.low, a.high, null=0.5)


def jackknife(n_seeds: int) -> bool:
    """Whether the seed jackknife gives the intervals (leaving one seed out leaves a pair)."""
    return n_seeds >= 3


class SeedEstimates:
    """Study-level intervals: the leave-one-seed-out jackknife-t (its coverage is tested in
    tests/test_inference.py; the percentile seed bootstrap under-covers with five seeds). With
    two seeds no seed can be left out, and the percentile bootstrap of seeds and probe images
    (`Resampling`) gives the interval instead."""

    def __init__(self, pairs: list[tuple[int, int]], n_seeds: int, res: Resampling):
        self.pairs, self.n_seeds, self.res = pairs, n_seeds, res

    @property
    def jackknife(self) -> bool:
        return jackknife(self.n_seeds)

    def image_samples(
        self, m: LayerMatches, threshold: float
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(pairs, draws) partnered fraction and median r over resampled probe images, for the
        bootstrap fallback; (None, None) where the jackknife gives the interval."""
        if self.jackknife:
            return None, None
        counts = self.res.image_counts
        boot_r = [resampled_correlations(_moments(t), counts, m.positions) for t in m.trained]
        frac = np.stack([(r > threshold).mean(axis=1) for r in boot_r])
        return frac, np.stack([np.median(r, axis=1) for r in boot_r])

    def __call__(
        self,
        values: np.ndarray,
        samples: np.ndarray | None,
        null_values: list[float] | None = None,
        clip: bool = False,
    ) -> Estimate:
        """The mean of `values` over the trained pairs with its interval, and the mean and largest
        of the finite `null_values` (the same statistic on untrained pairs). `clip`: a fraction,
        its interval kept in [0, 1]."""
        if self.jackknife:
            ci = jackknife_interval(values, self.pairs, self.n_seeds)
            low, high = ci.low, ci.high
        else:
            low, high = interval(
                bootstrap_means(values if samples is None else samples, self.res.pair_weights)
            )
        if clip:
            low, high = (float(np.clip(end, 0.0, 1.0)) for end in (low, high))  # NaN stays NaN
        nulls = [v for v in (null_values or []) if np.isfinite(v)]
        return Estimate(
            value=mean_or_nan(values),
            low=low,
            high=high,
            null=float(np.mean(nulls)) if nulls else None,
            null_high=float(np.max(nulls)) if nulls else None,
        )


def _same_index(
    matches: list[LayerMatch], n_maps: int, alpha: float, c: CompareConfig
) -> OrderTest:
    """The exact relabelling test of "same order" over the decisive matches of `matches`, with
    the same test over all matches beside it, and a bound on the keep rate when not significant."""
    decisive = [(d, m.partner[d]) for m in matches for d in [m.decisive(c.tie_tolerance)]]
    every = [(m.matched, m.partner[m.matched]) for m in matches]
    k, n = exact_same_index_test(decisive, n_maps), exact_same_index_test(every, n_maps)
    keep = None if k.p_value < alpha else keep_rate_upper_bound(k.observed, k.n_tested)
    return OrderTest(
        observed=k.observed,
        expected=k.expected,
        p_value=k.p_value,
        n_tested=k.n_tested,
        n_matches=n.n_tested,
        p_all=n.p_value,
        observed_all=n.observed,
        keep_upper=keep,
    )


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
    layer: str, matches: list[LayerMatch], weight_perms: list[dict[str, np.ndarray]]
) -> dict[str, float]:
    """How often weight matching picks the partner activation matching picked (all / stable).

    `matches` and `weight_perms`: one layer's activation matches and the weight matchings of the
    same pairs, in the same order."""
    every, stable, chance = [], [], []
    source = PERMUTATION_OF[layer]
    for perms, m in zip(weight_perms, matches, strict=True):
        w = perms[source]
        every.append(float((w[m.matched] == m.partner[m.matched]).mean()))
        s = m.matched[m.stable[m.matched]]
        stable.append(float((w[s] == m.partner[s]).mean()) if len(s) else float("nan"))
        chance.append(1.0 / m.corr.shape[1])
    return {"all": mean_or_nan(every), "stable": mean_or_nan(stable), "chance": mean_or_nan(chance)}


def _barriers(
    curves: dict[tuple[int, int], dict[str, dict[str, dict[str, list[float]]]]],
    alphas: np.ndarray,
    est: SeedEstimates,
) -> Barriers:
    """Each barrier's mean over the trained pairs with its seed interval (`SeedEstimates`)."""
    out: dict[str, dict[str, dict[str, Estimate]]] = {}
    first = curves[est.pairs[0]]
    for label in ALIGNMENTS:
        for name in first[label]:
            per_pair = [barriers(curves[p][label][name], alphas) for p in est.pairs]
            for kind in per_pair[0]:
                e = est(np.array([b[kind] for b in per_pair]), None)
                measure = kind.removesuffix("_barrier")
                by_set = out.setdefault(label, {}).setdefault(name, {})
                by_set[measure] = Estimate(e.value, e.low, e.high)
    return Barriers(by_alignment=out)


def _moments(match: LayerMatch) -> np.ndarray:
    """A trained pair's per-image moments (kept by `match_layer` for resampling the images)."""
    if match.moments is None:
        raise ValueError("a trained pair was matched without its per-image moments")
    return match.moments
