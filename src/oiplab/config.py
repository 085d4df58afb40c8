"""Schema of the composed configuration, and its validation.

`conf/` is the only source of values: it is composed by DVC or `python -m oiplab.params` into
`params.yaml` (which stages read), or by Hydra for `-m` sweeps. The schema below has no defaults of
its own, so a key missing from the composed tree is an error naming it, never a silent fallback.
Types, ranges and the valid names of choice fields are declared on the fields (pydantic); the few
checks that relate several keys are in `validate`. Every failure is one line naming the key, the
value and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oiplab.credentials import has_password
from oiplab.errors import OiplabError
from oiplab.model import LAYERS, MATCHED, ModelConfig, layer_shapes


class ConfigError(OiplabError, ValueError):
    """A composed configuration value is missing, of the wrong type or out of range."""


Count = Annotated[int, Field(ge=1)]
Index = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
if TYPE_CHECKING:  # mypy reads no Literal built from a tuple; pydantic does, and names them
    LayerName = str
    MatchedLayer = str
else:
    LayerName = Literal[LAYERS]
    MatchedLayer = Literal[MATCHED]


class Section(BaseModel):
    # strict: "5" is not an integer; extra="forbid": a misspelt key is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class DataConfig(Section):
    name: Literal["mnist", "fashion_mnist", "synthetic"]
    source: Literal["auto", "package", "idx_dir", "keras", "synthetic"]
    idx_dir: str | None
    allow_download: bool
    n_train: Index
    n_test: Index
    synthetic_seed: Index


class TrainConfig(Section):
    seed: Index
    init_seed: Index | None
    data_seed: Index | None
    trajectory_every: Index
    # trajectory.npz keeps the weights of every epoch (0.84 MB each with the articles' sizes):
    # 1,000 epochs are 840 MB, the articles train for tens; beyond, the schedule's step count
    # no longer fits a tensor (10**20 was a TensorFlow traceback)
    epochs: Annotated[int, Field(ge=1, le=1000)]
    batch_size: Count
    learning_rate: Positive
    momentum: Annotated[float, Field(ge=0, lt=1)]
    nesterov: bool
    l2: NonNegative
    lr_schedule: Literal["constant", "cosine", "exponential"]
    lr_decay_per_epoch: Annotated[float, Field(gt=0, le=1)]
    warmup_steps: Index
    steps_per_execution: Count
    jit_compile: Literal["auto", "on", "off"]
    eval_batch_size: Count
    precision: Literal["float32", "bfloat16"]


class GroupConfig(Section):
    name: str
    kind: Literal["clear", "ambiguous"]
    true_class: Index
    count: Index
    other_class: Index | None
    indices: list[Index]


class CommonPatternConfig(Section):
    threshold: Fraction
    layers: list[LayerName]
    comparisons: list[Annotated[list[str], Field(min_length=2, max_length=2)]]


class ActivationsConfig(Section):
    groups: list[GroupConfig]
    layers: list[LayerName]
    colormap: str
    standardize_maps: bool
    contrast: Annotated[float, Field(ge=1)]
    tiles_per_row: Count
    common: CommonPatternConfig


class OipConfig(Section):
    layer: LayerName
    maps: list[Index]
    n_starts: Count
    objective: Literal["channel", "neuron"]
    neuron_position: list[Index]
    start_kind: Literal["noise", "dark", "digits"]
    standardize: Literal["images", "start"]
    dark_quantile: Fraction
    grids: Annotated[list[Annotated[int, Field(ge=1, le=28)]], Field(min_length=1)]
    weights: list[NonNegative]
    smoothing: NonNegative
    start_seed: Index
    warmup_steps: Index
    wake_steps: Index
    epsilon: Positive
    n_steps: Count
    convergence_tol: NonNegative
    convergence_window: Count
    stop_on_convergence: bool
    n_snapshots: Index
    chunk_size: Count
    halving_after: Index
    halving_keep: Index
    evolution_maps: Index


class PrecursorConfig(Section):
    target: Literal["silent", "all"]
    maps: list[Index]
    grid: Annotated[int, Field(ge=1, le=28)]
    values: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2)]
    screen_steps: Count
    screen_keep: Index
    top_k: Count
    full_steps: Count
    halving_rungs: list[Count]
    prune: bool
    chunk_size: Count
    rescue_warmup_steps: Index
    rescue_halving_rungs: list[Count]
    probe_images: Count


class CompareConfig(Section):
    probe_images: Annotated[int, Field(ge=10)]
    eval_images: Annotated[int, Field(ge=10)]
    layers: Annotated[list[MatchedLayer], Field(min_length=1)]
    null_networks: Annotated[int, Field(ge=2)]
    null_seed: Index
    partner_quantile: Fraction
    alpha: Fraction
    same_order_fraction: Fraction
    most_fraction: Fraction
    rotation_draws: Annotated[int, Field(ge=1)]
    identity_held_out: Annotated[float, Field(gt=0.0, lt=1.0)]
    tie_tolerance: NonNegative
    permutation_draws: Annotated[int, Field(ge=100)]
    bootstrap_draws: Annotated[int, Field(ge=100)]
    bootstrap_seed: Index
    interpolation_points: Annotated[int, Field(ge=2)]


class AlignmentConfig(Section):
    probe_images: Annotated[int, Field(ge=10)]
    layers: Annotated[list[MatchedLayer], Field(min_length=1)]
    permutation_draws: Annotated[int, Field(ge=100)]
    bootstrap_draws: Annotated[int, Field(ge=100)]


Design = Literal["same_init", "same_order"]


class SplitConfig(Section):
    """The seed-split design (`conf/split/`): networks sharing one of the first seed's two seeds
    (its initialization or its image order); the first seed's own network is the shared one."""

    designs: Annotated[list[Design], Field(min_length=1)]
    members: Annotated[list[Index], Field(min_length=1)]
    design: Design


