"""The ablation table of a sweep's rows (``rows``) as Markdown, CSV and LaTeX, and the per-class IoU table.

Columns are the paper's (Network, OS, ASPP, MF, mIoU, Params, MAdds), with n and, for each split, the mean mIoU ±
the seeds' standard deviation, its 95% interval and the difference from the reference row. The CSV has one number
per column. The writers are short enough to keep here; a table library would add a dependency for three loops.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from .. import stats, table7
from ..engine.report import PER_IMAGE
from ..models import head_label
from .rows import SIMILAR, Row, Split


# Formatting
def _pct(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _millions(v: int | None) -> str:
    return "" if v is None else f"{v / 1e6:.2f}M"


def _billions(v: int | None) -> str:
    if v is None:
        return ""
    return f"{v / 1e9:.1f}B" if v >= 100e9 else f"{v / 1e9:.2f}B"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(row: Row) -> str:
    """The state of a variant without results; the reason follows in the notes (it may be long)."""
    return "" if row.state == "done" else row.state


def _paper_miou(row: Row) -> float | None:
    """The paper's mIoU is on VOC 2012 val: shown only beside runs on that data; Params/MAdds hold for any data."""
    return row.paper.miou if row.paper and row.data == table7.DATASET else None


def split_names(rows: list[Row]) -> list[str]:
    """The splits in the table: the primary (val) split first, then the others by name."""
    primaries = {r.primary for r in rows if r.primary}
    names = {name for r in rows for name in r.splits}
    return sorted(names, key=lambda s: (s not in primaries, s))


def columns(rows: list[Row]) -> dict[str, bool]:
    """Optional column groups present in this table."""
    return {
        "latency": any(r.latency_ms is not None for r in rows),
        "paper": any(r.paper for r in rows),
        "evaluation": any(r.extra or not r.from_train for r in rows if r.state == "done"),
        "int8": any(r.int8_miou is not None for r in rows),
        "heads": any(r.arch and r.arch["head"] not in ("aspp", "no_aspp") for r in rows),
        "loss": any(r.arch and r.arch.get("loss") for r in rows),
    }


def _os_cell(arch: dict | None) -> str:
    """The stride evaluated at, and the trained ones where they differ: ``8 (trained 16)`` (``eval.os``),
    ``8 (trained 16, then 8)`` (``trainer.final_os``)."""
    if not arch:
        return ""
    trained, final = arch.get("train_os", arch["os"]), arch.get("final_os")
    if final is not None and final != trained:
        return f"{arch['os']} (trained {trained}, then {final})"
    return str(arch["os"]) if trained == arch["os"] else f"{arch['os']} (trained {trained})"


def _interval(e: stats.Estimate | None, signed: bool = False) -> str:
    if e is None or not e.method or math.isnan(e.low):
        return ""
    fmt = "{:+.2f}" if signed else "{:.2f}"
    return f"[{fmt.format(100 * e.low)}, {fmt.format(100 * e.high)}]"


def row_n(row: Row) -> int:
    """The row's n: the seeds of its primary split, else the most any split has."""
    if row.primary in row.splits:
        return row.splits[row.primary].n
    return max((split.n for split in row.splits.values()), default=0)


def mean_cell(split: Split | None, pm: str = "±") -> str:
    if split is None or split.mean is None:
        return ""
    sd = f" {pm} {100 * split.sd:.2f}" if split.sd is not None else ""
    return f"{100 * split.mean:.2f}{sd}"


def ci_cell(split: Split | None) -> str:
    if split is None or split.estimate is None:
        return ""
    dagger = " †" if split.estimate.method == "seeds (t)" else ""
    return _interval(split.estimate) + dagger if _interval(split.estimate) else ""


def delta_cell(row: Row, split: Split | None) -> str:
    if split is None or row.reference is None:
        return ""
    if row.reference == row.number:
        return "ref"
    d = split.delta
    if d is None:
        return ""
    text = f"{100 * d.value:+.2f}"
    if not _interval(d):
        return text
    return f"{text} {_interval(d, signed=True)}{'' if d.excludes_zero else ' ' + SIMILAR}"


