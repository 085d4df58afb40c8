"""Matched maps compared by what their OIPs do, not by how they look.

Feed seed a's OIP of map i into network b: if b's partner of map i (from activation matching)
is the map of b that this image drives hardest, the two maps respond to the same pattern. Each
map's response is its mean activation on the image, divided by its mean response on real probe
images (maps differ in scale). Rates of the partner ranking first (top-1) or among the first 5
are given beside chance and beside a random partner, in both directions. The random partner's
rate is its exact mean over every live map of b in the partner's place (the limit of many random
draws): without ties, exactly one live map ranks first, so it equals chance (1 / live maps) and
only ties move it; the page shows chance. The rates' 95% intervals resample seeds: a
resample holding seeds a and b c_a and c_b times holds c_a * c_b copies of both directions a->b
and b->a (`stats.pair_weights`).

A pixel similarity is kept as a secondary number: per start image (the same start on both sides,
so shared starts cannot inflate it), the best Pearson correlation over small shifts, against every
non-partner pair of the same start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import ConfigDict, model_validator

from oiplab.analysis.activations import layer_outputs
from oiplab.compare.stats import bootstrap_means, interval, pair_weights, seed_resamples
from oiplab.io import Fields, Finite, Real, Record
from oiplab.layout import METRICS, CompareFiles

if TYPE_CHECKING:
    import keras

SHIFT = 2  # pixels: OIPs of the same feature may sit a little apart


def map_responses(
    model: keras.Model, layer: str, images: np.ndarray, batch: int = 256
) -> np.ndarray:
    """(n_images, n_maps) mean activation of every map of `layer` on each image."""
    out = layer_outputs(model, images, [layer], batch_size=batch)[layer]
    return out.reshape(len(out), -1, out.shape[-1]).mean(axis=1)


def partner_ranks(
    responses: np.ndarray, typical: np.ndarray, partner: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Rank (0 = first) of each row's partner among the live maps of b, by scaled response.

    Args:
        responses: (n_a, n_b) b's responses to a's OIP of each map. typical: (n_b,) b's mean
            response on real images (0: a dead map, left out). partner: (n_a,) b's map per map
            of a. rows: the maps of a to rank.
    """
    live = typical > 0
    scaled = np.where(live, responses / np.where(live, typical, 1.0), -np.inf)
    mine = scaled[rows, partner[rows]][:, None]
    return (scaled[rows] > mine).sum(axis=1)


@dataclass(frozen=True)
class ResponseSettings:
    """How the response rates are resampled (`conf/compare/`)."""

    seed: int  # of the generator of the seed resamples
    bootstrap_draws: int  # seed resamples of the rates' intervals


