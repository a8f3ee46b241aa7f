"""The report's figure: each row once, numbered as in the table, with its 95% interval on every split.

Left, the rows one under the other (the numbers' legend): mIoU with its interval, val filled, the other splits
open. Right, mIoU against MAdds on a log scale, like the paper's trade-off figures, each point marked with its row's
number.

The numbers are placed here rather than with a label-placement library (adjustText): those move labels by repulsion
until they stop, which leaves overlaps when points crowd; a number is small, so trying a ring of positions around
its point, nearest first, and taking the first that touches no placed number, point or error bar, is enough, and
the result can be checked.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..files import atomic_path
from .rows import Row
from .table import _paper_miou, split_names

MARKERS = ("o", "s", "^", "D")  # the primary split, then the others
NEAR = (8, 12, 17, 24, 33, 45)  # points from the point, nearest first: inside the axes, no leader line
FAR = tuple(range(60, 400, 15))  # then farther, anywhere in the figure, joined to the point by a line
ANGLES = (45, 135, -45, -135, 0, 180, 90, -90)


def row_name(row: Row) -> str:
    """``3  MNet V2* x0.5 OS8 ASPP MF 0.875-1.125 + flip  (ref)``: the left panel's label of a row."""
    return f"{row.number}  {row.title}{'  (ref)' if row.reference == row.number else ''}"


def _style(k: int, colour) -> dict:
    """Split ``k``'s marker: the primary split filled, the others open."""
    return {
        "fmt": MARKERS[k % len(MARKERS)],
        "color": colour,
        "mfc": colour if k == 0 else "white",
        "ms": 5,
        "capsize": 2,
        "lw": 1,
    }


def _plottable(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.state == "done" and any(s.mean is not None for s in r.splits.values())]


def _errors(split) -> tuple[float, list[list[float]]] | None:
    """(mean %, [[below], [above]]) for errorbar; no bar where there is no interval."""
    if split is None or split.mean is None:
        return None
    y, e = 100 * split.mean, split.estimate
    if e is None or not e.method or math.isnan(e.low):
        return y, [[0.0], [0.0]]
    return y, [[max(0.0, y - 100 * e.low)], [max(0.0, 100 * e.high - y)]]


def _point_boxes(ax, x: float, y: float, low: float, high: float) -> list:
    """Display boxes of a point's marker and of its error bar with caps (what a number must not cover)."""
    from matplotlib.transforms import Bbox

    (px, py), (_, plow), (_, phigh) = ax.transData.transform([(x, y), (x, low), (x, high)])
    marker = Bbox.from_extents(px - 5, py - 5, px + 5, py + 5)
    return [marker, Bbox.from_extents(px - 4, min(plow, phigh) - 1, px + 4, max(plow, phigh) + 1)]


def _overlaps(box, boxes) -> bool:
    return any(box.overlaps(other) for other in boxes)


def _candidates(radii):
    """Offsets (points) around a point, nearest first, with the alignment that keeps the text off the point."""
    for radius in radii:
        for angle in ANGLES:
            dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            yield dx, dy, ha, va