class TrackingConfig(Section):
    uri: str
    experiment: Annotated[str, Field(min_length=1)]
    enabled: bool
    ui: Annotated[str, Field(pattern=r"^https?://[^/\s]+:\d+/?$")]  # `oiplab ui`'s address
    system_metrics: bool  # sample CPU, memory, disk and network into each stage's run


class PathsConfig(Section):
    prepared: str
    models: str
    metrics: str
    artifacts: str
    reports: str
    checkpoints: str
    split_models: str
    widths: str


class Config(Section):
    study: Annotated[str, Field(min_length=1)]
    seeds: Annotated[list[Index], Field(min_length=1)]
    threads: Annotated[int, Field(ge=1, le=1024)]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    activations: ActivationsConfig
    oip: OipConfig
    precursor: PrecursorConfig
    compare: CompareConfig
    alignment: AlignmentConfig
    split: SplitConfig
    tracking: TrackingConfig
    paths: PathsConfig


def to_typed(raw: DictConfig | dict[str, Any]) -> Config:
    """Check a composed config against the schema and the cross-key rules; return it typed.

    Raises:
        ConfigError: naming the offending key, its value and what was expected.
    """
    if isinstance(raw, DictConfig):
        raw = cast(dict[str, Any], OmegaConf.to_container(raw, resolve=True))
    raw = {k: v for k, v in raw.items() if k != "hydra"}
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0])) from None
    validate(cfg)
    return cfg


def _message(error: Mapping[str, Any]) -> str:
    key, loc = "", error["loc"]
    for i, part in enumerate(loc):
        if isinstance(part, int):
            key += f"[{part}]"
        # pydantic adds type tags ("str", "list[int]") to the path; an unknown key is the last part
        elif part in _field_names() or (error["type"] == "extra_forbidden" and i == len(loc) - 1):
            key += ("." if key else "") + part
    if error["type"] == "missing":
        return (
            f"config key '{key}': missing. Every key comes from conf/; regenerate params.yaml "
            "(`python -m oiplab.params`)"
        )
    if error["type"] == "extra_forbidden":
        return f"config key '{key}': not a known setting (misspelt? see conf/)"
    if error["type"] == "value_error":  # a section's own check: its message names the key
        return str(error["msg"]).removeprefix("Value error, ")
    ctx = error.get("ctx", {})
    expected = {
        "too_short": f"at least {ctx.get('min_length')} item(s)",
        "too_long": f"at most {ctx.get('max_length')} item(s)",
    }.get(error["type"], error["msg"].removeprefix("Input should be "))
    if expected.startswith(("greater", "less")):
        expected = "a number " + expected
    return f"config key '{key}': expected {expected}, got {error['input']!r}"


