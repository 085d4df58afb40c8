"""Crash-safe output: everything is written under a temporary name beside its target and moved
into place only when complete, so an interrupted or failed stage never leaves a half-written
output, and never replaces a good one.

Temporaries are named `.<target name>.<pid>-<random>.tmp` (kept out of DVC's hashes by
`.dvcignore`); the next writer of the same target removes those left by dead processes. Folders
are swapped in with Linux's atomic `renameat2(RENAME_EXCHANGE)`, so two processes writing the
same folder never see "Directory not empty" and a reader never finds the folder missing.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from oiplab.checks import NonFiniteError, require_finite
from oiplab.errors import OiplabError, missing_input
from oiplab.layout import RUN
from oiplab.stops import STOP, StageInterrupted, held, raise_if_interrupted

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


class OutputError(OiplabError, OSError):
    """An output cannot be written (read-only folder, a file in the way, disk full)."""


class InputError(OiplabError, ValueError):
    """A stage input exists but is corrupt, truncated or incomplete."""


class StaleOutputError(InputError):
    """A stage output of another format (written by an older or newer oiplab): a field missing,
    extra or of the wrong type."""


def _temporary(target: Path) -> Path:
    """A unique name beside `target`, ending in the target's suffix (savers look at it)."""
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.{unique}.tmp{target.suffix}")


def check_writable(folder: Path, key: str) -> None:
    """Fail before any work when an output folder could not be written: a file is in its place
    (or in its parents'), or it (or the folder it would be made in) is read-only."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"config key '{key}': {probe} is a file, expected a folder for outputs")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"config key '{key}': {probe} is not writable")


def remove_stale_temporaries(target: Path) -> None:
    """Remove temporaries of `target` whose writing process no longer runs."""
    if not target.parent.is_dir():
        return
    for tmp in target.parent.glob(f".{target.name}.*.tmp*"):
        pid = tmp.name.removeprefix(f".{target.name}.").split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(tmp)


def _remove(path: Path) -> None:
    """Remove a temporary: a file, a folder, or a symbolic link (never what the link points to:
    `rmtree` refuses links, and `is_dir` follows them)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def real_target(target: str | os.PathLike[str]) -> Path:
    """Where an output really goes: a symbolic link (an output folder kept on another disk) is
    followed, so the link stays and its destination gets the new version; swapping the link
    itself would replace it by a real folder and leave it behind as a temporary."""
    return Path(os.path.realpath(target))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise OutputError(f"{target.parent}: a file is in the way of output folder") from exc
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot create output folder ({exc.strerror})") from exc
    if not os.access(target.parent, os.W_OK):
        raise OutputError(f"{target.parent}: output folder is not writable")
    remove_stale_temporaries(target)


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(src), None, str(dst))


def swap_in(tmp: Path, target: Path) -> None:
    """Put folder `tmp` at `target` atomically; the old `target`, if any, ends up at `tmp`."""
    while True:
        try:
            _renameat2(tmp, target, _RENAME_NOREPLACE)
            return
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            _swap_portably(tmp, target)  # a file system without renameat2 flags
            return
        try:
            _renameat2(tmp, target, _RENAME_EXCHANGE)
            return
        except FileNotFoundError:
            continue  # `target` vanished between the two calls: try again


def _swap_portably(tmp: Path, target: Path) -> None:
    old = _temporary(target)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        os.replace(old, tmp)


@contextmanager
def _reported(target: Path) -> Iterator[None]:
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise OutputError(f"{target}: cannot write ({exc.strerror})") from exc
        raise


@contextmanager
def _stand_in(target: Path, folder: bool) -> Iterator[Path]:
    """A temporary beside `target` (a fresh folder for a folder output), removed at the end,
    whatever it holds then: the new version not moved in, or the previous one."""
    _prepare_parent(target)
    if folder and target.exists() and not target.is_dir():
        raise OutputError(f"{target}: is a file, but this output is a folder (remove the file)")
    tmp = _temporary(target)
    try:
        with _reported(target):
            if folder:
                tmp.mkdir()
            yield tmp
    finally:
        _remove(tmp)


