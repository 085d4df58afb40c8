"""Typed schema of the composed configuration, and its validation.

`conf/` is the single source of truth. It is composed either by DVC (into `params.yaml`, which
stages read under `dvc repro`) or by Hydra (for `-m` sweeps). Either way the composed tree is merged
into the dataclasses below at stage start, so a typo or a wrong type fails in the first second with
the key's name, and `validate` then checks ranges and registry names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from oiplab.errors import OiplabError

# Registries of pluggable names: an unknown name fails with the list of valid ones.
DATASETS = ("mnist", "fashion_mnist", "synthetic")
DATA_SOURCES = ("auto", "package", "idx_dir", "keras", "synthetic")
LR_SCHEDULES = ("constant", "cosine", "exponential")
JIT_CHOICES = ("auto", "on", "off")
GROUP_KINDS = ("clear", "ambiguous")
OBJECTIVES = ("channel", "neuron")
PRECURSOR_TARGETS = ("silent", "all")
# Layer names of the articles' CNN (oiplab.model builds them), in forward order.
ANALYSED_LAYERS = (
    "Conv2D_1",
    "Max_Pool_1",
    "Conv2D_2",
    "Max_Pool_2",
    "Conv2D_3",
    "Dense_1",
    "Dense_2",
)


class ConfigError(OiplabError, ValueError):
    """A composed configuration value is missing, of the wrong type or out of range."""


@dataclass
class DataConfig:
    name: str = "mnist"
    # Where the raw arrays come from; `auto` tries the offline sources in order (see oiplab.data).
    source: str = "auto"
    # A folder holding the four canonical IDX .gz files (source=idx_dir, or tried first by auto).
    idx_dir: str | None = None
    # Allow `auto` to fall back to the Keras web download (off: the project runs offline).
    allow_download: bool = False
    # Only for name=synthetic: sizes and generator seed of the tiny stand-in data set.
    n_train: int = 0
    n_test: int = 0
    synthetic_seed: int = 0


@dataclass
class ModelConfig:
    # The articles' CNN (part VI summary): three 3x3 valid convolutions, two 2x2 max pools.
    filters: list[int] = field(default_factory=lambda: [32, 64, 128])
    kernel_size: int = 3
    dense_units: int = 100
    n_classes: int = 10
    input_shape: list[int] = field(default_factory=lambda: [28, 28, 1])


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    # L2 penalty on every kernel (the articles' part III regularizer).
    l2: float = 5e-4
    lr_schedule: str = "cosine"
    # For lr_schedule=exponential: factor applied to the learning rate per epoch.
    lr_decay_per_epoch: float = 0.5
    # Linear warm-up over this many optimizer steps (0: none).
    warmup_steps: int = 0
    steps_per_execution: int = 1
    # XLA: `auto` lets Keras decide per backend (off for TensorFlow on CPU, where it is slower).
    jit_compile: str = "auto"
    eval_batch_size: int = 1000


@dataclass
class GroupConfig:
    """A group of test images selected by rule (see oiplab.analysis.selection)."""

    name: str = "group"
    kind: str = "clear"  # clear | ambiguous
    true_class: int = 0
    count: int = 3
    other_class: int | None = None  # ambiguous: the class these images resemble
    indices: list[int] = field(default_factory=list)  # explicit test indices instead of the rule


@dataclass
class CommonPatternConfig:
    # An element is active when above threshold x the image's maximum in that layer.
    threshold: float = 0.5
    layers: list[str] = field(default_factory=lambda: ["Conv2D_3", "Dense_1"])
    # Pairs [group, other group]: elements active in all of `group` and in none of `other`.
    comparisons: list[list[str]] = field(default_factory=list)


@dataclass
class ActivationsConfig:
    groups: list[GroupConfig] = field(default_factory=list)
    layers: list[str] = field(default_factory=lambda: list(ANALYSED_LAYERS))
    colormap: str = "jet"
    standardize_maps: bool = False  # per-map standardization before display
    contrast: float = 1.0  # > 1 saturates the top of the colour scale to show weak activity
    tiles_per_row: int = 8
    common: CommonPatternConfig = field(default_factory=CommonPatternConfig)


@dataclass
class OipConfig:
    """Gradient ascent on the input for every map of one layer (articles VII to IX)."""

    layer: str = "Conv2D_3"
    maps: list[int] = field(default_factory=list)  # empty: every map of the layer
    n_starts: int = 8  # start images per map
    objective: str = "channel"  # channel (mean of the map) | neuron (one position)
    neuron_position: list[int] = field(default_factory=list)  # [row, col]; empty: map centre
    grids: list[int] = field(default_factory=lambda: [3, 7, 14, 28])
    weights: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.0, 0.0])
    smoothing: float = 0.0  # Gaussian sigma (pixels) applied to the start images
    start_seed: int = 0  # the same starts for every model seed, so seeds are comparable
    epsilon: float = 0.01
    n_epochs: int = 600
    conv_criterion: float = 2e-4
    stop_on_convergence: bool = True
    n_snapshots: int = 6
    chunk_size: int = 1024
    evolution_maps: int = 4  # evolution strips for this many maps (the strongest OIPs)


@dataclass
class PrecursorConfig:
    """Coarse-pattern search for maps the oip stage left silent (article X); layer = oip.layer."""

    target: str = "silent"  # silent: the maps the oip stage left silent | all: every map
    maps: list[int] = field(default_factory=list)  # explicit maps instead of `target`
    grid: int = 3  # cells per side of the coarse grid
    values: list[float] = field(default_factory=lambda: [0.2, 0.5, 0.8])  # grey levels, [0,1]
    screen_steps: int = 10
    top_k: int = 8
    full_steps: int = 1200
    prune: bool = True  # the exact shortcut (ReLU layers only)
    chunk_size: int = 4096


@dataclass
class CompareConfig:
    """Matching maps across seeds (Li et al. 2016; Kornblith et al. 2019; Ainsworth et al. 2023)."""

    probe_images: int = 1000  # the first N test images
    # Hidden layers only: Dense_2's nodes are the classes, already in the same order.
    layers: list[str] = field(default_factory=lambda: list(ANALYSED_LAYERS[:-1]))
    baseline_seed: int = 10_000  # an untrained network of the same architecture, for chance
    interpolation_points: int = 11
    interpolation_images: int = 2000
    oip_pairs_shown: int = 8  # best and worst matched pairs in the OIP gallery


@dataclass
class TrackingConfig:
    # MLflow tracking URI; MLFLOW_TRACKING_URI in the environment wins (a shared server).
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "oiplab"
    enabled: bool = True


@dataclass
class PathsConfig:
    prepared: str = "data/prepared"
    models: str = "models"
    metrics: str = "metrics"
    artifacts: str = "artifacts"
    reports: str = "reports"
    checkpoints: str = ".checkpoints"  # per-epoch training state for resuming (scratch)


@dataclass
class Config:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    oip: OipConfig = field(default_factory=OipConfig)
    precursor: PrecursorConfig = field(default_factory=PrecursorConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def to_typed(raw: DictConfig | dict[str, Any]) -> Config:
    """Merge a composed config into the schema and validate it.

    Raises:
        ConfigError: naming the offending key and what was expected.
    """
    if not isinstance(raw, DictConfig):
        raw = OmegaConf.create(raw)
    raw = OmegaConf.masked_copy(raw, [k for k in raw if k != "hydra"]) if "hydra" in raw else raw
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"config key '{key}': {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    validate(cfg)
    return cfg


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': expected {expected}, got {value!r}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, key, "one of " + ", ".join(choices), value)


def validate(cfg: Config) -> None:
    """Check ranges and registry names of a typed config; raise ConfigError on the first problem."""
    _check(len(cfg.seeds) > 0, "seeds", "a non-empty list of seeds", cfg.seeds)
    _check(len(set(cfg.seeds)) == len(cfg.seeds), "seeds", "distinct seeds", cfg.seeds)
    _check(all(s >= 0 for s in cfg.seeds), "seeds", "seeds >= 0", cfg.seeds)

    d = cfg.data
    _check_choice("data.name", d.name, DATASETS)
    _check_choice("data.source", d.source, DATA_SOURCES)
    if d.name == "synthetic":
        _check(d.n_train >= 10, "data.n_train", "an integer >= 10 for synthetic data", d.n_train)
        _check(d.n_test >= 10, "data.n_test", "an integer >= 10 for synthetic data", d.n_test)
    if d.source == "idx_dir":
        _check(bool(d.idx_dir), "data.idx_dir", "a folder path when data.source=idx_dir", d.idx_dir)

    m = cfg.model
    _check(
        len(m.filters) == 3 and all(f >= 1 for f in m.filters),
        "model.filters",
        "three positive filter counts (Conv2D_1..Conv2D_3)",
        m.filters,
    )
    _check(
        m.kernel_size in (1, 2, 3), "model.kernel_size", "1, 2 or 3 (28x28 inputs)", m.kernel_size
    )
    _check(m.dense_units >= 1, "model.dense_units", "an integer >= 1", m.dense_units)
    _check(m.n_classes >= 2, "model.n_classes", "an integer >= 2", m.n_classes)
    _check(len(m.input_shape) == 3, "model.input_shape", "[height, width, channels]", m.input_shape)

    t = cfg.train
    _check(t.seed >= 0, "train.seed", "an integer >= 0", t.seed)
    _check(t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    _check(t.batch_size >= 1, "train.batch_size", "an integer >= 1", t.batch_size)
    _check(t.learning_rate > 0, "train.learning_rate", "a number > 0", t.learning_rate)
    _check(0 <= t.momentum < 1, "train.momentum", "a number in [0, 1)", t.momentum)
    _check(t.l2 >= 0, "train.l2", "a number >= 0", t.l2)
    _check_choice("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    _check(
        0 < t.lr_decay_per_epoch <= 1,
        "train.lr_decay_per_epoch",
        "a number in (0, 1]",
        t.lr_decay_per_epoch,
    )
    _check(t.warmup_steps >= 0, "train.warmup_steps", "an integer >= 0", t.warmup_steps)
    _check(
        t.steps_per_execution >= 1,
        "train.steps_per_execution",
        "an integer >= 1",
        t.steps_per_execution,
    )
    _check_choice("train.jit_compile", t.jit_compile, JIT_CHOICES)
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", "an integer >= 1", t.eval_batch_size)

    _validate_activations(cfg.activations, m.n_classes)
    _validate_oip(cfg.oip, m)
    _validate_precursor(cfg.precursor, layer_grid(m, cfg.oip.layer)[2])
    _validate_compare(cfg.compare, cfg.seeds)
    _check(
        bool(cfg.tracking.experiment),
        "tracking.experiment",
        "a non-empty name",
        cfg.tracking.experiment,
    )


def _check_layers(key: str, names: list[str]) -> None:
    unknown = [n for n in names if n not in ANALYSED_LAYERS]
    _check(not unknown, key, "layer names from " + ", ".join(ANALYSED_LAYERS), unknown or names)


def _validate_activations(a: ActivationsConfig, n_classes: int) -> None:
    names = [g.name for g in a.groups]
    _check(len(names) == len(set(names)), "activations.groups", "distinct group names", names)
    for i, g in enumerate(a.groups):
        key = f"activations.groups[{i}]"
        _check_choice(f"{key}.kind", g.kind, GROUP_KINDS)
        _check(
            0 <= g.true_class < n_classes,
            f"{key}.true_class",
            f"a class in 0..{n_classes - 1}",
            g.true_class,
        )
        _check(g.count >= 1 or bool(g.indices), f"{key}.count", "an integer >= 1", g.count)
        if g.kind == "ambiguous" and not g.indices:
            _check(
                g.other_class is not None
                and 0 <= g.other_class < n_classes
                and g.other_class != g.true_class,
                f"{key}.other_class",
                "a class other than true_class",
                g.other_class,
            )
    _check_layers("activations.layers", a.layers)
    _check_layers("activations.common.layers", a.common.layers)
    _check(
        0 < a.common.threshold < 1,
        "activations.common.threshold",
        "a number in (0, 1)",
        a.common.threshold,
    )
    for pair in a.common.comparisons:
        _check(
            len(pair) == 2 and all(p in names for p in pair) and pair[0] != pair[1],
            "activations.common.comparisons",
            "pairs of two different group names from " + ", ".join(names),
            pair,
        )
    _check(a.contrast >= 1, "activations.contrast", "a number >= 1", a.contrast)
    _check(a.tiles_per_row >= 1, "activations.tiles_per_row", "an integer >= 1", a.tiles_per_row)


def layer_grid(m: ModelConfig, layer: str) -> tuple[int, int, int]:
    """(height, width, n_maps) of a layer's output for model config `m` (dense: (1, 1, n))."""
    size, k = m.input_shape[0], m.kernel_size
    sizes = {}
    for i, name in enumerate(("Conv2D_1", "Conv2D_2", "Conv2D_3")):
        size = size - k + 1
        sizes[name] = (size, size, m.filters[i])
        if i < 2:
            size //= 2
            sizes[f"Max_Pool_{i + 1}"] = (size, size, m.filters[i])
    sizes["Dense_1"] = (1, 1, m.dense_units)
    sizes["Dense_2"] = (1, 1, m.n_classes)
    return sizes[layer]


