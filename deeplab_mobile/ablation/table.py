"""A sweep's runs as the paper's ablation table: Network, OS, ASPP, MF, mIoU, Params, MAdds (+ latency), in
Table 7's order, with the paper's values beside every row whose configuration is a Table 7 row.

One row per evaluation: a finished run gives a single-scale row and, when it was evaluated with MF + flip, an MF
row. A run without results gives one row that says what happened to it. The Markdown, CSV and LaTeX writers are
short enough to keep here; a table library would add a dependency for three loops.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from .. import table7
from ..table7 import TABLE7, Table7Row
from .runs import TRAIN, Run

# Table 7's order: its networks (encoder and tap) in the order the table lists them, then any other network.
NETWORKS = dict.fromkeys((row.encoder, row.tap) for row in (*TABLE7, table7.LAST_TAP_ROW))
NETWORK_ORDER = {network: i for i, network in enumerate(NETWORKS)}
# Heads: Table 7's two, then the others (experiment=heads), by name in tables and plots
HEAD_NAMES = {
    "aspp": "ASPP", "no_aspp": "no ASPP", "deeplabv3plus": "V3+ (ASPP)", "deeplabv3plus_no_aspp": "V3+ (no ASPP)",
    "lraspp": "LR-ASPP",
}  # fmt: skip
HEAD_ORDER = {head: i for i, head in enumerate(HEAD_NAMES)}


def head_name(head: str | None) -> str:
    return HEAD_NAMES.get(head, str(head))


@dataclass
class Row:
    run: str
    state: str
    network: str
    arch: dict | None
    mf: bool
    data: str | None = None
    miou: float | None = None  # 0..1
    params: int | None = None
    madds: int | None = None
    latency_ms: float | None = None
    latency_device: str | None = None
    paper: Table7Row | None = None
    reason: str = ""
    mf_scales: tuple[float, ...] | None = None  # of an MF row, as the evaluation recorded them
    evaluation: str = TRAIN  # the record the row's numbers come from
    split: str | None = None  # the split it evaluated
    int8_miou: float | None = None  # the run's INT8 model on the same evaluation (quant/quant.json)

    @property
    def label(self) -> str:
        """``MNet V2* OS16 ASPP MF``: names the variant in plots and notes."""
        if self.arch is None:
            return self.network
        return f"{self.network} OS{self.arch['os']} {head_name(self.arch['head'])}{' MF' if self.mf else ''}"


def paper_row(arch: dict, mf: bool, mf_scales: tuple[float, ...] | None = None) -> Table7Row | None:
    """The Table 7 row with this network, head, output stride and evaluation (width 1, 21 classes; an MF row at
    the paper's scales, where the record names them), if any."""
    if arch["width"] != 1.0 or arch["num_classes"] != 21:
        return None
    if mf and mf_scales is not None and tuple(mf_scales) != table7.MF_SCALES:
        return None
    wanted = (arch["encoder"], arch["tap"], arch["os"], arch["head"], mf)
    return next((row for row in TABLE7 if (row.encoder, row.tap, row.os, row.head, row.mf) == wanted), None)


def rows_of(run: Run, evaluations: tuple[str, ...] = (TRAIN,)) -> list[Row]:
    """A single-scale row and, where it ran, an MF row for each chosen evaluation record (``"all"``: every
    record); each row at the stride its evaluation ran at."""
    if run.arch is None:
        return [Row(run.name, run.state, "?", None, False, reason=run.reason)]
    network = run.arch["network"]
    if run.state != "done":
        return [Row(run.name, run.state, network, run.arch, False, run.data, reason=run.reason)]
    names = list(run.evaluations) if "all" in evaluations else [n for n in evaluations if n in run.evaluations]
    rows = []
    for name in names:
        m = run.evaluations[name]
        ev = m.get("eval") or {}
        ss_os = int(ev.get("os") or run.arch["os"])
        for mode in ("ss", "mf"):
            if mode not in m:
                continue
            mf = mode == "mf"
            arch = {**run.arch, "os": int(ev.get("mf_os") or ss_os) if mf else ss_os}
            row = Row(run.name, "done", network, arch, mf, run.data, m[mode]["miou"], m.get("params"))
            row.madds = m.get("madds_mf" if mf else "madds")
            scales = ev.get("mf_scales")
            row.mf_scales = tuple(scales) if mf and scales else None
            row.paper = paper_row(arch, mf, row.mf_scales)
            row.evaluation, row.split = name, m.get("split")
            row.int8_miou = int8_miou(run.quant, row, mode)
            if run.latency and not mf and arch["os"] == run.arch["os"]:  # one single-scale pass at that stride
                row.latency_ms = run.latency.get("median_ms")
                row.latency_device = run.latency.get("device")
            rows.append(row)
    return rows


def int8_miou(quant: dict | None, row: Row, mode: str) -> float | None:
    """The INT8 mIoU of the run's ``quant.json`` for this row, when it evaluated the same thing: the training's own
    record's split, stride and (for MF) scales."""
    if not quant or row.evaluation != TRAIN or quant.get("os") != row.arch["os"]:
        return None
    ev = quant.get("eval") or {}
    if ev.get("split") != row.split or mode not in (quant.get("miou") or {}).get("int8", {}):
        return None
    if mode == "mf" and tuple((ev.get("mf") or {}).get("scales") or ()) != (row.mf_scales or ()):
        return None
    return quant["miou"]["int8"][mode]


def order_key(row: Row):
    """Table 7's order: encoder (V1, V2, R101, then others), tap, width (widest first), head (ASPP, none, then
    DeepLabV3+ and LR-ASPP), OS 32-16-8, SS before MF; runs that could not be read come last."""
    a = row.arch
    if a is None:
        return (9, row.run)
    return (
        NETWORK_ORDER.get((a["encoder"], a["tap"]), len(NETWORK_ORDER)), -a["width"], HEAD_ORDER.get(a["head"], 9),
        -a["os"], row.mf, row.run, row.evaluation != TRAIN, row.evaluation,
    )  # fmt: skip


def build_rows(runs: list[Run], evaluations: tuple[str, ...] = (TRAIN,)) -> list[Row]:
    return sorted((row for run in runs for row in rows_of(run, evaluations)), key=order_key)


# Formatting
def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def _millions(v: int | None) -> str:
    return "" if v is None else f"{v / 1e6:.2f}M"


def _billions(v: int | None) -> str:
    if v is None:
        return ""
    return f"{v / 1e9:.1f}B" if v >= 100e9 else f"{v / 1e9:.2f}B"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(row: Row) -> str:
    """The state of a run without results; the reason follows in the notes (it may be long)."""
    return "" if row.state == "done" else row.state


def _paper_miou(row: Row) -> float | None:
    """The paper's mIoU is on VOC 2012 val: shown only beside runs on that data; Params/MAdds hold for any data."""
    return row.paper.miou if row.paper and row.data == table7.DATASET else None


def columns(rows: list[Row]) -> dict[str, bool]:
    """Optional column groups present in this table (the evaluation's name where not only the trainings' own)."""
    return {"latency": any(r.latency_ms is not None for r in rows), "paper": any(r.paper for r in rows),
            "evaluation": any(r.evaluation != TRAIN for r in rows),
            "int8": any(r.int8_miou is not None for r in rows),
            "heads": any(r.arch and r.arch["head"] not in ("aspp", "no_aspp") for r in rows)}  # fmt: skip


def _os_cell(arch: dict | None) -> str:
    """The stride evaluated at, and the trained ones where they differ: ``8 (trained 16)`` (``eval.os``),
    ``8 (trained 16, then 8)`` (``trainer.final_os``)."""
    if not arch:
        return ""
    trained, final = arch.get("train_os", arch["os"]), arch.get("final_os")
    if final is not None and final != trained:
        return f"{arch['os']} (trained {trained}, then {final})"
    return str(arch["os"]) if trained == arch["os"] else f"{arch['os']} (trained {trained})"


def to_cells(row: Row, cols: dict[str, bool], check: str) -> list[str]:
    a = row.arch
    cells = [
        row.network, _os_cell(a),
        (head_name(a["head"]) if a else "") if cols.get("heads") else (check if a and a["head"] == "aspp" else ""),
        check if row.mf else "",
        _pct(row.miou), _millions(row.params), _billions(row.madds),
    ]  # fmt: skip
    if cols["int8"]:
        cells.append(_pct(row.int8_miou))
    if cols["latency"]:
        cells.append("" if row.latency_ms is None else f"{row.latency_ms:.1f} ms")
    if cols["paper"]:
        p = row.paper
        pm = _paper_miou(row)
        cells += ["" if pm is None else f"{pm:.2f}", f"{p.params_m:.2f}M" if p else "", f"{p.madds_b:g}B" if p else ""]
    if cols["evaluation"]:
        cells.append(row.evaluation if row.state == "done" else "")
    return cells


def header(cols: dict[str, bool], latency_device: str | None) -> list[str]:
    head = ["Network", "OS", "Head" if cols.get("heads") else "ASPP", "MF", "mIoU", "Params", "MAdds"]
    if cols["int8"]:
        head.append("INT8 mIoU")
    if cols["latency"]:
        head.append(f"Latency ({latency_device})" if latency_device else "Latency")
    if cols["paper"]:
        head += ["paper mIoU", "paper Params", "paper MAdds"]
    if cols["evaluation"]:
        head.append("Evaluation")
    return head


def _latency_device(rows: list[Row]) -> str | None:
    devices = {r.latency_device for r in rows if r.latency_ms is not None}
    return devices.pop() if len(devices) == 1 else None


def notes(rows: list[Row]) -> list[str]:
    """What the table cannot show in its cells: runs without results and where the numbers come from."""
    lines = [f"{r.run}: {r.state}{': ' + _one_line(r.reason) if r.reason else ''}" for r in rows if r.state != "done"]
    data = sorted({f"{r.data} {r.split or 'val'}" for r in rows if r.data and r.state == "done"})
    if data:
        scales = sorted({r.mf_scales for r in rows if r.mf_scales})
        mf = (
            "; MF = " + " or ".join(f"scales {', '.join(f'{x:g}' for x in s)} x flip" for s in scales) if scales else ""
        )
        lines.append(f"mIoU (%) on the {', '.join(data)} split; MAdds at 513x513 at the stride evaluated{mf}.")
    if any(r.paper for r in rows):
        lines.append("paper: MobileNetV2 paper, Table 7 (VOC 2012 val, COCO-pretrained); mIoU shown for VOC runs.")
    return lines


def to_markdown(rows: list[Row], extra_notes: list[str] = ()) -> str:
    cols = columns(rows)
    head = header(cols, _latency_device(rows)) + ["Status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in to_cells(r, cols, "✓") + [_status(r)]) + " |")
    extra = [n.replace("|", "\\|") for n in [*notes(rows), *extra_notes]]
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else [])) + "\n"


