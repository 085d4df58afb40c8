"""Train the CNN: SGD with momentum, an L2 penalty (in the model) and a learning-rate schedule, in
one Keras `fit` that a killed job resumes exactly, keeping the weights along the way.

The articles' part III names these three ingredients without values; ours are in
`conf/train/default.yaml` and documented in README.

Two seeds drive a training: `init_seed` the initial weights, `data_seed` the order of the images
(epoch e's order is a function of (data_seed, e) alone, so a resumed run sees exactly the batches
an uninterrupted one would). Both default to the run's `seed`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import model_validator

from oiplab.backend import backend_name, jit_compile_arg, seed_everything
from oiplab.checks import non_finite_weights
from oiplab.config import TrainConfig
from oiplab.errors import OiplabError
from oiplab.io import Finite, InputError, Record, atomic_dir, load_npz, to_json
from oiplab.layout import METRICS, TrainFiles
from oiplab.model import ModelConfig, build_model, cross_entropy_and_accuracy
from oiplab.stops import raise_if_interrupted

if TYPE_CHECKING:
    import keras

    from oiplab.data.prepared import PreparedData

CHECKPOINT_MODEL = "model.keras"
CHECKPOINT_STATE = "state.json"
CHECKPOINT_TRAJECTORY = "trajectory.npz"

log = logging.getLogger(__name__)


def init_seed(cfg: TrainConfig) -> int:
    return cfg.init_seed if cfg.init_seed is not None else cfg.seed


def data_seed(cfg: TrainConfig) -> int:
    return cfg.data_seed if cfg.data_seed is not None else cfg.seed


# The seed a split design shares with the shared network: "same_init" shares the initial weights,
# "same_order" the order of the training images; the member's own seed drives the other.
SHARED_BY_DESIGN = {"same_init": "init_seed", "same_order": "data_seed"}


def split_member(cfg: TrainConfig, design: str, shared_seed: int, member: int) -> TrainConfig:
    """The training settings of seed `member` of split design `design` (`conf/split/`)."""
    return cfg.model_copy(update={"seed": member, SHARED_BY_DESIGN[design]: shared_seed})


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    """The learning rate (a float or a Keras schedule) named by `cfg.lr_schedule`."""
    import keras

    total = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_steps, max(total - 1, 0))
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0,
                decay_steps=total - warmup,
                warmup_target=cfg.learning_rate,
                warmup_steps=warmup,
            )
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total)
    # exponential (the schema allows no other name)
    return keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate,
        decay_steps=steps_per_epoch,
        decay_rate=cfg.lr_decay_per_epoch,
        staircase=True,
    )


# Keras' dtype policy per `train.precision`: "mixed_bfloat16" computes in bfloat16 and keeps the
# weights (and the optimizer's state) in float32
PRECISION_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Build layers inside with the dtype policy of `precision`; the global policy is restored
    after, so that models built later (the comparison's untrained networks) stay float32."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICY[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def float32_copy(model: keras.Model, model_cfg: ModelConfig, l2: float) -> keras.Model:
    """`model` (trained in mixed precision) as a float32 network with the same float32 weights:
    what the train stage saves, so that every later stage computes in float32 whatever the
    training's precision."""
    with precision_policy("float32"):
        copy = build_model(model_cfg, l2=l2)
    copy.set_weights(model.get_weights())
    return copy