def head_cell(row: Row, cols: dict[str, bool], check: str) -> str:
    a = row.arch
    if cols.get("heads"):
        return head_label(a["head"]) if a else ""
    return check if a and a["head"] == "aspp" else ""


def to_cells(row: Row, cols: dict[str, bool], check: str, splits: list[str], pm: str = "±") -> list[str]:
    cells = [str(row.number), row.network, _os_cell(row.arch), head_cell(row, cols, check), check if row.mf else ""]
    if cols.get("loss"):
        cells.append(((row.arch or {}).get("loss") or "CE") if row.arch else "")
    if cols["evaluation"]:
        cells.append(row.short_eval if row.state == "done" else "")
    n_seeds = row_n(row)
    cells.append(str(n_seeds) if n_seeds else "")
    for name in splits:
        split = row.splits.get(name)
        n = f" (n={split.n})" if split and split.n != n_seeds else ""
        cells += [mean_cell(split, pm) + n, ci_cell(split), delta_cell(row, split)]
    cells += [_millions(row.params), _billions(row.madds)]
    if cols["int8"]:
        cells.append(_pct(row.int8_miou))
    if cols["latency"]:
        cells.append("" if row.latency_ms is None else f"{row.latency_ms:.1f} ms")
    if cols["paper"]:
        p = row.paper
        pm_ = _paper_miou(row)
        cells += [
            "" if pm_ is None else f"{pm_:.2f}",
            f"{p.params_m:.2f}M" if p else "",
            f"{p.madds_b:g}B" if p else "",
        ]
    return cells


def header(cols: dict[str, bool], latency_device: str | None, splits: list[str]) -> list[str]:
    head = ["#", "Network", "OS", "Head" if cols.get("heads") else "ASPP", "MF"]
    if cols.get("loss"):
        head.append("Loss")
    if cols["evaluation"]:
        head.append("Evaluation")
    head.append("n")
    for name in splits:
        head += [f"{name} mIoU", f"{name} 95% CI", f"Δ {name}"]
    head += ["Params", "MAdds"]
    if cols["int8"]:
        head.append("INT8 mIoU")
    if cols["latency"]:
        head.append(f"Latency ({latency_device})" if latency_device else "Latency")
    if cols["paper"]:
        head += ["paper mIoU", "paper Params", "paper MAdds"]
    return head


def _latency_device(rows: list[Row]) -> str | None:
    devices = {r.latency_device for r in rows if r.latency_ms is not None}
    return devices.pop() if len(devices) == 1 else None


