"""Hand-made typed stage results (no training, no ascent): one of every type, for the round-trip,
format and report tests."""

from __future__ import annotations

from pathlib import Path

from oiplab.analysis.patterns import GroupContrast, PatternSummary
from oiplab.analysis.selection import SelectedGroup, Selection
from oiplab.compare.dynamics import AlignmentRecords, SnapshotRecord
from oiplab.compare.oip_response import (
    LayerPartners,
    MatchedPairs,
    PixelSimilarity,
    ResponseSummary,
    TopRates,
)
from oiplab.compare.summary import Answer, Barriers, Estimate, LayerAnswer, OrderTest
from oiplab.config import Config
from oiplab.data.prepared import Moments, PreparedMeta
from oiplab.io import Record, RunRecord
from oiplab.layout import Layout
from oiplab.oip.census import CensusMetrics
from oiplab.oip.survey import SurveyMetrics
from oiplab.training import History, TrainMetrics


def estimate(value: float) -> Estimate:
    return Estimate(value, value - 0.125, value + 0.125, 0.25, 0.375)


def layer_answer(layer: str, order: OrderTest | None = None, words: str = "") -> LayerAnswer:
    """A layer's answer; `order` and `words` (its `order_words`) default to order at chance."""
    return LayerAnswer(
        layer=layer,
        n_maps=32,
        threshold=0.5,
        partnered=estimate(0.625),
        matched_r=estimate(0.75),
        cka=estimate(0.875),
        order=order
        or OrderTest(
            observed=3,
            expected=1.5,
            p_value=0.0125,
            n_tested=24,
            n_matches=30,
            p_all=0.03125,
            observed_all=4,
            keep_upper=None,
        ),
        order_null=OrderTest(
            observed=1,
            expected=1.25,
            p_value=0.5,
            n_tested=24,
            n_matches=30,
            p_all=0.5,
            observed_all=1,
            keep_upper=0.1875,
        ),
        stable=estimate(0.5),
        dead={"0": 1, "1": 2},
        consistency={"all": 0.5, "stable": 0.75, "chance": 0.0625, "untrained": 0.25},
        rotation_null=estimate(0.25),
        siblings=estimate(0.125),
        one_to_one=estimate(0.5),
        many_to_one=estimate(0.875),
        auroc=estimate(0.75),
        vs_untrained_p=0.00390625,
        identity="units recur",
        order_words=words or "order at chance",
        cka_debiased=estimate(0.625),
        weight_agreement={},
        verdict=f"{layer}: units recur: most maps have a partner; {words or 'order at chance'}",
    )


def barriers() -> Barriers:
    return Barriers(
        by_alignment={
            how: {
                images: {"loss": estimate(0.25 + k / 8), "accuracy": estimate(k / 16)}
                for images in ("test", "train")
            }
            for k, how in enumerate(("naive", "activations", "weights"))
        }
    )


def answer(layers: list[str]) -> Answer:
    return Answer(layers={n: layer_answer(n) for n in layers}, barriers=barriers())


# A layer whose order a shared seed keeps: 12 of 24 tested matches at their index, 0.75 expected;
# and one at chance: 1 of 24, 0.75 expected.
KEPT = OrderTest(observed=12, expected=0.75, p_value=1e-12, n_tested=24)
AT_CHANCE = OrderTest(observed=1, expected=0.75, p_value=0.5, n_tested=24)


def split_answer(layers: list[str], design: str, kept: bool) -> Answer:
    """A seed-split design's answer: every layer keeps half its maps in place, or none does."""
    per_layer = {
        n: layer_answer(n, KEPT, "same order") if kept else layer_answer(n, AT_CHANCE)
        for n in layers
    }
    return Answer(layers=per_layer, barriers=barriers(), design=design)


def train_metrics(seed: int) -> TrainMetrics:
    return TrainMetrics(
        seed=seed,
        test_accuracy=0.9375,
        test_loss=0.25,
        train_seconds=3.5,
        images_per_second=150.5,
        epochs=2,
        n_params=208982,
    )


def history() -> History:
    return History(
        curves={
            "accuracy": [0.5, 0.75],
            "loss": [1.5, 0.5],
            "val_accuracy": [0.625, 0.875],
            "val_loss": [1.25, 0.375],
        }
    )


def prepared_meta() -> PreparedMeta:
    return PreparedMeta(
        dataset="synthetic",
        origin="synthetic (seed 0)",
        n_train=200,
        n_test=160,
        sha256={"train": "a" * 64, "test": "b" * 64},
        standardization=Moments(mean=0.125, std=0.25, scale="pixels / 255"),
        image_target=Moments(mean=0.0, std=0.5, scale="network input"),
        class_names=list("0123456789"),
    )


