"""A sweep's runs as the rows of the ablation table, with the spread a reader needs to trust them.

One row per network and evaluation protocol: runs that differ only in their training seed are one row (n = the
seeds that finished), and each split a run was evaluated on (its val split, a held-out test split) is a ``Split`` of
the row: the value of each seed, a 95% interval, and the difference from a reference row with its paired interval
(``stats``). Single scale and MF + flip are separate rows, each at the stride its evaluation ran at, in Table 7's
order, with the Table 7 row whose configuration it is. A variant without results gives one row that says what
happened to it. ``table`` writes the rows out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import stats, table7
from ..engine.report import PER_IMAGE, read_per_image
from ..errors import InvalidValue
from ..models import HEAD_LABELS, head_label
from ..table7 import TABLE7, Table7Row
from .runs import TRAIN, Run

# Table 7's order: its networks (encoder and tap) in the order the table lists them, then any other network.
NETWORKS = dict.fromkeys((row.encoder, row.tap) for row in (*TABLE7, table7.LAST_TAP_ROW))
NETWORK_ORDER = {network: i for i, network in enumerate(NETWORKS)}
HEAD_ORDER = {head: i for i, head in enumerate(HEAD_LABELS)}
SIMILAR = "≈"  # a difference whose interval contains 0: not distinguishable from the reference


@dataclass
class Split:
    """One split's results of a row: a value per seed, and each seed's per-image matrices where every record has
    them on the same images."""

    name: str
    seeds: list[int] = field(default_factory=list)
    mious: list[float] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # <run>/<record> of each seed
    iou: list[dict] = field(default_factory=list)  # each seed's per-class IoU (class name -> value or None)
    per_image: dict[int, np.ndarray] | None = None
    images: list[str] | None = None  # the image ids of the matrices
    no_matrices: str = ""  # why ``per_image`` is None
    estimate: stats.Estimate | None = None
    delta: stats.Estimate | None = None

    @property
    def n(self) -> int:
        return len(self.mious)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.mious)) if self.mious else None

    @property
    def sd(self) -> float | None:
        return float(np.std(self.mious, ddof=1)) if len(self.mious) > 1 else None


@dataclass
class Row:
    network: str
    arch: dict | None
    mf: bool
    state: str = "done"
    runs: list[str] = field(default_factory=list)
    data: str | None = None
    params: int | None = None
    madds: int | None = None
    latency_ms: float | None = None
    latency_device: str | None = None
    paper: Table7Row | None = None
    reason: str = ""
    mf_scales: tuple[float, ...] | None = None  # of an MF row, as the evaluation recorded them
    flip: bool = True
    evaluation: str = ""  # the protocol: "os8", "mf-os8-0.875-1-1.125-flip" (+ a record's other settings)
    extra: str = ""  # what else the records' names say (another checkpoint or data copy), or a given name
    from_train: bool = True  # the training's own evaluation is among the records
    splits: dict[str, Split] = field(default_factory=dict)
    primary: str | None = None  # the split settings are chosen on (the runs' val split)
    int8_miou: float | None = None  # the mean over seeds of the runs' INT8 models (quant/quant.json)
    failed_seeds: dict[int, str] = field(default_factory=dict)  # seed -> what happened to its run
    missing_seeds: list[int] = field(default_factory=list)
    number: int = 0  # the row's number in the table and the plot
    reference: int | None = None  # the number of the row its differences are taken from

    @property
    def label(self) -> str:
        """``MNet V2* OS16 ASPP MF``: names the variant in plots and notes."""
        if self.arch is None:
            return self.network
        loss = f" {self.arch['loss']}" if self.arch.get("loss") else ""
        return f"{self.network} OS{self.arch['os']} {head_label(self.arch['head'])}{loss}{' MF' if self.mf else ''}"

    @property
    def title(self) -> str:
        """``MNet V2* x0.5 OS8 ASPP MF 0.875-1.125 + flip``: the network and, where it is not plain single scale,
        the evaluation."""
        if self.arch is None:
            return self.network
        name = f"{self.network} OS{self.arch['os']} {head_label(self.arch['head'])}"
        if self.arch.get("loss"):
            name += f" {self.arch['loss']}"
        return f"{name} {self.short_eval}" if self.mf or self.extra else name

    @property
    def short_eval(self) -> str:
        """The evaluation in a few characters: ``SS``, ``MF 0.5-1.75 + flip`` (and a record's other settings)."""
        if not self.mf:
            name = "SS"
        else:
            scales = self.mf_scales or ()
            span = f"{min(scales):g}-{max(scales):g}" if len(scales) > 1 else "".join(f"{s:g}" for s in scales)
            name = f"MF {span}{' + flip' if self.flip else ''}"
        return f"{name} ({self.extra})" if self.extra else name

    @property
    def seeds(self) -> list[int]:
        split = self.splits.get(self.primary) if self.primary else None
        return split.seeds if split else []

    @property
    def miou(self) -> float | None:
        """The mean mIoU on the primary split."""
        split = self.splits.get(self.primary) if self.primary else None
        return split.mean if split else None


def paper_row(arch: dict, mf: bool, mf_scales: tuple[float, ...] | None = None) -> Table7Row | None:
    """The Table 7 row with this network, head, output stride and evaluation (width 1, 21 classes; an MF row at
    the paper's scales, where the record names them), if any."""
    if arch["width"] != 1.0 or arch["num_classes"] != 21:
        return None
    if mf and mf_scales is not None and tuple(mf_scales) != table7.MF_SCALES:
        return None
    wanted = (arch["encoder"], arch["tap"], arch["os"], arch["head"], mf)
    return next((row for row in TABLE7 if (row.encoder, row.tap, row.os, row.head, row.mf) == wanted), None)


# Records -> protocols
def _scales(values) -> str:
    return "-".join(f"{s:g}" for s in values)


def record_protocol(record: dict) -> str:
    """The name ``scripts/eval.py`` gives a record of this protocol (``evaluator.Protocol.name``)."""
    ev = record.get("eval") or {}
    ss = f"os{ev.get('os')}"
    if not ev.get("mf"):
        return ss
    return f"{ss}_mf-os{ev.get('mf_os')}-{_scales(ev.get('mf_scales') or ())}{'-flip' if ev.get('flip') else ''}"


def record_extra(name: str, record: dict) -> str:
    """What a record's name says beyond its protocol and split (``ckpt-...``, ``data-...``), or the whole name
    when it was given (``name=``)."""
    if name == TRAIN:
        return ""
    protocol = record_protocol(record)
    rest = name[len(protocol) :] if name.startswith(protocol) else name
    return "_".join(part for part in rest.split("_") if part and not part.startswith("split-"))


@dataclass(frozen=True)
class Entry:
    """One mode (single scale or MF) of one evaluation record of one run."""

    run: Run
    name: str
    mode: str
    key: tuple  # the row it belongs to within its variant: mode, stride, scales, flip, extra
    arch: dict
    split: str

    @property
    def record(self) -> dict:
        return self.run.evaluations[self.name]


def entries(run: Run) -> list[Entry]:
    """Every mode of every evaluation record of a finished run, the training's own first."""
    result = []
    for name, m in run.evaluations.items():
        ev = m.get("eval") or {}
        ss_os = int(ev.get("os") or run.arch["os"])
        extra = record_extra(name, m)
        split = m.get("split") or run.val_split or "val"
        for mode in ("ss", "mf"):
            if mode not in m:
                continue
            if mode == "ss":
                key = ("ss", ss_os, (), False, extra)
            else:
                key = (
                    "mf",
                    int(ev.get("mf_os") or ss_os),
                    tuple(ev.get("mf_scales") or ()),
                    bool(ev.get("flip")),
                    extra,
                )
            arch = {**run.arch, "os": key[1]}
            result.append(Entry(run, name, mode, key, arch, split))
    return result


def evaluation_name(key: tuple) -> str:
    mode, stride, scales, flip, extra = key
    name = f"os{stride}" if mode == "ss" else f"mf-os{stride}-{_scales(scales)}{'-flip' if flip else ''}"
    return f"{name}_{extra}" if extra else name


# Variants (runs alike but for the seed) -> rows
def group_variants(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by variant, in the order first seen; a run without a variant (unreadable) is its own group."""
    groups: dict[object, list[Run]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.variant if run.variant is not None else ("alone", i), []).append(run)
    return list(groups.values())


def _matrices(entry: Entry) -> tuple[list[str], np.ndarray] | str:
    """The entry's per-image matrices and image ids, or why there are none."""
    path = entry.run.record_dir(entry.name) / PER_IMAGE
    if not path.is_file():
        return f"{entry.run.name}/{entry.name} has no {PER_IMAGE}"
    try:
        names, matrices = read_per_image(path)
    except (OSError, ValueError, KeyError) as exc:
        return f"{path} is unreadable ({exc})"
    if entry.mode not in matrices:
        return f"{path} has no {entry.mode} matrices"
    return names, matrices[entry.mode]


def fill_split(split: Split, chosen: list[Entry]) -> None:
    """Each seed's value and per-class IoU, and the per-image matrices when every seed has them on one image list."""
    per_image, images = {}, None
    for entry in chosen:
        m = entry.record[entry.mode]
        split.seeds.append(entry.run.seed)
        split.mious.append(float(m["miou"]))
        split.records.append(f"{entry.run.name}/{entry.name}")
        split.iou.append(m.get("iou") if isinstance(m.get("iou"), dict) else {})
        if split.no_matrices:
            continue
        got = _matrices(entry)
        if isinstance(got, str):
            split.no_matrices = got
        elif images is not None and got[0] != images:
            split.no_matrices = f"{entry.run.name}/{entry.name} scored other images than the other seeds"
        else:
            images, per_image[entry.run.seed] = got
    if not split.no_matrices:
        split.per_image, split.images = per_image, images


def int8_miou(run: Run, entry: Entry) -> float | None:
    """The INT8 mIoU of the run's ``quant.json`` for this entry, when it evaluated the same thing: the training's
    own record's split, stride and (for MF) scales."""
    quant = run.quant
    if not quant or entry.name != TRAIN or quant.get("os") != entry.arch["os"]:
        return None
    ev = quant.get("eval") or {}
    if ev.get("split") != entry.split or entry.mode not in (quant.get("miou") or {}).get("int8", {}):
        return None
    if entry.mode == "mf" and tuple((ev.get("mf") or {}).get("scales") or ()) != tuple(entry.key[2]):
        return None
    return quant["miou"]["int8"][entry.mode]


def rows_of_variant(group: list[Run], evaluations: tuple[str, ...], expected_seeds: list[int]) -> list[Row]:
    """The rows of one variant: one per protocol chosen by ``evaluations`` (record names, ``train``, or ``all``),
    each with a column group per split; or one row saying what happened when no run finished."""
    first = group[0]
    done = [r for r in group if r.state == "done"]
    network = first.arch["network"] if first.arch else "?"
    failed = {r.seed: r.state + (f": {r.reason}" if r.reason else "") for r in group if r.state != "done"}
    present = {r.seed for r in group}
    missing = [s for s in expected_seeds if s not in present]
    if not done:
        row = Row(network, first.arch, False, first.state, [r.name for r in group], first.data, reason=first.reason)
        row.failed_seeds, row.missing_seeds = failed, missing
        return [row]
    seen_seeds: dict = {}
    for run in done:  # one run per seed: a second run of a seed (a copy, a rerun elsewhere) is left out and named
        seen_seeds.setdefault(run.seed, run)
    duplicates = [r for r in done if seen_seeds[r.seed] is not r]
    all_entries = [e for run in seen_seeds.values() for e in entries(run)]
    if "all" in evaluations:
        keys = list(dict.fromkeys(e.key for e in all_entries))
    else:
        keys = list(dict.fromkeys(e.key for e in all_entries if e.name in evaluations))
    rows = []
    for key in keys:
        matching = [e for e in all_entries if e.key == key]
        sample = next((e for e in matching if e.name == TRAIN), matching[0])
        row = Row(network, sample.arch, key[0] == "mf", "done", [r.name for r in group], first.data)
        row.params, row.madds = sample.record.get("params"), sample.record.get("madds_mf" if row.mf else "madds")
        row.mf_scales, row.flip, row.extra = (key[2] or None) if row.mf else None, key[3], key[4]
        row.evaluation, row.from_train = evaluation_name(key), any(e.name == TRAIN for e in matching)
        row.paper = paper_row(sample.arch, row.mf, row.mf_scales)
        row.primary = first.val_split or sample.split
        row.failed_seeds, row.missing_seeds = failed, missing
        if duplicates:
            row.reason = "left out, a second run of the same seed: " + ", ".join(r.name for r in duplicates)
        by_split: dict[str, list[Entry]] = {}
        for entry in matching:  # the first record of each run for each split (the training's own first)
            chosen = by_split.setdefault(entry.split, [])
            if all(e.run is not entry.run for e in chosen):
                chosen.append(entry)
        for name in sorted(by_split, key=lambda s: (s != row.primary, s)):
            row.splits[name] = Split(name)
            fill_split(row.splits[name], by_split[name])
        int8 = [v for v in (int8_miou(e.run, e) for e in matching) if v is not None]
        row.int8_miou = float(np.mean(int8)) if int8 else None
        latency = next((r.latency for r in seen_seeds.values() if r.latency), None)
        if latency and not row.mf and row.arch["os"] == first.arch["os"]:  # one single-scale pass at that stride
            runtime = latency.get("runtime", "torch")  # a latency.json written before runtimes were named: torch's
            row.latency_ms, row.latency_device = latency.get("median_ms"), f"{runtime}, {latency.get('device')}"
        rows.append(row)
    return rows


def order_key(row: Row):
    """Table 7's order: encoder (V1, V2, R101, then others), tap, width (widest first), head (ASPP, none, then
    DeepLabV3+ and LR-ASPP), OS 32-16-8, SS before MF; runs that could not be read come last."""
    a = row.arch
    if a is None:
        return (9, row.runs)
    network = NETWORK_ORDER.get((a["encoder"], a["tap"]), len(NETWORK_ORDER))
    head = HEAD_ORDER.get(a["head"], 9)
    return (network, -a["width"], head, -a["os"], row.mf, not row.from_train, row.evaluation, row.runs)


def build_rows(
    runs: list[Run],
    evaluations: tuple[str, ...] = (TRAIN,),
    reference: str | None = None,
    samples: int = stats.SAMPLES,
    seed: int = stats.SEED,
) -> list[Row]:
    """The table's rows, numbered in order, with every interval and difference (``reference``: a row's number or
    label; by default the best row of each kind, single scale and MF, on the primary split).

    Raises:
        ValueError: ``reference`` names no row, or more than one.
    """
    expected = sorted({r.seed for r in runs if r.seed is not None})
    rows = sorted(
        (row for group in group_variants(runs) for row in rows_of_variant(group, evaluations, expected)), key=order_key
    )
    for i, row in enumerate(rows, 1):
        row.number = i
        for split in row.splits.values():
            split.estimate = interval(split, samples, seed)
    for row in rows:
        ref = reference_of(row, rows, reference)
        if ref is None:
            continue
        row.reference = ref.number
        if ref is row:
            continue
        for name, split in row.splits.items():
            if name in ref.splits:
                split.delta = difference(split, ref.splits[name], samples, seed)
    return rows


def interval(split: Split, samples: int, seed: int) -> stats.Estimate:
    """Over seeds and images where there are per-image matrices; over seeds alone (t) where there are none."""
    if split.per_image is not None:
        return stats.seeds_images([split.per_image[s] for s in split.seeds], samples, seed)
    return stats.t_interval(split.mious)


def difference(split: Split, ref: Split, samples: int, seed: int) -> stats.Estimate:
    """``split`` - ``ref``: a paired bootstrap on the same images; without matrices a paired t over the seeds both
    have (two or more); else the difference of the means alone."""
    if split.per_image is not None and ref.per_image is not None and split.images == ref.images:
        return stats.paired_difference(split.per_image, ref.per_image, samples, seed)
    mine, theirs = dict(zip(split.seeds, split.mious, strict=True)), dict(zip(ref.seeds, ref.mious, strict=True))
    common = sorted(set(mine) & set(theirs))
    if len(common) >= 2:
        t = stats.t_interval([mine[s] - theirs[s] for s in common])
        return stats.Estimate(t.value, t.low, t.high, "paired seeds (t)")
    return stats.Estimate(split.mean - ref.mean, math.nan, math.nan, "")


def reference_of(row: Row, rows: list[Row], reference: str | None) -> Row | None:
    if reference is not None:
        return find_row(rows, reference)
    if row.state != "done" or row.miou is None:
        return None
    kind = [r for r in rows if r.mf == row.mf and r.miou is not None and r.primary == row.primary]
    return max(kind, key=lambda r: r.miou)


def find_row(rows: list[Row], wanted: str) -> Row:
    """The row ``wanted`` names: its number, or its label (``MNet V2* x0.5 OS8 ASPP``, ``... MF``)."""
    if wanted.strip().isdigit():
        found = [r for r in rows if r.number == int(wanted)]
    else:
        found = [r for r in rows if r.label == wanted.strip() or f"{r.label} {r.short_eval}" == wanted.strip()]
    usable = [r for r in found if r.miou is not None]
    if len(usable) == 1:
        return usable[0]
    if len(usable) > 1:
        listed = ", ".join(f"{r.number} ({r.label} {r.short_eval})" for r in usable)
        raise InvalidValue(f"--reference {wanted!r} names more than one row: {listed}; give its number")
    labels = "; ".join(f"{r.number}: {r.label}" for r in rows if r.miou is not None)
    raise InvalidValue(f"--reference {wanted!r} names no row with results; rows: {labels}")
