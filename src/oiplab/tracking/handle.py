"""The run handle a stage logs through: `Run` records nothing (tracking off), `TrackedRun` records
into the stage's MLflow run. Whether a run is tracked is decided once, when the stage's run opens
(`runs.stage_run`), not at every write; every write to the store is held against stop signals."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from oiplab.io import to_json
from oiplab.stops import holding
from oiplab.tracking.identity import TAG_PREFIX, flatten
from oiplab.tracking.store import store_error, store_failed

log = logging.getLogger(__name__)

# What MLflow's registry prints to stderr for each new version (`_describe_version` logs one line
# of its own instead, with the alias); anything else it writes there is passed on.
# MLflow's registry lines (first registration, each later one, each version): ours says the version.
_REGISTRY_CHATTER = re.compile(
    r"^(Successfully registered model '|Registered model '.*' already exists\. |Created version ')"
)

if TYPE_CHECKING:
    import keras
    import numpy as np
    from mlflow import ActiveRun


P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Registration:
    """Where a trained model goes in the model registry: a version of `name`, tagged with what
    it is, and aliased `<study>-seed<k>` (the newest training of that seed)."""

    name: str  # the registered model: `oiplab-<data>-<study>-cnn`
    study: str
    seed: int
    dataset: str
    test_accuracy: float

    @property
    def alias(self) -> str:
        """`default-seed0`: MLflow allows only [a-z0-9_-] in an alias."""
        return re.sub(r"[^a-z0-9_-]+", "-", f"{self.study}-seed{self.seed}".lower())

    @property
    def tags(self) -> dict[str, str]:
        return {
            "study": self.study,
            "seed": str(self.seed),
            "dataset": self.dataset,
            "test_accuracy": f"{self.test_accuracy:.4f}",
        }

    def describe(self, run_id: str | None) -> str:
        return (
            f"Seed {self.seed} of study `{self.study}` on {self.dataset}: test accuracy "
            f"{self.test_accuracy:.2%}. Trained by run `{run_id}`; alias `{self.alias}` is the "
            "newest training of this seed."
        )


def store_write(write: Callable[P, R]) -> Callable[P, R]:
    """`write` (a call into the store) held against stop signals (`holding`), its failure
    reported as the store's: inside a stage's `staged` block, a store that cannot be written
    (read-only, disk full) must not read as the stage's own output failing."""

    @functools.wraps(write)
    def reported(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return write(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, OSError) or store_failed(exc):
                import mlflow

                raise store_error(exc, mlflow.get_tracking_uri()) from exc
            raise

    return holding(reported)


class _KerasFlavor:
    """MLflow's Keras flavor, its model folder made before it writes there: MLflow 3's
    `mlflow.keras.save_model` writes the input example before it creates the folder
    (mlflow/mlflow#16183: FileNotFoundError for `input_example.json`)."""

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> None:
        import mlflow.keras

        kwargs.pop("validate_serving_input", None)  # `Model.log`'s own option, not the flavor's
        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


class Run:
    """A stage's run handle. This base is the disabled run (`tracking.enabled=false`): every
    method records nothing. `TrackedRun` records into the MLflow run the stage opened."""

    enabled = False
    run_id: str | None = None
    experiment_id: str | None = None

    @property
    def record(self) -> dict[str, str]:
        """The run's identity, for a stage's outputs (the report links exactly this run)."""
        return {}

    def log_metrics(
        self, metrics: dict[str, Any], step: int | None = None, dataset: str | None = None
    ) -> None:
        """Log the numeric values of `metrics` (not NaN, not booleans); `dataset`: the name of
        a data set this run logged (`log_dataset`) that they were measured on."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Log values fixed for the whole run (a count, a duration) as parameters: a metric of
        one point is a chart of one bar."""

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        """Log every file of `folder`, under `artifact_path`."""

    def log_json(self, data: Any, artifact_file: str) -> None:
        """Log `data` as a JSON artifact named `artifact_file`."""

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log `text` as an artifact named `artifact_file`."""

    def describe(self, text: str) -> None:
        """Set the run's description (shown at the top of its page in the UI)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run."""

    def describe_execution(self, text: str, metrics: dict[str, float]) -> None:
        """Set the description and headline metrics of the pipeline's parent run (the execution
        this stage runs in); nothing when the stage runs outside an execution."""

    def log_dataset(
        self,
        arrays: tuple[np.ndarray, np.ndarray],
        name: str,
        digest: str,
        source: str,
        context: str,
    ) -> None:
        """Record a data split, its images and labels `arrays`, as an input of the run (MLflow
        datasets), with its sha256 `digest`."""

    def log_keras_model(
        self, model: keras.Model, example: np.ndarray, registration: Registration | None
    ) -> None:
        """Log a trained model as an MLflow Keras model with its signature and an input example;
        register it (`registration`: tagged, described, aliased) when the store has a model
        registry (not on plain file stores)."""

    def link_models(self, run_ids: list[str]) -> None:
        """Record the models logged by runs `run_ids` as inputs of this run."""

    def continue_from(self, state: dict[str, Any]) -> None:
        """On a resumed training: close the killed job's run as KILLED, and give this run the
        epochs that job completed, so its learning curve is whole."""

    def log_results(
        self, metrics: dict[str, Any], folder: Path | None = None, name: str | None = None
    ) -> None:
        """Log a stage's numbers (nested dicts flattened) and, if given, its output folder."""
        self.log_metrics({k: v for k, v in flatten(metrics).items() if k != "seed"})
        if folder is not None:
            self.log_artifacts(folder, name)

    def epoch_logger(self) -> keras.callbacks.Callback:
        """A Keras callback that logs each epoch's metrics to this run."""
        import keras

        log_metrics = self.log_metrics

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                log_metrics(logs or {}, step=epoch + 1)

        return EpochLogger()


class TrackedRun(Run):
    """The handle of an MLflow run that MLflow's fluent API has active (the stage's run); every
    write is held against stop signals."""

    enabled = True

    def __init__(self, active: ActiveRun, parent: str | None = None) -> None:
        self._info = active.info
        self.run_id = active.info.run_id
        self.experiment_id = active.info.experiment_id
        self.parent = parent  # the execution's parent run, if the stage runs in one
        self._datasets: dict[str, Any] = {}  # the MLflow datasets this run logged, by name

    @property
    def record(self) -> dict[str, str]:
        return {"run_id": self._info.run_id, "experiment_id": self._info.experiment_id}

    @store_write
    def log_metrics(
        self, metrics: dict[str, Any], step: int | None = None, dataset: str | None = None
    ) -> None:
        import mlflow

        clean = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v  # no NaN
        }
        linked = self._datasets[dataset] if dataset is not None else None
        mlflow.log_metrics(clean, step=step, dataset=linked)

    @store_write
    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params(params)

    @store_write
    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    @store_write
    def log_json(self, data: Any, artifact_file: str) -> None:
        import mlflow

        mlflow.log_dict(json.loads(to_json(data)), artifact_file)

    @store_write
    def log_text(self, text: str, artifact_file: str) -> None:
        import mlflow

        mlflow.log_text(text, artifact_file)

    @store_write
    def describe(self, text: str) -> None:
        import mlflow

        mlflow.set_tag("mlflow.note.content", text)

    @store_write
    def describe_execution(self, text: str, metrics: dict[str, float]) -> None:
        if self.parent is None:
            return
        import time

        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow.get_tracking_uri())
        client.set_tag(self.parent, "mlflow.note.content", text)
        now = int(time.time() * 1000)
        kept = [
            Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and v == v
        ]  # no NaN
        client.log_batch(self.parent, metrics=kept)

    @store_write
    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    @store_write
    def log_dataset(
        self,
        arrays: tuple[np.ndarray, np.ndarray],
        name: str,
        digest: str,
        source: str,
        context: str,
    ) -> None:
        import warnings

        import mlflow

        x, y = arrays
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            from mlflow.data.numpy_dataset import from_numpy

            dataset = from_numpy(x, source=source, targets=y, name=name, digest=digest[:16])
        mlflow.log_input(dataset, context=context)
        self._datasets[name] = dataset

    @store_write
    def log_keras_model(
        self, model: keras.Model, example: np.ndarray, registration: Registration | None
    ) -> None:
        import mlflow
        from mlflow.models import Model, infer_signature

        from oiplab.backend import versions

        signature = infer_signature(example, model.predict(example, verbose=0))
        known = versions()
        requirements = [f"keras=={known['keras']}"] + [
            f"{dist}=={known[dist]}"
            for dist in ("tensorflow-cpu", "tensorflow", "jax")
            if dist in known
        ]
        uri = mlflow.get_tracking_uri()
        if uri.startswith(("file:", "/")):
            registration = None  # a plain file store has no model registry
        with _registry_chatter_dropped():
            info = Model.log(  # what mlflow.keras.log_model does, through `_KerasFlavor`
                artifact_path=None,
                name="keras_model",
                flavor=_KerasFlavor,
                flavor_name="mlflow.keras",
                model=model,
                signature=signature,
                input_example=example[:2],  # two images: the UI shows it, `serve` checks against it
                pip_requirements=requirements,
                registered_model_name=registration.name if registration else None,
                # the signature is inferred from this example by this model already; MLflow's check
                # reloads the model to predict it again, with a Keras progress bar in the log
                validate_serving_input=False,
            )
        if registration is not None and info.registered_model_version is not None:
            self._describe_version(registration, str(info.registered_model_version))

    def _describe_version(self, registration: Registration, version: str) -> None:
        """Tag, describe and alias a new version of the registered model."""
        from mlflow.tracking import MlflowClient

        client, name = MlflowClient(), registration.name
        for key, value in registration.tags.items():
            client.set_model_version_tag(name, version, key, value)
        client.update_model_version(name, version, description=registration.describe(self.run_id))
        client.set_registered_model_alias(name, registration.alias, version)
        log.info(f"registered model {name!r} version {version} (alias {registration.alias})")
        client.update_registered_model(
            name,
            description=f"The articles' CNN trained on {registration.dataset} in study "
            f"`{registration.study}`, one version per training; alias `<study>-seed<k>` is the "
            "newest training of seed k.",
        )

    @store_write
    def link_models(self, run_ids: list[str]) -> None:
        import mlflow
        from mlflow.entities import LoggedModelInput

        for run_id in run_ids:
            found = mlflow.search_logged_models(
                experiment_ids=[str(self.experiment_id)],
                filter_string=f"source_run_id = '{run_id}'",
                output_format="list",
            )
            for model in found:
                mlflow.log_input(model=LoggedModelInput(model.model_id))

    @store_write
    def continue_from(self, state: dict[str, Any]) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        previous = state.get("run_id")
        if previous and previous != self.run_id:
            client = MlflowClient()
            try:
                if client.get_run(previous).info.status == "RUNNING":
                    client.set_terminated(previous, status="KILLED")
            except MlflowException:
                pass  # the killed job logged to another store: nothing to close here
            mlflow.set_tag(TAG_PREFIX + "resumed_from_run", previous)
        for key, values in state["history"].items():
            for epoch, value in enumerate(values[: state["epochs_done"]], start=1):
                self.log_metrics({key: value}, step=epoch)


@contextlib.contextmanager
def _registry_chatter_dropped():
    """Run a block with MLflow's registry lines taken out of what it writes to stderr."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            yield
    finally:
        kept = [
            line
            for line in caught.getvalue().splitlines(keepends=True)
            if not _REGISTRY_CHATTER.match(line)
        ]
        sys.stderr.write("".join(kept))