def selection(cfg: Config) -> Selection:
    groups = [
        SelectedGroup(
            name=g.name,
            kind=g.kind,
            true_class=g.true_class,
            other_class=g.other_class,
            indices=[3 * k + 1, 3 * k + 2],
            scores=[2.5, 1.25],
            predicted={str(s): [g.true_class, g.true_class] for s in cfg.seeds},
        )
        for k, g in enumerate(cfg.activations.groups)
    ]
    return Selection(seeds=list(cfg.seeds), groups=groups)


def patterns(cfg: Config, seed: int) -> PatternSummary:
    numbers = GroupContrast(
        n_elements=1152, n_common=86, n_distinct=66, jaccard_within=0.875, jaccard_across=0.125
    )
    c = cfg.activations.common
    return PatternSummary(
        seed=seed,
        n_images=8,
        common={layer: {f"{a}_vs_{b}": numbers for a, b in c.comparisons} for layer in c.layers},
    )


def survey(seed: int, layer: str) -> SurveyMetrics:
    return SurveyMetrics(
        seed=seed,
        layer=layer,
        n_maps=128,
        n_with_oip=101,
        n_silent=27,
        n_zero_not_silent=0,
        seconds=2.5,
        steps_per_second=1856.5,
        median_steps_moving=20.0,
        converged_fraction=0.25,
        halted_fraction=0.0,
        n_woken=0,
        start_mean=-0.0001,
        start_std_spread=5.960464477539063e-08,
    )


def census(seed: int, layer: str) -> CensusMetrics:
    return CensusMetrics(
        seed=seed,
        layer=layer,
        n_maps_searched=27,
        n_candidates=16,
        found_among_searched=18,
        variant_similarity_mean=None,
        screen_seconds=0.75,
        full_seconds=0.5,
        pairs_ascended_in_screen=75,
        from_noise=101,
        from_precursor=18,
        from_rescue=1,
        responds_to_digits=3,
        dead_on_data=5,
        rescue_tried=9,
        rescue_seconds=0.5,
    )


def matched_pairs(layers: list[str]) -> MatchedPairs:
    match = LayerPartners(partner=[1, 0, -1], matched_r=[0.875, 0.25])
    return MatchedPairs(pairs={(0, 1): {n: match for n in layers}})


def response_summary() -> ResponseSummary:
    rates = TopRates(
        n=99.5,
        top1=0.0,
        top1_low=0.0,
        top1_high=0.0625,
        top5=0.125,
        top5_low=0.0625,
        top5_high=0.25,
        top1_random=0.0625,
        top5_random=0.0625,
        top1_chance=0.0078125,
        top5_chance=0.0390625,
    )
    return ResponseSummary(
        all=rates,
        partnered=rates,
        pixels=PixelSimilarity(partners=0.975, others=0.875, n_partner_pairs=180.0),
    )


def alignment(layers: list[str]) -> AlignmentRecords:
    return AlignmentRecords(
        records=[
            SnapshotRecord(
                layer=layer,
                step=step,
                epoch=step / 10,
                partnered=0.5,
                partnered_low=0.375,
                partnered_high=0.625,
                partnered_null=0.0625,
                same_index_p=0.25,
                same_index_p_holm=0.75,
                same_index_observed=1,
                same_index_expected=0.1875,
                cka=0.875,
                final_partnered=0.75,
                final_same_index=1.0,
                final_same_index_chance=0.03125,
                final_same_index_p=1e-40,  # NaN at the final snapshot: tests/test_report.py
                final_same_index_p_holm=2e-40,
            )
            for layer in layers
            for step in (0, 10, 20)
        ]
    )


def run_record() -> RunRecord:
    return RunRecord(run_id="0123456789abcdef", experiment_id="1")


def write_study(cfg: Config) -> Layout:
    """Every stage's typed results of study `cfg`, saved where the layout puts them."""
    lay = Layout.of(cfg)
    folders: list[tuple[Path, list[Record]]] = [
        (lay.prepared, [prepared_meta()]),
        *((lay.model_dir(s), [train_metrics(s), history(), run_record()]) for s in cfg.seeds),
        *((lay.activations_dir(s), [patterns(cfg, s)]) for s in cfg.seeds),
        *((lay.oip_dir(s), [survey(s, cfg.oip.layer)]) for s in cfg.seeds),
        *((lay.precursor_dir(s), [census(s, cfg.oip.layer)]) for s in cfg.seeds),
        (lay.compare_dir(), [answer(cfg.compare.layers), matched_pairs(cfg.compare.layers)]),
        *(
            (lay.split_compare_dir(d), [split_answer(cfg.compare.layers, d, d == "same_init")])
            for d in cfg.split.designs
        ),
        (lay.oip_compare_dir(), [response_summary()]),
        (lay.alignment_dir(), [alignment(cfg.alignment.layers)]),
    ]
    for folder, results in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for result in results:
            result.save(folder)
    lay.selection().parent.mkdir(parents=True, exist_ok=True)
    selection(cfg).save_to(lay.selection())
    return lay