def _field_names() -> set[str]:
    names: set[str] = set()
    todo: list[Any] = [Config]
    while todo:
        model = todo.pop()
        for name, field in model.model_fields.items():
            names.add(name)
            todo += [t for t in getattr(field.annotation, "__args__", ()) if _is_section(t)]
            todo += [field.annotation] if field.annotation and _is_section(field.annotation) else []
    return names


def _is_section(t: Any) -> bool:
    # BaseModel, not Section: `ModelConfig` lives beside the model, outside this module
    return isinstance(t, type) and issubclass(t, BaseModel)


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': expected {expected}, got {value!r}")


def validate(cfg: Config) -> None:
    """The rules that relate several keys; raise ConfigError on the first one broken."""
    _check(len(set(cfg.seeds)) == len(cfg.seeds), "seeds", "distinct seeds", cfg.seeds)
    # The comparison, the pipeline's answer, needs pairs: fail at the first stage, not the last.
    _check(len(cfg.seeds) >= 2, "seeds", "at least two seeds (compare matches pairs)", cfg.seeds)
    d = cfg.data
    if d.name == "synthetic":
        _check(d.n_train >= 10, "data.n_train", "an integer >= 10 for synthetic data", d.n_train)
        _check(d.n_test >= 10, "data.n_test", "an integer >= 10 for synthetic data", d.n_test)
    if d.source == "idx_dir":
        _check(bool(d.idx_dir), "data.idx_dir", "a folder when data.source=idx_dir", d.idx_dir)
    _validate_activations(cfg.activations, cfg.model.n_classes)
    layer_shape = layer_shapes(cfg.model)[cfg.oip.layer]
    _validate_oip(cfg.oip, layer_shape)
    _validate_precursor(cfg.precursor, layer_shape[2])
    _validate_compare(cfg)
    _validate_split(cfg)
    _validate_tracking(cfg.tracking)
    if d.name == "synthetic":  # other data sets are checked when loaded (`checks.first_images`)
        _validate_image_counts(cfg)


def _validate_image_counts(cfg: Config) -> None:
    """The "first N test images" settings against the synthetic test set's size (a slice would
    silently take fewer while the run records N)."""
    n_test = cfg.data.n_test
    wanted = {
        "precursor.probe_images": cfg.precursor.probe_images,
        "alignment.probe_images": cfg.alignment.probe_images,
    }
    for key, n in wanted.items():
        _check(n <= n_test, key, f"at most data.n_test = {n_test} images", n)
    n_train, n_eval = cfg.data.n_train, cfg.compare.eval_images  # also the first training images
    expected = f"at most data.n_train = {n_train} images"
    _check(n_eval <= n_train, "compare.eval_images", expected, n_eval)
    if cfg.oip.start_kind == "digits":  # drawn from the test set's second half
        expected = f"at most {n_test // 2} digit starts (half of data.n_test)"
        _check(cfg.oip.n_starts <= n_test // 2, "oip.n_starts", expected, cfg.oip.n_starts)


def _validate_split(cfg: Config) -> None:
    """The split design shares the first seed's network: a member with that seed would be it."""
    sp, shared = cfg.split, cfg.seeds[0]
    ok = len(set(sp.members)) == len(sp.members) and shared not in sp.members
    _check(ok, "split.members", f"distinct seeds other than the first seed {shared}", sp.members)
    _check(len(set(sp.designs)) == len(sp.designs), "split.designs", "distinct designs", sp.designs)


def _validate_tracking(t: TrackingConfig) -> None:
    # conf/ and params.yaml are committed, and every run logs its config as parameters
    if has_password(t.uri):
        raise ConfigError(
            "config key 'tracking.uri': holds a password (user:password@); conf/ and "
            "params.yaml are committed and logged: give the URI without it, and the login in "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_URI)"
        )