def compile_model(model, cfg: TrainConfig, n_train: int) -> None:
    import keras

    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    optimizer = keras.optimizers.SGD(
        learning_rate(cfg, steps_per_epoch), momentum=cfg.momentum, nesterov=cfg.nesterov
    )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=cfg.steps_per_execution,
        jit_compile=jit_compile_arg(cfg.jit_compile),
    )


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training images' order in `epoch`: a function of (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """A Keras input whose epoch e serves the images in `epoch_order(seed, e)`, and the callback
    that tells it which epoch the `fit` is in (so one `fit` sees every epoch's order, from
    whatever epoch it starts).

    TensorFlow reads a tf.data pipeline (a `PyDataset`, a Python call per batch, measured 2-3%
    of a fit's CPU seconds over arrays); other backends the `PyDataset`.
    Both serve the same batches, so the weights are the same to the last bit."""
    import keras

    if backend_name() == "tensorflow":
        dataset, set_epoch = _tf_epoch_ordered(x, y, batch_size, seed)
    else:
        dataset = _py_epoch_ordered(x, y, batch_size, seed)
        set_epoch = dataset.set_epoch

    class FollowEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            raise_if_interrupted()  # a stop request whose exception Python swallowed
            set_epoch(epoch)  # before the epoch's first batch is read

    return dataset, FollowEpochs()


def _tf_epoch_ordered(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """(tf.data dataset, set_epoch): Keras iterates the dataset afresh each epoch (it knows its
    length, so no execution of `steps_per_execution` batches reads into the next epoch), and
    each iteration reads the order that `set_epoch` last stored."""
    import tensorflow as tf

    order = tf.Variable(epoch_order(seed, 0, len(y)), trainable=False)
    images, labels = tf.constant(x), tf.constant(y)

    def batches(_):
        return tf.data.Dataset.from_tensor_slices(order.read_value()).batch(batch_size)

    dataset = (
        tf.data.Dataset.from_tensors(0)
        .flat_map(batches)
        .map(lambda rows: (tf.gather(images, rows), tf.gather(labels, rows)))
        .apply(tf.data.experimental.assert_cardinality(math.ceil(len(y) / batch_size)))
        .prefetch(2)
    )
    return dataset, lambda epoch: order.assign(epoch_order(seed, epoch, len(y)))


def _py_epoch_ordered(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    import keras

    class EpochOrdered(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.set_epoch(0)

        def set_epoch(self, epoch: int) -> None:
            self.epoch, self.order = epoch, epoch_order(seed, epoch, len(y))

        @property
        def num_batches(self) -> int:
            return math.ceil(len(y) / batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            return x[rows], y[rows]

    return EpochOrdered()


@dataclass
class Trajectory:
    """The weights along training: at the start, every `every` batches of the first epoch, and
    at the end of every epoch (for the alignment-over-training study)."""

    steps: list[int] = field(default_factory=list)  # optimizer steps taken at each snapshot
    weights: list[list[np.ndarray]] = field(default_factory=list)

    def add(self, step: int, weights: list[np.ndarray]) -> None:
        self.steps.append(int(step))
        self.weights.append([np.array(w, copy=True) for w in weights])

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            f"w{k}": np.stack([w[k] for w in self.weights]) for k in range(len(self.weights[0]))
        }
        np.savez(path, steps=np.asarray(self.steps, dtype=np.int64), **arrays)

    @classmethod
    def load(cls, path: Path) -> Trajectory:
        with np.load(path) as arrays:
            return cls._of({k: arrays[k] for k in arrays.files})

    @classmethod
    def _of(cls, arrays: dict[str, np.ndarray]) -> Trajectory:
        n = len([k for k in arrays if k.startswith("w")])
        stacked = [arrays[f"w{k}"] for k in range(n)]
        steps = arrays["steps"].tolist()
        return cls(steps, [[w[i] for w in stacked] for i in range(len(steps))])

    @classmethod
    def load_checked(cls, path: Path) -> Trajectory:
        """Load a stage output: a missing or unreadable file, an object array (never unpickled),
        a missing array or a weight that is not finite is an error naming the file."""
        arrays = load_npz(path, None, "weight trajectory", "train")
        n = len([k for k in arrays if k.startswith("w")])
        missing = [k for k in ("steps", "w0", *(f"w{i}" for i in range(n))) if k not in arrays]
        if missing:
            raise InputError(f"{path}: weight trajectory lacks array(s) {', '.join(missing)}")
        return cls._of(arrays)

    @staticmethod
    def common_steps(trajectories: dict[int, Trajectory]) -> list[int]:
        """The snapshot steps every seed shares (they are equal when trained alike)."""
        steps = {seed: t.steps for seed, t in trajectories.items()}
        first = next(iter(steps.values()))
        if any(s != first for s in steps.values()):
            raise InputError(f"the seeds' weight trajectories differ in their snapshots: {steps}")
        return first


class CheckpointError(ValueError):
    """A checkpoint folder is torn, inconsistent or unreadable (it is then discarded)."""


def save_checkpoint(folder: Path, model, state: dict, trajectory: Trajectory) -> None:
    """Write model (with optimizer), state and trajectory as one folder, swapped in atomically:
    a kill at any moment leaves either the previous checkpoint or this one, never a mix."""
    with atomic_dir(folder) as tmp:
        model.save(tmp / CHECKPOINT_MODEL)
        trajectory.save(tmp / CHECKPOINT_TRAJECTORY)
        (tmp / CHECKPOINT_STATE).write_text(to_json(state))


def load_checkpoint(folder: Path, fingerprint: str, epochs: int):
    """(compiled model, state, trajectory) from `folder`, validated.

    Raises:
        CheckpointError: a file is missing or unreadable, or the parts do not agree.
    """
    import keras

    try:
        state = json.loads((folder / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        done = int(state["epochs_done"])
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError("it belongs to other settings")
        if not 1 <= done <= epochs or any(len(v) != done for v in state["history"].values()):
            raise CheckpointError(f"its state says {done} epochs with a history that disagrees")
        trajectory = Trajectory.load(folder / CHECKPOINT_TRAJECTORY)
        if len(trajectory.steps) != state["snapshots"]:
            raise CheckpointError("its trajectory does not match its state")
        model = keras.saving.load_model(folder / CHECKPOINT_MODEL, compile=True, safe_mode=True)
    except CheckpointError:
        raise
    except Exception as exc:  # a missing or truncated file: many exception types
        raise CheckpointError(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from exc
    if int(model.optimizer.iterations.numpy()) != state["optimizer_steps"]:
        raise CheckpointError("its model's optimizer step count disagrees with its state")
    return model, state, trajectory


def checkpoint_fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, data_sha: str) -> str:
    """A digest of the settings a checkpoint belongs to: one of other settings is never resumed."""
    settings = json.dumps(
        [model_cfg.model_dump(), train_cfg.model_dump(), data_sha], sort_keys=True
    )
    return hashlib.sha256(settings.encode()).hexdigest()[:12]


class TrainMetrics(Record):
    """A trained seed's numbers (`models/seed_N/metrics.json`)."""

    FILE: ClassVar[str] = METRICS
    STAGE: ClassVar[str] = "train"
    WHAT: ClassVar[str] = "training metrics"

    seed: int
    test_accuracy: float
    test_loss: float
    train_seconds: float
    images_per_second: float
    epochs: int
    n_params: int


class History(Record):
    """A trained seed's learning curves: one value per epoch of each Keras metric, in the order
    Keras logged them (`models/seed_N/history.json`, a plain {metric: [values]} object)."""

    FILE: ClassVar[str] = TrainFiles.history
    STAGE: ClassVar[str] = "train"
    WHAT: ClassVar[str] = "training history"

    curves: dict[str, list[Finite]]  # a diverged training is never saved: every value a number

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return {"curves": data} if isinstance(data, dict) and "curves" not in data else data

    def data(self) -> dict[str, list[float]]:
        return self.curves


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    confusion: np.ndarray  # (n_classes, n_classes) test-set counts, rows: true class
    trajectory: Trajectory
    resumed_from: dict | None  # the state of the checkpoint this run resumed, if any


@dataclass(frozen=True)
class Checkpointing:
    """Where a training keeps its per-epoch checkpoint, and what each one records."""

    folder: Path | None  # None: no checkpoints, nothing to resume
    fingerprint: str = ""  # `checkpoint_fingerprint` of the settings; another one is not resumed
    run_id: str | None = None  # the tracking run training; a resumed job closes it as KILLED


def _resume(checkpoint: Path | None, fingerprint: str, epochs: int) -> Any:
    """The checkpoint to resume, or None (a bad one is discarded with a one-line message)."""
    if checkpoint is None or not checkpoint.exists():
        return None
    try:
        return load_checkpoint(checkpoint, fingerprint, epochs)
    except CheckpointError as exc:
        log.info(f"discarding checkpoint {checkpoint} ({exc}); starting from epoch 0")
        shutil.rmtree(checkpoint, ignore_errors=True)
        return None


@dataclass
class _Start:
    """Where a training starts: a fresh model at epoch 0, or a resumed checkpoint's."""

    model: keras.Model
    history: dict[str, list[float]]  # per epoch done, appended to as training goes on
    trajectory: Trajectory  # appended to as training goes on
    epoch: int  # epochs already done
    resumed: dict | None  # the resumed checkpoint's state


def _start(
    model_cfg: ModelConfig, cfg: TrainConfig, n_train: int, checkpointing: Checkpointing
) -> _Start:
    """Resume the checkpoint if it is valid, else build and compile a fresh model."""
    found = _resume(checkpointing.folder, checkpointing.fingerprint, cfg.epochs)
    seed_everything(init_seed(cfg))  # the initialization, and deterministic kernels either way
    if found is None:
        with precision_policy(cfg.precision):
            model = build_model(model_cfg, l2=cfg.l2)
        compile_model(model, cfg, n_train=n_train)
        trajectory = Trajectory()
        trajectory.add(0, model.get_weights())
        return _Start(model, {}, trajectory, 0, None)
    model, resumed, trajectory = found
    log.info(f"resuming from {checkpointing.folder} after epoch {resumed['epochs_done']}")
    # a copy: `resumed` keeps describing the checkpoint (its epochs are replayed to MLflow)
    history = {key: list(values) for key, values in resumed["history"].items()}
    return _Start(model, history, trajectory, resumed["epochs_done"], resumed)


def _first_epoch_snapshots(
    cfg: TrainConfig, trajectory: Trajectory, steps_per_epoch: int, verbose: int
) -> keras.callbacks.Callback:
    """A callback adding the weights every `trajectory_every` batches of the first epoch to
    `trajectory`. (A batch-level hook makes Keras wait for every batch, so it only takes part in
    epoch 1.)"""
    import keras

    class Snapshots(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            # Keras heads an epoch only when fit() runs more than one; this fit runs epoch 1 alone
            if verbose and cfg.epochs > 1:
                print(f"Epoch 1/{cfg.epochs}")

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            step = int(self.model.optimizer.iterations.numpy())
            every = cfg.trajectory_every
            # crossing a multiple of `every` (steps_per_execution may step over it)
            if step < steps_per_epoch and step // every > trajectory.steps[-1] // every:
                trajectory.add(step, self.model.get_weights())

    return Snapshots()


def _epoch_lines(cfg: TrainConfig) -> keras.callbacks.Callback:
    """A callback logging one line per epoch that names the training: Keras' own line (verbose
    2) does not, and two trainings side by side (`oiplab.lanes`) share one log."""
    import keras

    who = f"seed {cfg.seed}"
    if (init_seed(cfg), data_seed(cfg)) != (cfg.seed, cfg.seed):
        who += f" (init {init_seed(cfg)}, data order {data_seed(cfg)})"

    class EpochLines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            numbers = ", ".join(f"{key} {float(value):.4f}" for key, value in (logs or {}).items())
            seconds = time.perf_counter() - self.began
            log.info(f"{who} epoch {epoch + 1}/{cfg.epochs}: {seconds:.0f} s, {numbers}")

    return EpochLines()


def _epoch_keeper(
    start: _Start, checkpointing: Checkpointing, cfg: TrainConfig
) -> keras.callbacks.Callback:
    """A callback keeping, at the end of every epoch, the history and the weights (in `start`'s
    history and trajectory) and, but after the last epoch, a checkpoint (the stage's saved model
    supersedes that one at once; a kill before it is saved retrains the last epoch exactly)."""
    import keras

    history, trajectory = start.history, start.trajectory

    class Keeper(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if not all(math.isfinite(float(v)) for v in (logs or {}).values()):
                # a diverged epoch is neither kept nor checkpointed; `train` fails after `fit`
                self.model.stop_training = True
                return
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            trajectory.add(int(self.model.optimizer.iterations.numpy()), self.model.get_weights())
            if checkpointing.folder is not None and epoch + 1 < cfg.epochs:
                state = {
                    "epochs_done": epoch + 1,
                    "history": history,
                    "snapshots": len(trajectory.steps),
                    "optimizer_steps": int(self.model.optimizer.iterations.numpy()),
                    "fingerprint": checkpointing.fingerprint,
                }
                if checkpointing.run_id is not None:
                    state["run_id"] = checkpointing.run_id
                save_checkpoint(checkpointing.folder, self.model, state, trajectory)

    return Keeper()


def train(
    data: PreparedData,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    checkpointing: Checkpointing = Checkpointing(None),  # noqa: B008 (frozen, immutable)
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
) -> TrainResult:
    """Train the CNN on prepared `data` (resuming the checkpoint if valid); evaluate it on the
    test split."""
    import keras

    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    start = _start(model_cfg, cfg, n, checkpointing)
    log.info(
        f"seed {cfg.seed} (init {init_seed(cfg)}, data order {data_seed(cfg)}): "
        f"{start.model.count_params():,} parameters, {n} images, {cfg.epochs} epochs of batch "
        f"{cfg.batch_size}"
    )
    dataset, follow = _batches(data.x_train, data.y_train, cfg.batch_size, data_seed(cfg))
    # Keras' own stop at the first NaN loss: the batches after it would only spread it
    stop = keras.callbacks.TerminateOnNaN()
    keep = [follow, stop, _epoch_keeper(start, checkpointing, cfg), *callbacks]
    if not verbose:  # Keras shows no epochs: one line each, through the project's log
        keep.append(_epoch_lines(cfg))
    # epochs [first, last) and their callbacks: epoch 1 apart when it keeps batch snapshots
    phases = [(start.epoch, cfg.epochs, keep)]
    if start.epoch == 0 and cfg.trajectory_every:
        snapshots = _first_epoch_snapshots(cfg, start.trajectory, steps_per_epoch, verbose)
        phases = [(0, 1, [*keep, snapshots]), (1, cfg.epochs, keep)]
    start_time = time.perf_counter()
    for first, last, phase_callbacks in phases:
        if first < last and _epochs_kept(start.history) == first:  # not after a diverged phase
            start.model.fit(
                dataset,
                epochs=last,
                initial_epoch=first,
                shuffle=False,  # the input orders each epoch itself; Keras would shuffle batches
                validation_data=(data.x_test, data.y_test),
                validation_batch_size=cfg.eval_batch_size,
                callbacks=phase_callbacks,
                verbose=verbose,
            )
    seconds = time.perf_counter() - start_time
    try:
        require_converged(start.model, start.history, cfg)
    except TrainingDiverged:
        if checkpointing.folder is not None:  # resuming it would diverge the same way again
            shutil.rmtree(checkpointing.folder, ignore_errors=True)
        raise
    return _result(start, data, model_cfg, cfg, seconds)


class TrainingDiverged(OiplabError, ArithmeticError):
    """The loss or a weight became NaN or infinite: the training failed (nothing is saved)."""


def _epochs_kept(history: dict[str, list[float]]) -> int:
    return min((len(v) for v in history.values()), default=0)


def require_converged(
    model: keras.Model, history: dict[str, list[float]], cfg: TrainConfig
) -> None:
    """Fail unless `history` has every epoch of `cfg`, all finite, and every weight is finite."""
    bad = non_finite_weights(model)
    # the first epoch whose logged numbers are not all finite (Keeper keeps none after one)
    diverged = min(
        [i for values in history.values() for i, v in enumerate(values) if not math.isfinite(v)],
        default=_epochs_kept(history),
    )
    if diverged == cfg.epochs and not bad:
        return
    reasons = ["the loss became NaN or infinite"] if diverged < cfg.epochs else []
    reasons += [f"weights not finite: {bad[0]}"] if bad else []
    raise TrainingDiverged(
        f"training diverged in epoch {min(diverged + 1, cfg.epochs)} of {cfg.epochs} "
        f"({', '.join(reasons)}); nothing saved. Lower `train.learning_rate` (now "
        f"{cfg.learning_rate:g}) or raise `train.warmup_steps` (now {cfg.warmup_steps})"
    )


def _result(
    start: _Start, data: PreparedData, model_cfg: ModelConfig, cfg: TrainConfig, seconds: float
) -> TrainResult:
    """The trained model's test-set evaluation and the run's numbers."""
    model, n = start.model, len(data.y_train)
    if cfg.precision != "float32":
        model = float32_copy(model, model_cfg, cfg.l2)
    result = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
    metrics = {
        "seed": cfg.seed,
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "train_seconds": round(seconds, 2),
        "images_per_second": round((cfg.epochs - start.epoch) * n / max(seconds, 1e-9), 1),
        "epochs": cfg.epochs,
        "n_params": int(model.count_params()),
    }
    matrix = confusion_matrix(data.y_test, result["predicted"], model_cfg.n_classes)
    return TrainResult(model, start.history, metrics, matrix, start.trajectory, start.resumed)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Accuracy and mean cross-entropy (without the L2 term) on (x, y), plus the predictions."""
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    loss, accuracy = cross_entropy_and_accuracy(probs, y)
    return {
        "accuracy": accuracy,
        "loss": loss,
        "probabilities": probs,
        "predicted": probs.argmax(axis=1),
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix
