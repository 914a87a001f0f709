"""Figures logged with every run: loss curves, score histograms, ROC/PR curves, reconstruction grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def loss_curves(history: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """history[plane][metric] = per-epoch values; one panel, one line per plane and metric."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for plane, metrics in history.items():
        for name, values in metrics.items():
            if len(values):
                ax.plot(range(1, len(values) + 1), values, ls="-" if name.startswith("val") else "--",
                        label=f"{plane} {name}")
    ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title="Reconstruction error")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def score_histogram(normal: np.ndarray, abnormal: np.ndarray, threshold: float, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    both = np.concatenate([normal, abnormal]) if len(abnormal) else np.asarray(normal)
    bins = np.linspace(np.nanmin(both), np.nanmax(both), 40) if len(both) and np.ptp(both) > 0 else 20
    # matplotlib's stubs type `bins` as a Sequence[float]; it takes an array, as documented
    ax.hist(normal, bins=bins, alpha=0.6, label=f"normal ({len(normal)})", color="tab:blue")  # type: ignore[arg-type]
    if len(abnormal):
        ax.hist(abnormal, bins=bins, alpha=0.6, label=f"abnormal ({len(abnormal)})",  # type: ignore[arg-type]
                color="tab:red")
    if np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="anomaly score", ylabel="images", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_pr_curves(roc: Mapping[str, np.ndarray], pr: Mapping[str, np.ndarray], auroc: float, auprc: float,
                  title: str) -> Figure:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.plot(roc["fpr"], roc["tpr"], label=f"AUROC {auroc:.3f}")
    a.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC {title}")
    a.legend(loc="lower right")
    b.plot(pr["recall"], pr["precision"], label=f"AUPRC {auprc:.3f}")
    b.set(xlabel="recall", ylabel="precision", title=f"PR {title}", ylim=(0, 1.02))
    b.legend(loc="lower left")
    fig.tight_layout()
    return fig


def reconstruction_grid(images: np.ndarray, recons: np.ndarray, maps: np.ndarray, titles: Sequence[str],
                        truth: np.ndarray | None = None) -> Figure:
    """Rows: input / reconstruction / error map (with the true anomaly outline when known)."""
    n = len(images)
    fig, axes = plt.subplots(3, max(n, 1), figsize=(1.9 * max(n, 1), 6), squeeze=False)
    vmax = float(np.percentile(maps, 99.5)) if maps.size else 1.0
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(titles[i], fontsize=7)
        axes[1, i].imshow(recons[i], cmap="gray", vmin=0, vmax=1)
        axes[2, i].imshow(maps[i], cmap="inferno", vmin=0, vmax=max(vmax, 1e-6))
        if truth is not None and truth[i].any():
            axes[2, i].contour(truth[i], levels=[0.5], colors="cyan", linewidths=0.6)
    for ax in axes.ravel():
        ax.axis("off")
    for r, name in enumerate(("input", "reconstruction", "error")):
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right")
    fig.tight_layout()
    return fig


def examples_grid(groups: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[str]]],
                  title: str = "") -> Figure:
    """Per group (e.g. "highest-scoring normal", "missed abnormal") a row of inputs and a row of their anomaly
    maps, one colour scale for every map so that rows compare."""
    n = max([len(imgs) for imgs, _, _ in groups.values()] + [1])
    fig, axes = plt.subplots(2 * len(groups), n, figsize=(1.9 * n, 3.9 * len(groups)), squeeze=False)
    every = [np.asarray(m).ravel() for _, maps, _ in groups.values() for m in maps]
    vmax = float(np.percentile(np.concatenate(every), 99.5)) if every else 1.0
    for g, (name, (images, maps, titles)) in enumerate(groups.items()):
        for i, (img, amap, t) in enumerate(zip(images, maps, titles, strict=True)):
            axes[2 * g, i].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[2 * g, i].set_title(t, fontsize=7)
            axes[2 * g + 1, i].imshow(amap, cmap="inferno", vmin=0, vmax=max(vmax, 1e-6))
        axes[2 * g, 0].text(-0.08, 0.5, name, transform=axes[2 * g, 0].transAxes, rotation=90, va="center",
                            ha="right", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_matrix_plot(matrix: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """Counts (rows: truth, columns: prediction), each cell shaded by its share of the row (recall)."""
    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.4, 1.1 * n + 1.6))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
