"""Seeds in the report: runs that differ only in their seed are one row (n, mean, sd, failed and missing seeds),
intervals from the records' per-image matrices, paired differences from a reference row, val and test side by side,
the per-class table, and the plot's numbers that never overlap."""

import csv
import io
import json
import math

import numpy as np
import pytest

from deeplab_mobile import stats
from deeplab_mobile.ablation import build_rows, find_runs
from deeplab_mobile.ablation import report as ablation_table
from deeplab_mobile.ablation.plot import place_numbers, text_box
from deeplab_mobile.data.synthetic import CLASS_NAMES
from deeplab_mobile.engine.report import write_per_image
from deeplab_mobile.metrics import scores
from tests.helpers import composed

C = len(CLASS_NAMES)
IMAGES = 24
BASE = ["recipe=cpu_synthetic", "width=0.35", "trainer.final_stage=null", "eval.os=null", "eval.mf=false"]


def images(rng, error, images=IMAGES, pixels=300):
    """Per-image matrices of a model wrong on a share ``error`` of the pixels (an image's difficulty added)."""
    out = np.zeros((images, C, C), np.int64)
    hard = np.linspace(0.0, 0.3, images)
    for i in range(images):
        truth = rng.choice([0, 1 + i % 5, 6 + i % 7], pixels)
        wrong = rng.random(pixels) < error + hard[i]
        np.add.at(out[i], (truth, np.where(wrong, rng.integers(0, C, pixels), truth)), 1)
    return out


def record(per_image, split):
    s = scores(per_image.sum(0))
    iou = {name: (None if math.isnan(v) else v) for name, v in zip(CLASS_NAMES, s["iou"], strict=True)}
    return {"params": 1, "madds": 2, "split": split, "eval": {"os": 16, "mf": False}, "ss": {**s, "iou": iou}}


def seeded_run(root, head, seed, val=None, test=None, state="done", reason=""):
    """A run folder as training leaves it: config, status, the training's record on val and a test record, each
    with its per-image matrices (as ``scripts/train.py`` and ``scripts/eval.py`` write them)."""
    folder = root / f"head={head},trainer.seed={seed}"
    overrides = [*BASE, f"head={head}", f"trainer.seed={seed}"]
    (folder / ".hydra").mkdir(parents=True)
    from omegaconf import OmegaConf

    OmegaConf.save(composed("train", overrides), folder / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    (folder / "status.json").write_text(json.dumps({"state": state, "reason": reason}))
    names = [f"synth_{i:03d}" for i in range(IMAGES)]
    for where, split, matrices in ((folder, "val", val), (folder / "eval" / "os16_split-test", "test", test)):
        if matrices is None:
            continue
        where.mkdir(parents=True, exist_ok=True)
        (where / "metrics.json").write_text(json.dumps(record(matrices, split)))
        write_per_image(where / "per_image_confusion.npz", names, {"ss": matrices})
    return folder


def csv_rows(out):
    return list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))


@pytest.fixture
def sweep(tmp_path):
    """no_aspp: seeds 0, 1 done, seed 2 failed; aspp: seeds 0, 1 done, seed 2 never ran; lraspp: seeds 0-2 done,
    better on every image than the others."""
    rng = np.random.default_rng(0)
    made = {}
    for head, error, seeds in (("no_aspp", 0.30, (0, 1)), ("aspp", 0.29, (0, 1)), ("lraspp", 0.05, (0, 1, 2))):
        for seed in seeds:
            made[head, seed] = (images(rng, error + 0.01 * seed), images(rng, error + 0.01 * seed))
            seeded_run(tmp_path, head, seed, *made[head, seed])
    seeded_run(tmp_path, "no_aspp", 2, state="failed", reason="loss is nan at iteration 7")
    return tmp_path, made