def response_rates(
    responses: np.ndarray, typical: np.ndarray, partner: np.ndarray, rows: np.ndarray
) -> dict[str, float]:
    """Top-1 and top-5 rates of the partners, of a random live partner (its exact mean over
    every live map, module docstring), and chance."""
    live = np.flatnonzero(typical > 0)
    if not len(rows) or not len(live):
        return {}
    ranks = partner_ranks(responses, typical, partner, rows)
    scaled = responses[np.ix_(rows, live)] / typical[live]
    every = (scaled[:, None, :] > scaled[:, :, None]).sum(axis=2)  # (rows, live): each one's rank
    return {
        "n": int(len(rows)),
        "top1": float((ranks == 0).mean()),
        "top5": float((ranks < 5).mean()),
        "top1_random": float((every == 0).mean()),
        "top5_random": float((every < 5).mean()),
        "top1_chance": 1.0 / len(live),
        "top5_chance": min(5, len(live)) / len(live),
    }


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(..., 28 - 2 SHIFT, 28 - 2 SHIFT) the central crop moved by (dy, dx)."""
    h, w = images.shape[-2:]
    return images[..., SHIFT + dy : h - SHIFT + dy, SHIFT + dx : w - SHIFT + dx]


def _standardized(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(*x.shape[:-2], -1).astype(np.float64)
    flat = flat - flat.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(flat, axis=-1, keepdims=True)
    return flat / np.where(norm > 0, norm, 1.0)


def shift_tolerant_similarity(images_a: np.ndarray, images_b: np.ndarray) -> np.ndarray:
    """(S, n_a, n_b) the best Pearson correlation over shifts of up to SHIFT pixels between a's
    OIP of map i and b's OIP of map j from the same start s.

    Args:
        images_a, images_b: (n_maps, S, 28, 28) per-start OIPs of the two networks.
    """
    a = _standardized(_shifted(images_a, 0, 0)).transpose(1, 0, 2)  # (S, n_a, P)
    best: np.ndarray | None = None
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            b = _standardized(_shifted(images_b, dy, dx)).transpose(1, 0, 2)
            sim = np.einsum("sip,sjp->sij", a, b)
            best = sim if best is None else np.maximum(best, sim)
    assert best is not None  # SHIFT >= 0: the unshifted pair at least
    return best


def pixel_similarity(
    images_a: np.ndarray,
    images_b: np.ndarray,
    found_a: np.ndarray,
    found_b: np.ndarray,
    partner: np.ndarray,
    rows: np.ndarray,
) -> dict[str, float]:
    """Mean shift-tolerant similarity of partners vs every other pair, start by start (only
    (map, start) elements with an OIP, loss > 0, on both sides).

    Args:
        found_a, found_b: (n_maps, S) whether each (map, start) found an OIP.
    """
    sim = shift_tolerant_similarity(images_a, images_b)  # (S, n_a, n_b)
    valid = found_a.T[:, :, None] & found_b.T[:, None, :]  # (S, n_a, n_b)
    is_partner = np.zeros(sim.shape[1:], dtype=bool)
    is_partner[rows, partner[rows]] = True
    matched = valid & is_partner[None]
    others = valid & ~is_partner[None]
    others[:, ~np.isin(np.arange(sim.shape[1]), rows), :] = False
    if not matched.any() or not others.any():
        return {}
    return {
        "partners": float(sim[matched].mean()),
        "others": float(sim[others].mean()),
        "n_partner_pairs": int(matched.sum()),
    }


def full_layer(map_index: np.ndarray, per_map: np.ndarray, n_maps: int) -> np.ndarray:
    """Spread a survey's per-map array (for the surveyed maps) over all `n_maps` maps (zeros)."""
    out = np.zeros((n_maps, *per_map.shape[1:]), dtype=per_map.dtype)
    out[map_index] = per_map
    return out


def compare_oips(
    models: dict[int, object],
    layer: str,
    oips: dict[int, dict[str, np.ndarray]],
    typical: dict[int, np.ndarray],
    pairs: dict[tuple[int, int], dict[str, np.ndarray]],
    settings: ResponseSettings,
) -> dict:
    """Response rates and pixel similarity of matched maps, for every pair in both directions.

    Args:
        oips: per seed, {"best": (n, 28, 28), "images": (n, S, 28, 28), "found": (n, S)} over
            all n maps of the layer (`full_layer`).
        typical: per seed, (n,) each map's mean response on real probe images.
        pairs: per (a, b), {"partner": (n,) b's partner of each map of a (-1: none),
            "partnered": (n,) bool, the match beats the null threshold}.
    """
    per_pair: dict[str, dict] = {}
    for (a, b), m in pairs.items():
        partner = m["partner"]
        inverse = np.full(len(partner), -1)
        inverse[partner[partner >= 0]] = np.flatnonzero(partner >= 0)
        for src, dst, link, keep in (
            (a, b, partner, m["partnered"]),
            (b, a, inverse, m["partnered"][np.maximum(inverse, 0)] & (inverse >= 0)),
        ):
            found = oips[src]["found"].any(axis=1)
            rows = np.flatnonzero((link >= 0) & found & (typical[dst][np.maximum(link, 0)] > 0))
            responses = map_responses(models[dst], layer, oips[src]["best"][..., None])
            entry = {
                "all": response_rates(responses, typical[dst], link, rows),
                "partnered": response_rates(responses, typical[dst], link, rows[keep[rows]]),
            }
            if src == a:
                entry["pixels"] = pixel_similarity(
                    images_a=oips[a]["images"],
                    images_b=oips[b]["images"],
                    found_a=oips[a]["found"],
                    found_b=oips[b]["found"],
                    partner=partner,
                    rows=rows,
                )
            per_pair[f"{src}->{dst}"] = entry
    seeds = sorted({s for pair in pairs for s in pair})
    rng = np.random.default_rng(settings.seed)
    counts = seed_resamples(len(seeds), settings.bootstrap_draws, rng)
    return {"pairs": per_pair, "summary": _summary(per_pair, seeds, counts)}


INTERVALS = ("top1", "top5")  # the rates given a seed-resampled interval


