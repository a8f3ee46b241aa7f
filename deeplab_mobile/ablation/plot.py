"""mIoU against MAdds (log scale), one labelled point per variant, like the paper's trade-off figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from .table import Row, _paper_miou  # noqa: E402


def plot_tradeoff(rows: list[Row], path: str | Path, title: str = "") -> Path | None:
    """Write the plot to ``path`` (PNG); returns None (and writes nothing) when no row has both numbers.

    Single-scale evaluations are filled circles, MF evaluations open squares, one colour per network; the
    paper's Table 7 values, where a VOC run matches a row, are grey crosses joined to the run's point.
    """
    points = [r for r in rows if r.miou is not None and r.madds]
    if not points:
        return None
    networks = list(dict.fromkeys(r.network for r in points))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(networks)}
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    for r in points:
        x, y, c = r.madds / 1e9, 100 * r.miou, colours[r.network]
        ax.scatter(x, y, s=46, marker="s" if r.mf else "o", facecolors="none" if r.mf else c, edgecolors=c, zorder=3)
        ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        paper = _paper_miou(r)
        if paper is not None:
            ax.scatter(r.paper.madds_b, paper, marker="x", color="0.5", zorder=2)
            ax.plot([x, r.paper.madds_b], [y, paper], color="0.75", lw=0.8, zorder=1)
    for n in networks:
        ax.scatter([], [], color=colours[n], label=n)
    ax.scatter([], [], marker="s", facecolors="none", edgecolors="0.3", label="MF + flip")
    if any(_paper_miou(r) is not None for r in points):
        ax.scatter([], [], marker="x", color="0.5", label="paper (Table 7)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10 rather than 10^0, 10^1
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))  # 2, 5
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.margins(x=0.2, y=0.1)  # room for the labels right of the outermost points
    ax.set_xlabel("MAdds (billions, 513x513 input; log scale)")
    ax.set_ylabel("mIoU (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