def text_box(annotation, renderer):
    """The display box of an annotation's text alone (``Annotation.get_window_extent`` adds its leader line)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)  # where its offset puts it (done on drawing otherwise)
    return Text.get_window_extent(annotation, renderer)


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def place_numbers(ax, anchors: list[tuple[float, float, str]], obstacles: list) -> list:
    """Write each ``(x, y, text)`` near its point: at the first position around it whose box lies inside the axes
    and touches no placed text and no obstacle (display-coordinate boxes); where the axes have no room, farther
    out anywhere in the figure, joined to the point by a line. Returns the text artists."""
    renderer = ax.figure.canvas.get_renderer()
    axes, figure = ax.get_window_extent(renderer), ax.figure.bbox
    placed, texts = [], []
    style = {"textcoords": "offset points", "fontsize": 8, "fontweight": "bold", "zorder": 5}
    line = {"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 0, "shrinkB": 2}
    for x, y, text in anchors:
        chosen = None
        for frame, radii, extra in ((axes, NEAR, {}), (figure, FAR, {"arrowprops": line})):
            for dx, dy, ha, va in _candidates(radii):
                artist = ax.annotate(text, (x, y), xytext=(dx, dy), ha=ha, va=va, **style, **extra)
                box = text_box(artist, renderer).expanded(1.15, 1.15)
                if _inside(box, frame) and not _overlaps(box, placed) and not _overlaps(box, obstacles):
                    chosen = artist
                    break
                artist.remove()
            if chosen is not None:
                break
        if chosen is None:  # a figure full to the edges: the number goes on its point
            chosen = ax.annotate(text, (x, y), ha="center", va="center", **{**style, "textcoords": "data"})
            box = text_box(chosen, renderer)
        placed.append(box)
        texts.append(chosen)
    return texts


def draw_forest(forest, points: list[Row], splits: list[str], colours: dict) -> None:
    """Each row's mIoU with its interval on a line of its own, one marker per split."""
    step = 0.5 / max(1, len(splits))
    for i, r in enumerate(points):
        for k, name in enumerate(splits):
            got = _errors(r.splits.get(name))
            if got is None:
                continue
            y, err = got
            c = colours[r.network]
            forest.errorbar([y], [i + (k - (len(splits) - 1) / 2) * step], xerr=err, **_style(k, c))
    forest.set_yticks(range(len(points)))
    forest.set_yticklabels([row_name(r) for r in points], fontsize=7)
    forest.invert_yaxis()
    forest.set_xlabel("mIoU (%), 95% interval")
    forest.grid(True, axis="x", alpha=0.3)


def plot_tradeoff(rows: list[Row], path: str | Path, title: str = "") -> Path | None:
    """Write the figure to ``path`` (PNG); returns None (and writes nothing) when no row has results."""
    import matplotlib  # here, not at import: choosing a backend is the caller's business until a file is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    points = _plottable(rows)
    if not points:
        return None
    splits = split_names(points)
    networks = list(dict.fromkeys(r.network for r in points))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(networks)}
    height = max(4.0, 0.32 * len(points) + 1.8)
    fig, (forest, trade) = plt.subplots(1, 2, figsize=(13, height), dpi=120, gridspec_kw={"width_ratios": [1, 1.2]})

    draw_forest(forest, points, splits, colours)  # left: one line per row, its splits side by side

    # Right: the trade-off, each row's splits at its MAdds
    anchors, obstacles = [], []
    for r in points:
        if not r.madds:
            continue
        x, c = r.madds / 1e9, colours[r.network]
        first = None
        for k, name in enumerate(splits):
            got = _errors(r.splits.get(name))
            if got is None:
                continue
            y, err = got
            xs = x * (1 + 0.04 * k)  # the other splits beside the first, not on it
            trade.errorbar([xs], [y], yerr=err, zorder=3, **_style(k, c))
            obstacles.append((xs, y, y - err[0][0], y + err[1][0]))
            first = first or (xs, y)
        paper = _paper_miou(r)
        if paper is not None:
            trade.scatter(r.paper.madds_b, paper, marker="x", color="0.5", zorder=2)
            trade.plot([x, r.paper.madds_b], [first[1], paper], color="0.75", lw=0.8, zorder=1)
        anchors.append((*first, str(r.number)))
    trade.set_xscale("log")
    trade.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10 rather than 10^0, 10^1
    trade.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))  # 2, 5
    trade.tick_params(axis="x", which="minor", labelsize=7)
    trade.margins(x=0.25, y=0.15)  # room for the numbers around the outermost points
    trade.set_xlabel("MAdds (billions, 513x513 input; log scale)")
    trade.set_ylabel("mIoU (%)")
    trade.grid(True, which="both", alpha=0.3)
    for k, name in enumerate(splits):
        mfc = "0.3" if k == 0 else "white"
        trade.errorbar([], [], yerr=[], fmt=MARKERS[k % len(MARKERS)], color="0.3", mfc=mfc, label=f"{name} (95% CI)")
    if any(_paper_miou(r) is not None for r in points):
        trade.scatter([], [], marker="x", color="0.5", label="paper (Table 7)")
    trade.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    boxes = [box for point in obstacles for box in _point_boxes(trade, *point)]
    legend = trade.get_legend()
    if legend is not None:
        boxes.append(legend.get_window_extent(renderer))
    place_numbers(trade, anchors, boxes)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