def _summary(per_pair: dict, seeds: list[int], counts: np.ndarray) -> dict:
    """The mean over directions of every rate, with seed-resampled intervals of `INTERVALS`."""
    out = {}
    for group in ("all", "partnered"):
        kept = {k: p[group] for k, p in per_pair.items() if p[group]}
        if not kept:
            continue
        rows = list(kept.values())
        out[group] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        ends = [k.split("->") for k in kept]
        weights = pair_weights(
            counts, [(seeds.index(int(a)), seeds.index(int(b))) for a, b in ends]
        )
        for k in INTERVALS:
            low, high = interval(bootstrap_means(np.array([r[k] for r in rows]), weights))
            out[group] |= {f"{k}_low": low, f"{k}_high": high}
    pixels = [p["pixels"] for p in per_pair.values() if p.get("pixels")]
    if pixels:
        out["pixels"] = {k: float(np.mean([p[k] for p in pixels])) for k in pixels[0]}
    return out


def oips_from_outcome(outcome: dict[str, np.ndarray], n_maps: int) -> dict[str, np.ndarray]:
    """A saved survey's OIPs (`oip.survey.load_outcome`) spread over all maps of the layer."""
    index = outcome["map_index"]
    return {
        "best": full_layer(index, outcome["best_images"], n_maps),
        "images": full_layer(index, outcome["images"], n_maps),
        "found": full_layer(index, outcome["found_per_start"], n_maps),
    }


def partners_from_details(details: MatchedPairs, layer: str, threshold: float) -> dict:
    """Per pair (a, b) of the comparison's record: b's partner of each map of a (-1: none) and
    whether the match beats the null's threshold (partnered)."""
    out = {}
    for (a, b), layers in details.pairs.items():
        record = layers[layer]
        partner = np.asarray(record.partner, dtype=np.int64)
        partnered = np.zeros(len(partner), dtype=bool)
        partnered[np.flatnonzero(partner >= 0)] = np.asarray(record.matched_r) > threshold
        out[(a, b)] = {"partner": partner, "partnered": partnered}
    return out


class LayerPartners(Fields):
    """One layer's one-to-one matching of a pair, as `compare.json` keeps it (the part read)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    partner: list[int]  # b's map matched to each map of a; -1: none (a dead map)
    matched_r: list[Finite]  # the correlation of each match (of the live maps, in order)


class MatchedPairs(Record):
    """What `oip_compare` reads of the comparison's record (`artifacts/compare/compare.json`):
    per pair (a, b) of seeds, each layer's matching. The file holds more (weights, CKA, curves),
    left unread; a missing or mistyped part read here is an error."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    FILE: ClassVar[str] = CompareFiles.details
    STAGE: ClassVar[str] = "compare"
    WHAT: ClassVar[str] = "comparison details"

    pairs: dict[tuple[int, int], dict[str, LayerPartners]]

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        """The file names a pair "a-b" and nests its layers under "layers"."""
        if not isinstance(data, dict) or not isinstance(data.get("pairs"), dict):
            return data
        pairs = {}
        for key, pair in data["pairs"].items():
            seeds = tuple(key.split("-")) if isinstance(key, str) else key
            pairs[seeds] = pair.get("layers", pair) if isinstance(pair, dict) else pair
        return {"pairs": pairs}

    def data(self) -> dict[str, Any]:
        """The part of the file's format this type reads."""
        return {
            "pairs": {
                f"{a}-{b}": {"layers": {n: m.model_dump() for n, m in layers.items()}}
                for (a, b), layers in self.pairs.items()
            }
        }


class TopRates(Fields):
    """Top-1 and top-5 rates of the partners, of random partners, and chance (`response_rates`),
    averaged over directions."""

    n: float  # maps per direction (mean)
    top1: Real
    top1_low: Real  # 95% interval, resampling seeds
    top1_high: Real
    top5: Real
    top5_low: Real
    top5_high: Real
    top1_random: Real  # the exact mean over every live map as the partner (chance, but ties)
    top5_random: Real
    top1_chance: Real
    top5_chance: Real


class PixelSimilarity(Fields):
    partners: Real
    others: Real
    n_partner_pairs: float


class ResponseSummary(Record):
    """The OIP response study in numbers (`artifacts/oip_compare/metrics.json`): rates over every
    match and over the partnered ones; pixel similarity of partners against other pairs."""

    FILE: ClassVar[str] = METRICS
    STAGE: ClassVar[str] = "oip_compare"
    WHAT: ClassVar[str] = "OIP response summary"

    all: TopRates | None = None
    partnered: TopRates | None = None
    pixels: PixelSimilarity | None = None

    def data(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