def _validate_oip(o: OipConfig, m: ModelConfig) -> None:
    _check_layers("oip.layer", [o.layer])
    h, w, n_maps = layer_grid(m, o.layer)
    bad = [i for i in o.maps if not 0 <= i < n_maps]
    _check(
        not bad,
        "oip.maps",
        f"map indices in 0..{n_maps - 1} for {o.layer} (or [] for all)",
        bad or o.maps,
    )
    _check(o.n_starts >= 1, "oip.n_starts", "an integer >= 1", o.n_starts)
    _check_choice("oip.objective", o.objective, OBJECTIVES)
    if o.neuron_position:
        _check(
            len(o.neuron_position) == 2
            and 0 <= o.neuron_position[0] < h
            and 0 <= o.neuron_position[1] < w,
            "oip.neuron_position",
            f"[row, col] inside the {h}x{w} map of {o.layer}",
            o.neuron_position,
        )
    _check(
        len(o.grids) == len(o.weights) and len(o.grids) > 0,
        "oip.weights",
        f"one weight per grid size ({len(o.grids)} grids)",
        o.weights,
    )
    _check(all(1 <= g <= 28 for g in o.grids), "oip.grids", "grid sizes in 1..28", o.grids)
    _check(
        all(v >= 0 for v in o.weights) and sum(o.weights) > 0,
        "oip.weights",
        "non-negative weights, not all zero",
        o.weights,
    )
    _check(o.smoothing >= 0, "oip.smoothing", "a number >= 0", o.smoothing)
    _check(o.epsilon > 0, "oip.epsilon", "a number > 0", o.epsilon)
    _check(o.n_epochs >= 1, "oip.n_epochs", "an integer >= 1", o.n_epochs)
    _check(o.conv_criterion >= 0, "oip.conv_criterion", "a number >= 0", o.conv_criterion)
    _check(o.n_snapshots >= 0, "oip.n_snapshots", "an integer >= 0", o.n_snapshots)
    _check(o.chunk_size >= 1, "oip.chunk_size", "an integer >= 1", o.chunk_size)
    _check(o.evolution_maps >= 0, "oip.evolution_maps", "an integer >= 0", o.evolution_maps)


