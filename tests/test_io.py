"""`oiplab.io`: outputs written all or none (a folder or several, swapped in together), whatever
stops the writer: a full disk, a stop signal or an error between two moves, a symlinked output, two
writers at once, a killed writer's temporaries."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def test_a_full_disk_is_reported_and_leaves_the_old_output(tmp_path, monkeypatch):
    from oiplab.io import OutputError, staged

    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    error = "out: cannot write .No space left on device"
    with pytest.raises(OutputError, match=error), staged(target) as (folder,):
        np.save(folder / "b.npy", np.zeros(3))
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def _compare_outputs(root: Path) -> list[Path]:
    """`compare`'s three outputs (a folder, two files), each holding `old`."""
    (root / "artifacts/compare").mkdir(parents=True)
    (root / "artifacts/compare/table.json").write_text("old")
    (root / "metrics").mkdir()
    for name in ("answer.json", "headline.json"):
        (root / "metrics" / name).write_text("old")
    return [
        root / "artifacts/compare",
        root / "metrics/answer.json",
        root / "metrics/headline.json",
    ]


def _write_new(temps: list[Path]) -> None:
    (temps[0] / "table.json").write_text("new")
    temps[1].write_text("new")
    temps[2].write_text("new")


def _contents(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("how", ["SIGTERM", "error"])
def test_a_stop_between_two_final_moves_keeps_every_old_output(tmp_path, monkeypatch, how):
    """A SIGTERM (really sent) or a failure after the first of three outputs was moved in:
    the first is swapped back, so all three stay old, and no temporary is left."""
    from oiplab import io, stops

    targets = _compare_outputs(tmp_path)
    before = _contents(tmp_path)
    moved: list[str] = []

    def between(target: Path) -> None:
        moved.append(target.name)
        if len(moved) == 1:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)  # held: it waits for the sequence
            else:
                raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(io, "after_each_swap", between)
    expected = stops.StageInterrupted if how == "SIGTERM" else OSError
    with stops.signals_raise(), pytest.raises(expected), io.staged(*targets) as temps:
        _write_new(temps)
    assert moved == (
        ["compare", "answer.json", "headline.json"] if how == "SIGTERM" else ["compare"]
    )
    assert _contents(tmp_path) == before  # every old output in place, no temporary left
    monkeypatch.setattr(io, "after_each_swap", None)
    with io.staged(*targets) as temps:  # and the next write goes through whole
        _write_new(temps)
    assert set(_contents(tmp_path).values()) == {"new"}


def test_a_symlinked_output_folder_is_followed_and_nothing_is_left(tmp_path):
    """`artifacts/compare` a link to a folder on another disk: the link stays a link, the new
    version lands where it points, and no temporary (nor the link) is left behind."""
    from oiplab.io import remove_stale_temporaries, staged

    elsewhere = tmp_path / "disk2" / "compare"
    elsewhere.mkdir(parents=True)
    (elsewhere / "table.json").write_text("old")
    (tmp_path / "artifacts").mkdir()
    link = tmp_path / "artifacts" / "compare"
    link.symlink_to(elsewhere, target_is_directory=True)
    with staged(link) as (folder,):
        (folder / "table.json").write_text("new")
    assert link.is_symlink() and (link / "table.json").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["compare"]
    assert sorted(p.name for p in (tmp_path / "disk2").iterdir()) == ["compare"]
    # a link left as a temporary by a dead writer (older versions did) is removed, not followed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / "artifacts" / f".compare.{dead}-deadbeef.tmp").symlink_to(elsewhere)
    remove_stale_temporaries(link)
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["compare"]
    assert (elsewhere / "table.json").read_text() == "new"


SWAPPER = """
import sys
from pathlib import Path
from oiplab.io import atomic_dir
target, n, tag = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for k in range(n):
    with atomic_dir(target) as tmp:
        (tmp / "who").write_text(f"{tag} {k}")
        (tmp / "check").write_text(f"{tag} {k}")
"""


def test_two_processes_swapping_one_folder_never_fail_nor_leave_temporaries(tmp_path):
    target = tmp_path / "seed_0"
    procs = [
        subprocess.Popen([sys.executable, "-c", SWAPPER, str(target), "400", tag])
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert (target / "who").read_text() == (target / "check").read_text()  # one writer's whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0"]


def test_temporaries_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    from oiplab.io import atomic_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".seed_0.{dead}-deadbeef.tmp"
    stale.mkdir()
    with atomic_dir(tmp_path / "seed_0") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed_0"]