def _seeds(seeds) -> str:
    seeds = sorted(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"


def notes(rows: list[Row], samples: int = stats.SAMPLES) -> list[str]:
    """What the table cannot show in its cells: how to read it, runs without results, seeds that failed or are
    missing, records without per-image matrices."""
    lines = []
    done = [r for r in rows if r.state == "done"]
    if done:
        data = ", ".join(sorted({r.data for r in done if r.data})) or "the runs'"
        scales = sorted({(r.mf_scales, r.flip) for r in done if r.mf_scales})
        mf = " or ".join(f"scales {', '.join(f'{x:g}' for x in s)}{' x flip' if flip else ''}" for s, flip in scales)
        mf = f"; MF = {mf}" if mf else ""
        lines.append(
            f"mIoU (%) on the {data} data's {' and '.join(split_names(done))} splits: the mean over the n training "
            f"seeds that finished, ± their standard deviation; MAdds at 513x513 at the stride evaluated{mf}."
        )
        lines.append(
            f"95% CI: percentile bootstrap ({samples} resamples) over seeds and images where n >= 2, over images "
            "where n = 1; † over seeds alone (Student t), for records without per-image matrices."
        )
        refs = sorted({r.reference for r in done if r.reference is not None})
        if refs:
            names = ", ".join(f"{n} ({rows[n - 1].label})" for n in refs)
            lines.append(
                f"Δ: the difference from the reference row ({names}; chosen on the {done[0].primary} split), with a "
                f"95% paired bootstrap interval over the same images (and the seeds both rows have); {SIMILAR}: the "
                "interval contains 0, not distinguishable from the reference."
            )
    for r in rows:
        where = f"{r.number} {r.label}"
        if r.state != "done":
            lines.append(f"{where} ({', '.join(r.runs)}): {r.state}{': ' + _one_line(r.reason) if r.reason else ''}")
            continue
        seen = set()
        for seed, what in sorted(r.failed_seeds.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            if (seed, what) not in seen:
                seen.add((seed, what))
                lines.append(f"{where}: seed {seed} {_one_line(what)}")
        if r.missing_seeds:
            lines.append(f"{where}: {_seeds(r.missing_seeds)} missing (no run folder)")
        if r.reason:
            lines.append(f"{where}: {_one_line(r.reason)}")
        for name, split in r.splits.items():
            if split.no_matrices and not split.no_matrices.endswith(f"has no {PER_IMAGE}"):
                lines.append(f"{where}, {name}: no per-image matrices ({split.no_matrices})")
    older = [
        str(r.number) for r in rows if any(s.no_matrices.endswith(f"has no {PER_IMAGE}") for s in r.splits.values())
    ]
    if older:
        lines.append(
            f"row{'s' if len(older) > 1 else ''} {', '.join(older)}: records without {PER_IMAGE} (evaluated before "
            "per-image matrices were kept; scripts/eval.py writes them): intervals over seeds alone (†) where "
            "n >= 2, none where n = 1, and differences without an interval unless two seeds or more pair them."
        )
    if any(r.paper for r in rows):
        lines.append("paper: MobileNetV2 paper, Table 7 (VOC 2012 val, COCO-pretrained); mIoU shown for VOC runs.")
    return list(dict.fromkeys(lines))


def to_markdown(rows: list[Row], extra_notes: list[str] = (), samples: int = stats.SAMPLES) -> str:
    cols, splits = columns(rows), split_names(rows)
    head = header(cols, _latency_device(rows), splits) + ["Status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = to_cells(r, cols, "✓", splits) + [_status(r)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    extra = [n.replace("|", "\\|") for n in [*notes(rows, samples), *extra_notes]]
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else [])) + "\n"


BASE_FIELDS = (
    "row label evaluation state reason runs network encoder width tap os train_os final_os head aspp loss mf mf_scales "
    "data "
    "seeds failed_seeds missing_seeds reference"
).split()
SPLIT_FIELDS = (
    "miou sd n ci_low ci_high ci_method delta delta_low delta_high delta_method distinguishable records".split()
)
TAIL_FIELDS = "params madds int8_miou latency_ms latency_device paper_miou paper_params_m paper_madds_b".split()


def _number(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def csv_fields(rows: list[Row]) -> list[str]:
    return BASE_FIELDS + [f"{s}_{f}" for s in split_names(rows) for f in SPLIT_FIELDS] + TAIL_FIELDS


def to_csv(rows: list[Row]) -> str:
    """One number per column at full precision (mIoU as a fraction, Params and MAdds as counts); each split's
    columns are prefixed with its name (``val_miou``, ``test_ci_low``)."""
    buf = io.StringIO()
    fields = csv_fields(rows)
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        a = r.arch or {}
        line = {
            "row": r.number,
            "label": r.label,
            "evaluation": r.evaluation or None,
            "state": r.state,
            "reason": _one_line(r.reason),
            "runs": ";".join(r.runs),
            "network": r.network,
            "encoder": a.get("encoder"),
            "width": a.get("width"),
            "tap": a.get("tap"),
            "os": a.get("os"),
            "train_os": a.get("train_os"),
            "final_os": a.get("final_os"),
            "head": a.get("head"),
            "aspp": None if not a else a["head"] == "aspp",
            "loss": a.get("loss") or ("CE" if a else None),
            "mf": r.mf,
            "mf_scales": " ".join(f"{s:g}" for s in r.mf_scales) if r.mf_scales else None,
            "data": r.data,
            "seeds": " ".join(str(s) for s in r.seeds),
            "failed_seeds": " ".join(str(s) for s in r.failed_seeds),
            "missing_seeds": " ".join(str(s) for s in r.missing_seeds),
            "reference": r.reference,
            "params": r.params,
            "madds": r.madds,
            "int8_miou": r.int8_miou,
            "latency_ms": r.latency_ms,
            "latency_device": r.latency_device,
            "paper_miou": _paper_miou(r),
            "paper_params_m": r.paper.params_m if r.paper else None,
            "paper_madds_b": r.paper.madds_b if r.paper else None,
        }
        for name, split in r.splits.items():
            e, d = split.estimate, split.delta
            interval_ok = e is not None and bool(e.method)
            delta_ok = d is not None and bool(d.method)
            values = {
                "miou": split.mean,
                "sd": split.sd,
                "n": split.n,
                "ci_low": e.low if interval_ok else None,
                "ci_high": e.high if interval_ok else None,
                "ci_method": e.method if interval_ok else None,
                "delta": d.value if d else (0.0 if r.reference == r.number else None),
                "delta_low": d.low if delta_ok else None,
                "delta_high": d.high if delta_ok else None,
                "delta_method": d.method if delta_ok else None,
                "distinguishable": d.excludes_zero if delta_ok else None,
                "records": ";".join(split.records),
            }
            line.update({f"{name}_{k}": _number(v) for k, v in values.items()})
        writer.writerow(line)
    return buf.getvalue()


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "≈": r"$\approx$",
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(c, c) for c in text)


def to_latex(rows: list[Row], extra_notes: list[str] = (), samples: int = stats.SAMPLES) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs,amssymb}``); a variant without results shows its state
    in its first mIoU column, and the notes follow as comments."""
    cols, splits = columns(rows), split_names(rows)
    head = header(cols, _latency_device(rows), splits)
    out = [r"\begin{tabular}{l" + "c" * (len(head) - 1) + "}", r"\toprule"]
    out.append(" & ".join(latex_escape(h) for h in head) + r" \\")
    out.append(r"\midrule")
    first_miou = head.index("n") + 1
    for r in rows:
        cells = [c if c == r"\checkmark" else latex_escape(c) for c in to_cells(r, cols, r"\checkmark", splits)]
        if r.state != "done":
            cells[first_miou] = r"\textit{" + latex_escape(r.state) + "}"  # the reason is in the notes below
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {n}" for n in [*notes(rows, samples), *extra_notes]]
    return "\n".join(out) + "\n"


# Per-class IoU
def class_names(rows: list[Row]) -> list[str]:
    names: dict[str, None] = {}
    for r in rows:
        for split in r.splits.values():
            for iou in split.iou:
                names.update(dict.fromkeys(iou))
    return list(names)


def class_iou(split: Split, name: str) -> tuple[float | None, float | None, int]:
    """The mean over seeds of one class's IoU (seeds where the class had no IoU left out), its sd, and n."""
    values = [v for v in (iou.get(name) for iou in split.iou) if v is not None]
    if not values:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None, len(values)