def _validate_precursor(p: PrecursorConfig, n_maps: int) -> None:
    _check_choice("precursor.target", p.target, PRECURSOR_TARGETS)
    bad = [i for i in p.maps if not 0 <= i < n_maps]
    _check(not bad, "precursor.maps", f"map indices in 0..{n_maps - 1} (or [])", bad or p.maps)
    _check(1 <= p.grid <= 28, "precursor.grid", "cells per side in 1..28", p.grid)
    _check(
        len(p.values) >= 2 and all(0 <= v <= 1 for v in p.values),
        "precursor.values",
        "two or more grey levels in [0, 1]",
        p.values,
    )
    _check(
        len(p.values) ** (p.grid * p.grid) <= 5_000_000,
        "precursor.grid",
        "at most 5,000,000 candidates (len(values) ** (grid * grid))",
        f"{len(p.values)}**{p.grid * p.grid}",
    )
    _check(p.screen_steps >= 1, "precursor.screen_steps", "an integer >= 1", p.screen_steps)
    _check(p.top_k >= 1, "precursor.top_k", "an integer >= 1", p.top_k)
    _check(p.full_steps >= 1, "precursor.full_steps", "an integer >= 1", p.full_steps)
    _check(p.chunk_size >= 1, "precursor.chunk_size", "an integer >= 1", p.chunk_size)


def _validate_compare(c: CompareConfig, seeds: list[int]) -> None:
    _check(c.probe_images >= 10, "compare.probe_images", "an integer >= 10", c.probe_images)
    _check_layers("compare.layers", c.layers)
    _check(
        "Dense_2" not in c.layers, "compare.layers", "hidden layers only (not Dense_2)", c.layers
    )
    _check(
        c.baseline_seed not in seeds,
        "compare.baseline_seed",
        "a seed not in `seeds`",
        c.baseline_seed,
    )
    _check(
        c.interpolation_points >= 2,
        "compare.interpolation_points",
        "an integer >= 2",
        c.interpolation_points,
    )
    _check(
        c.interpolation_images >= 10,
        "compare.interpolation_images",
        "an integer >= 10",
        c.interpolation_images,
    )
    _check(c.oip_pairs_shown >= 0, "compare.oip_pairs_shown", "an integer >= 0", c.oip_pairs_shown)


def tracking_uri(cfg: Config) -> str:
    """The MLflow URI in force: MLFLOW_TRACKING_URI from the environment, else the config's."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri


def project_root() -> Path:
    """The folder holding `conf/` and `dvc.yaml`: the working directory stages are run from."""
    return Path.cwd()