def _validate_activations(a: ActivationsConfig, n_classes: int) -> None:
    names = [g.name for g in a.groups]
    _check(len(names) == len(set(names)), "activations.groups", "distinct group names", names)
    n = n_classes
    for i, g in enumerate(a.groups):
        key = f"activations.groups[{i}]"
        _check(g.true_class < n, f"{key}.true_class", f"a class in 0..{n - 1}", g.true_class)
        _check(g.count >= 1 or bool(g.indices), f"{key}.count", "an integer >= 1", g.count)
        if g.kind == "ambiguous" and not g.indices:
            ok = g.other_class is not None and g.other_class < n and g.other_class != g.true_class
            _check(ok, f"{key}.other_class", "a class other than true_class", g.other_class)
    for pair in a.common.comparisons:
        ok = all(p in names for p in pair) and pair[0] != pair[1]
        expected = "pairs of two different group names from " + ", ".join(names)
        _check(ok, "activations.common.comparisons", expected, pair)


def _validate_oip(o: OipConfig, layer_shape: tuple[int, int, int]) -> None:
    h, w, n_maps = layer_shape
    bad = [i for i in o.maps if i >= n_maps]
    _check(not bad, "oip.maps", f"map indices in 0..{n_maps - 1} for {o.layer} ([]: all)", bad)
    if o.neuron_position:
        ok = len(o.neuron_position) == 2 and o.neuron_position[0] < h and o.neuron_position[1] < w
        expected = f"[row, col] inside the {h}x{w} map of {o.layer}"
        _check(ok, "oip.neuron_position", expected, o.neuron_position)
    _check(len(o.weights) == len(o.grids), "oip.weights", "one weight per grid size", o.weights)
    _check(sum(o.weights) > 0, "oip.weights", "weights not all zero", o.weights)
    if o.halving_after:
        expected = (
            f"1..oip.n_starts = {o.n_starts} starts kept (or oip.halving_after=0: no halving)"
        )
        _check(1 <= o.halving_keep <= o.n_starts, "oip.halving_keep", expected, o.halving_keep)
        expected = "0 with oip.warmup_steps > 0 (the warm-up ascent does not halve)"
        _check(not o.warmup_steps, "oip.halving_after", expected, o.halving_after)


def _validate_precursor(p: PrecursorConfig, n_maps: int) -> None:
    """`n_maps`: of the OIP layer, the one the precursor search works on."""
    bad = [i for i in p.maps if i >= n_maps]
    _check(not bad, "precursor.maps", f"map indices in 0..{n_maps - 1} ([]: by target)", bad)
    n_candidates = len(p.values) ** (p.grid * p.grid)
    expected = "at most 5,000,000 candidates (len(values) ** (grid * grid))"
    _check(n_candidates <= 5_000_000, "precursor.grid", expected, f"{len(p.values)}**{p.grid**2}")
    expected = f"0 (screen all) or at least precursor.top_k = {p.top_k} candidates"
    _check(
        p.screen_keep == 0 or p.screen_keep >= p.top_k,
        "precursor.screen_keep",
        expected,
        p.screen_keep,
    )
    # A rung at or past its ascent's length is never reached (oip.rungs), so shortening
    # full_steps or oip.n_steps alone stays valid.
    for key in ("halving_rungs", "rescue_halving_rungs"):
        rungs = getattr(p, key)
        expected = "strictly increasing steps ([]: none)"
        _check(rungs == sorted(set(rungs)), f"precursor.{key}", expected, rungs)


def _validate_compare(cfg: Config) -> None:
    c, d = cfg.compare, cfg.data
    nulls = set(range(c.null_seed, c.null_seed + c.null_networks))
    last = c.null_seed + c.null_networks - 1
    expected = f"null networks' seeds {c.null_seed}..{last} apart from `seeds`"
    _check(not nulls & set(cfg.seeds), "compare.null_seed", expected, c.null_seed)
    if d.name == "synthetic":
        needed = c.probe_images + c.eval_images
        expected = f"probe + evaluation images ({needed}) <= data.n_test"
        _check(needed <= d.n_test, "compare.eval_images", expected, c.eval_images)