def per_class_markdown(rows: list[Row]) -> str:
    """A class x row table of IoU (%) for each split (mean over seeds); the columns are the main table's rows."""
    done = [r for r in rows if r.state == "done" and r.splits]
    classes = class_names(done)
    out = ["Per-class IoU (%), the mean over seeds; columns are the rows of table.md:", ""]
    out += [f"- {r.number}: {r.title} (n={row_n(r)})" for r in done]
    for name in split_names(done):
        out += ["", f"### {name}", "", "| class | " + " | ".join(str(r.number) for r in done) + " |"]
        out.append("|" + "---|" * (len(done) + 1))
        for cls in classes:
            cells = [_pct(class_iou(r.splits[name], cls)[0]) if name in r.splits else "" for r in done]
            out.append(f"| {cls} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def per_class_csv(rows: list[Row]) -> str:
    """One line per class, split and row: the mean IoU over seeds (a fraction), its sd and n."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "split", "row", "label", "evaluation", "iou", "sd", "n"])
    done = [r for r in rows if r.state == "done"]
    for cls in class_names(done):
        for r in done:
            for name, split in r.splits.items():
                mean, sd, n = class_iou(split, cls)
                writer.writerow([cls, name, r.number, r.label, r.evaluation, mean, sd, n])
    return buf.getvalue()
