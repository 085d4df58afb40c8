"""Figures of the training stage: confusion matrix and learning curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from oiplab.layout import TrainFiles
from oiplab.render import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def confusion_figure(matrix: np.ndarray, class_names: tuple[str, ...], title: str) -> Figure:
    """A confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    plt = pyplot()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.5, 0.55 * n + 2))
    shown = np.log1p(matrix)  # log scale keeps the off-diagonal errors visible
    ax.imshow(shown, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                color = "white" if shown[i, j] > shown.max() * 0.6 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(
        range(n),
        class_names,
        rotation=45 if max(map(len, class_names)) > 2 else 0,
        ha="right" if max(map(len, class_names)) > 2 else "center",
    )
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def whole_epochs(ax: Axes) -> None:
    """Ticks on an epoch axis at whole epochs only (matplotlib would put 1.5 between 1 and 2)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def history_figure(history: dict[str, list[float]], title: str) -> Figure:
    """Loss and accuracy per epoch, training vs test."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for key, label in (("loss", "train"), ("val_loss", "test")):
        if key in history:
            ax_loss.plot(epochs, history[key], marker="o", label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        if key in history:
            ax_acc.plot(epochs, history[key], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (incl. L2)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        whole_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def seeds_history_figure(histories: dict[int, dict[str, list[float]]], title: str) -> Figure:
    """Test accuracy and training loss per epoch, one line per seed."""
    plt = pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
    for seed, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        if "val_accuracy" in history:
            ax_acc.plot(epochs, history["val_accuracy"], marker="o", label=f"seed {seed}")
        ax_loss.plot(epochs, history["loss"], marker="o", label=f"seed {seed}")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy per epoch")
    ax_loss.set(xlabel="epoch", ylabel="training loss (incl. L2)", title="training loss")
    for ax in (ax_acc, ax_loss):
        whole_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_training_figures(folder, result, class_names: tuple[str, ...]) -> None:
    """The confusion matrix and learning curves of one trained seed, into `folder`."""
    seed, m = result.metrics["seed"], result.metrics
    title = f"seed {seed}: test accuracy {m['test_accuracy']:.2%}"
    save_figure(
        confusion_figure(result.confusion, class_names, title), folder / TrainFiles.confusion
    )
    save_figure(
        history_figure(result.history, f"training, seed {seed}"), folder / TrainFiles.curves
    )