def test_seeds_of_one_variant_make_one_row_with_n_mean_sd_and_their_interval(sweep):
    root, made = sweep
    assert ablation_table.main([str(root)]) == 0
    rows = {r["head"]: r for r in csv_rows(root / "report")}
    assert len(rows) == 3
    for head, seeds in (("no_aspp", [0, 1]), ("aspp", [0, 1]), ("lraspp", [0, 1, 2])):
        row = rows[head]
        vals = [scores(made[head, s][0].sum(0))["miou"] for s in seeds]
        assert row["seeds"] == " ".join(map(str, seeds)) and int(row["val_n"]) == len(seeds)
        assert float(row["val_miou"]) == pytest.approx(np.mean(vals), abs=1e-12)
        assert float(row["val_sd"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
        want = stats.seeds_images([made[head, s][0] for s in seeds])
        assert (float(row["val_ci_low"]), float(row["val_ci_high"])) == pytest.approx((want.low, want.high))
        assert row["val_ci_method"] == "seeds x images" and int(row["test_n"]) == len(seeds)
        tests = [scores(made[head, s][1].sum(0))["miou"] for s in seeds]
        assert float(row["test_miou"]) == pytest.approx(np.mean(tests), abs=1e-12)
    assert rows["no_aspp"]["failed_seeds"] == "2" and rows["no_aspp"]["missing_seeds"] == ""
    assert rows["aspp"]["missing_seeds"] == "2" and rows["aspp"]["failed_seeds"] == ""
    table = (root / "report" / "table.md").read_text()
    assert "seed 2 failed: loss is nan at iteration 7" in table and "aspp: seed 2 missing" in table.replace(
        "ASPP", "aspp"
    )


def test_differences_from_the_reference_are_paired_and_marked(sweep):
    """LR-ASPP is better on every image: the best row, the reference; ASPP and no ASPP are below it with
    intervals below 0; against each other (--reference) they cannot be told apart."""
    root, made = sweep
    assert ablation_table.main([str(root)]) == 0
    rows = {r["head"]: r for r in csv_rows(root / "report")}
    ref = rows["lraspp"]
    assert ref["reference"] == ref["row"] and float(ref["val_delta"]) == 0.0 and ref["val_delta_low"] == ""
    for head in ("aspp", "no_aspp"):
        row = rows[head]
        assert row["reference"] == ref["row"]
        want = stats.paired_difference(
            {s: made[head, s][0] for s in (0, 1)}, {s: made["lraspp", s][0] for s in (0, 1, 2)}
        )
        assert float(row["val_delta"]) == pytest.approx(want.value) and want.value < 0
        assert float(row["val_delta_high"]) == pytest.approx(want.high) and want.high < 0
        assert row["val_distinguishable"] == "True" and row["val_delta_method"] == "paired seeds x images"
    assert ablation_table.main([str(root), "--reference", rows["no_aspp"]["row"]]) == 0
    rows = {r["head"]: r for r in csv_rows(root / "report")}
    aspp = rows["aspp"]
    assert aspp["val_distinguishable"] == "False" and float(aspp["val_delta_low"]) < 0 < float(aspp["val_delta_high"])
    line = next(
        line
        for line in (root / "report" / "table.md").read_text().splitlines()
        if "| ASPP |" in line or "| ✓ |" in line
    )
    assert "≈" in line and rows["lraspp"]["val_distinguishable"] == "True"
    assert ablation_table.main([str(root), "--reference", "MNet V2* x0.35 OS16 LR-ASPP"]) == 0
    assert {r["reference"] for r in csv_rows(root / "report")} == {rows["lraspp"]["row"]}


def test_a_reference_that_names_no_row_is_refused(sweep, capsys):
    root, _ = sweep
    assert ablation_table.main([str(root), "--reference", "42"]) == 2
    assert "--reference '42' names no row with results" in capsys.readouterr().err
    assert ablation_table.main([str(root), "--samples", "100"]) == 2


def test_a_second_run_of_a_seed_is_left_out_and_named(sweep):
    root, made = sweep
    import shutil

    shutil.copytree(root / "head=aspp,trainer.seed=0", root / "copy" / "head=aspp,trainer.seed=0")
    rows = build_rows(find_runs(root))
    aspp = next(r for r in rows if r.arch["head"] == "aspp")
    assert aspp.splits["val"].n == 2 and aspp.splits["val"].seeds == [0, 1]
    assert (
        aspp.reason.startswith("left out, a second run of the same seed: ")
        and "head=aspp,trainer.seed=0" in aspp.reason
    )


def test_the_per_class_table_averages_each_class_over_seeds(sweep):
    root, made = sweep
    assert ablation_table.main([str(root)]) == 0
    lines = list(csv.DictReader(io.StringIO((root / "report" / "per_class_iou.csv").read_text())))
    row = next(
        line
        for line in lines
        if line["class"] == CLASS_NAMES[1] and line["split"] == "test" and "LR-ASPP" in line["label"]
    )
    want = [scores(made["lraspp", s][1].sum(0))["iou"][1] for s in (0, 1, 2)]
    assert float(row["iou"]) == pytest.approx(np.mean(want)) and int(row["n"]) == 3
    markdown = (root / "report" / "per_class_iou.md").read_text()
    assert "### val" in markdown and "### test" in markdown and f"| {CLASS_NAMES[1]} |" in markdown


def test_records_without_per_image_matrices_get_the_seeds_t_interval(sweep):
    root, made = sweep
    for npz in root.rglob("per_image_confusion.npz"):
        npz.unlink()
    assert ablation_table.main([str(root)]) == 0
    rows = {r["head"]: r for r in csv_rows(root / "report")}
    vals = [scores(made["lraspp", s][0].sum(0))["miou"] for s in (0, 1, 2)]
    want = stats.t_interval(vals)
    assert rows["lraspp"]["val_ci_method"] == "seeds (t)"
    assert (float(rows["lraspp"]["val_ci_low"]), float(rows["lraspp"]["val_ci_high"])) == pytest.approx(
        (want.low, want.high)
    )
    assert rows["aspp"]["val_delta_method"] == "paired seeds (t)"  # seeds 0 and 1 in both
    table = (root / "report" / "table.md").read_text()
    assert " †" in table and "records without per_image_confusion.npz" in table


def test_numbers_on_the_plot_never_overlap():
    """Thirty rows crowded on one point: every number finds a place of its own, off every marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Bbox

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.set_xscale("log")
    xs = [1.0 + 0.001 * i for i in range(30)]
    ys = [50 + 0.01 * i for i in range(30)]
    ax.scatter(xs, ys)
    ax.set_xlim(0.5, 2)
    ax.set_ylim(40, 60)
    fig.canvas.draw()
    marker = Bbox.from_extents(
        *ax.transData.transform((xs[0], ys[0])) - 5, *ax.transData.transform((xs[-1], ys[-1])) + 5
    )
    texts = place_numbers(ax, [(x, y, str(i + 1)) for i, (x, y) in enumerate(zip(xs, ys, strict=True))], [marker])
    renderer = fig.canvas.get_renderer()
    boxes = [text_box(t, renderer) for t in texts]
    assert len(boxes) == 30
    for i, a in enumerate(boxes):
        assert not a.overlaps(marker)
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
    plt.close(fig)


def test_the_plot_is_written_with_every_row(sweep):
    root, _ = sweep
    assert ablation_table.main([str(root)]) == 0
    import cv2

    image = cv2.imread(str(root / "report" / "miou_vs_madds.png"))
    assert image is not None and image.shape[1] > 1000