CSV_FIELDS = [
    "run", "evaluation", "split", "state", "reason", "network", "encoder", "width", "tap", "os", "train_os",
    "final_os", "head", "aspp", "mf", "data", "miou", "int8_miou", "params", "madds", "latency_ms", "latency_device",
    "paper_miou", "paper_params_m", "paper_madds_b",
]  # fmt: skip


def to_csv(rows: list[Row]) -> str:
    """Full-precision values, one row per table row (mIoU as a fraction, Params and MAdds as counts)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        a = r.arch or {}
        writer.writerow({
            "run": r.run, "evaluation": r.evaluation if r.state == "done" else None, "split": r.split,
            "state": r.state, "reason": _one_line(r.reason), "network": r.network,
            "encoder": a.get("encoder"), "width": a.get("width"), "tap": a.get("tap"), "os": a.get("os"),
            "train_os": a.get("train_os"), "final_os": a.get("final_os"),
            "head": a.get("head"), "aspp": None if not a else a["head"] == "aspp", "mf": r.mf, "data": r.data,
            "miou": r.miou,
            "int8_miou": r.int8_miou,
            "params": r.params, "madds": r.madds, "latency_ms": r.latency_ms, "latency_device": r.latency_device,
            "paper_miou": _paper_miou(r), "paper_params_m": r.paper.params_m if r.paper else None,
            "paper_madds_b": r.paper.madds_b if r.paper else None,
        })  # fmt: skip
    return buf.getvalue()


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(c, c) for c in text)


def to_latex(rows: list[Row], extra_notes: list[str] = ()) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs,amssymb}``); a run without results shows its state in
    the mIoU column, and the reasons follow as comments."""
    cols = columns(rows)
    head = header(cols, _latency_device(rows))
    out = [r"\begin{tabular}{l" + "c" * (len(head) - 1) + "}", r"\toprule"]
    out.append(" & ".join(latex_escape(h) for h in head) + r" \\")
    out.append(r"\midrule")
    for r in rows:
        cells = [c if c == r"\checkmark" else latex_escape(c) for c in to_cells(r, cols, r"\checkmark")]
        if r.state != "done":
            cells[4] = r"\textit{" + latex_escape(r.state) + "}"  # the reason is in the notes below
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {latex_escape(n)}" for n in [*notes(rows), *extra_notes]]
    return "\n".join(out) + "\n"