# A test's hook, called after each output of a `staged` block is moved into place: it stands for
# a stop signal or a failure at the worst moment, deterministically.
after_each_swap: Callable[[Path], None] | None = None


def _move_all_in(pairs: list[tuple[Path, Path]]) -> None:
    """Swap each temporary in for its target, all or none: stop signals wait until the sequence
    is done, and a failure or a stop during it swaps back those already done (each previous
    version is then at its temporary's name, by `swap_in`)."""
    done: list[tuple[Path, Path, bool]] = []
    with held(check=False):
        try:
            for tmp, target in pairs:
                existed = target.exists() or target.is_symlink()
                with _reported(target):
                    swap_in(tmp, target)
                done.append((tmp, target, existed))
                if after_each_swap is not None:
                    after_each_swap(target)
            if STOP.pending:  # arrived during the swaps: keep the previous outputs
                raise StageInterrupted(f"stopped by {STOP.pending}")
        except BaseException:
            for tmp, target, existed in reversed(done):
                if existed:
                    _renameat2(tmp, target, _RENAME_EXCHANGE)
                else:
                    os.replace(target, tmp)
            raise


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it onto `target` if the block succeeds."""
    real = real_target(target)
    with _stand_in(real, folder=False) as tmp:
        yield tmp
        raise_if_interrupted()  # a stop Python swallowed keeps the previous output
        _move_all_in([(tmp, real)])


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; swap it in for `target` on success."""
    real = real_target(target)
    with _stand_in(real, folder=True) as tmp:
        yield tmp
        raise_if_interrupted()  # a stop Python swallowed keeps the previous output
        _move_all_in([(tmp, real)])


@contextmanager
def staged(*targets: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Temporary stand-ins for several outputs (folders, or files when the name has a suffix),
    all moved into place together only if the block succeeds: a failure anywhere in the block
    (the work, logging, a full disk) or a stop signal, even one between two of the final moves,
    leaves every previous output byte-identical. Symbolic links among the targets are followed."""
    reals = [real_target(t) for t in targets]
    with ExitStack() as stack:
        temps = [stack.enter_context(_stand_in(t, folder=not t.suffix)) for t in reals]
        yield temps
        raise_if_interrupted()  # a stop Python swallowed keeps the previous outputs
        _move_all_in(list(zip(temps, reals, strict=True)))


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as indented JSON (numpy scalars and arrays converted), atomically."""
    atomic_write_text(target, to_json(data))


def to_json(data: Any) -> str:
    """Indented JSON; NaN and infinities become null (JSON has no NaN; DVC and browsers agree)."""
    return json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(str(k) if not isinstance(k, str) else k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def read_json(path: str | os.PathLike[str], what: str = "stage output") -> Any:
    """Read a JSON file another stage wrote; a missing or broken file is an error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError as exc:
        raise missing_input(path, what) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {what} is not valid JSON ({exc}); rerun its stage") from exc
    except _NonFiniteLiteral as exc:
        # `to_json` never writes one: the file was edited or written by something else
        raise NonFiniteError(f"{path}: {what} holds {exc}; rerun its stage") from exc


class _NonFiniteLiteral(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NonFiniteLiteral(name)


def load_npz(
    path: str | os.PathLike[str], keys: tuple[str, ...] | None, what: str, stage: str = ""
) -> dict[str, Any]:
    """The arrays `keys` (None: all) of an `.npz` DVC stage `stage` wrote, every one finite;
    errors name the file, the array and the problem. Object arrays are refused, never unpickled."""
    import zipfile

    path = Path(path)
    rerun = f"rerun its stage: `dvc repro{f' {stage}' if stage else ''}`"
    if not path.is_file():
        raise missing_input(path, what, stage)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            wanted = arrays.files if keys is None else keys
            found = {k: arrays[k] for k in wanted if k in arrays.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        why = "object arrays" if "allow_pickle" in str(exc) else type(exc).__name__
        raise InputError(f"{path}: {what} is unreadable ({why}); {rerun}") from exc
    missing = [k for k in wanted if k not in found]
    if missing:
        raise InputError(f"{path}: {what} lacks array(s) {', '.join(missing)}; {rerun}")
    for key, values in found.items():
        require_finite(values, f"{path}: {what} array '{key}'", rerun)
    return found


def save_with(target: str | os.PathLike[str], save: Callable[[Path], Any]) -> None:
    """Let `save(tmp_path)` write a file (figure, model), then move it onto `target` atomically."""
    with atomic_path(target) as tmp:
        save(tmp)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# A float a stage wrote: JSON has no NaN, so `to_json` writes null, read back as NaN.
Real = Annotated[float, BeforeValidator(lambda v: float("nan") if v is None else v)]
# A float that must be a number: null (a NaN or infinity written by `to_json`) is refused on
# reading, and so is NaN when built. Fields that are legitimately undefined stay `Real`.
Finite = Annotated[float, Field(allow_inf_nan=False)]
T = TypeVar("T")


def read_typed(path: str | os.PathLike[str], kind: type[T] | Any, stage: str, what: str) -> T:
    """Read the JSON file `path` that DVC stage `stage` wrote, checked against type `kind`; an
    output of another format is one `StaleOutputError` naming the file and the stage to rerun."""
    path = Path(path)
    if not path.is_file():
        raise missing_input(path, what, stage)
    data = read_json(path, what)
    try:
        return TypeAdapter(kind).validate_python(data)
    except ValidationError as exc:
        _raise_if_not_finite(path, what, stage, exc)
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise StaleOutputError(
            f"{path}: {what} of another format ({problems}), written by another version of "
            f"oiplab; rerun its stage: `dvc repro{f' {stage}' if stage else ''}`"
        ) from exc


def _raise_if_not_finite(path: Path, what: str, stage: str, exc: ValidationError) -> None:
    """A `NonFiniteError` when a field that must be a number holds null (NaN or infinity on
    writing): the file is of the right format, its numbers are not."""
    for e in exc.errors():
        if e["type"] == "finite_number" or (e["type"] == "float_type" and e["input"] is None):
            field = ".".join(map(str, e["loc"]))
            raise NonFiniteError(
                f"{path}: {what} field '{field}' is not a finite number; rerun its stage: "
                f"`dvc repro{f' {stage}' if stage else ''}`"
            ) from exc


class Fields(BaseModel):
    """A part of a stored result: every field required unless defaulted, no unknown field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Record(Fields):
    """A result one stage writes (`save`) into its output folder and others read (`load`): one
    JSON file named by `oiplab.layout`, checked field by field when read."""

    FILE: ClassVar[str]  # the file name in the stage's folder (from `oiplab.layout`)
    STAGE: ClassVar[str]  # the DVC stage that writes it (the one to rerun for an old file)
    WHAT: ClassVar[str]  # what it is, for messages

    def data(self) -> Any:
        """What the file holds (JSON-able)."""
        return self.model_dump()

    def save(self, folder: str | os.PathLike[str]) -> None:
        (Path(folder) / self.FILE).write_text(to_json(self.data()), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], stage: str | None = None) -> Self:
        """Read it from `folder` (written by `stage`, where one type serves several stages)."""
        return read_typed(Path(folder) / cls.FILE, cls, stage or cls.STAGE, cls.WHAT)


class ListRecord(Record):
    """A record whose file is a bare JSON list of rows (what `dvc plots` reads), held in the
    field that `ITEMS` names."""

    ITEMS: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {cls.ITEMS: data} if isinstance(data, list) else data

    def data(self) -> list[dict[str, Any]]:
        return [row.model_dump() for row in getattr(self, self.ITEMS)]


class RunRecord(Record):
    """The MLflow run that produced a stage's output folder (`RUN`); empty when not tracked."""

    FILE: ClassVar[str] = RUN
    STAGE: ClassVar[str] = ""
    WHAT: ClassVar[str] = "run record"

    run_id: str | None = None
    experiment_id: str | None = None

    def data(self) -> Any:
        return self.model_dump(exclude_none=True)

    @classmethod
    def of(cls, folder: str | os.PathLike[str]) -> Self:
        """The run that wrote `folder`, or an empty record where none is: `.dvcignore` keeps
        `RUN` out of DVC's hashes and cache, so a folder DVC restored has none."""
        return cls.load(folder) if (Path(folder) / cls.FILE).is_file() else cls()
