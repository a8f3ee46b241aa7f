"""The schema of every config: types and defaults as dataclasses in Hydra's ConfigStore (docs/configuration.md).

Each app's config (``train``, ``eval``, ``export``, ``quantize``, ``complexity``, ``check_data``) is a dataclass
that ``conf/<app>.yaml`` names first in its defaults list (``train_schema`` ...), and the groups whose options are
whole settings are registered as options themselves: ``trainer=default``, ``evaluation=default``, ``optim=sgd|adamw``,
``sched=poly``, ``loss=ce|...``, ``encoder=...``, ``head=...``. The YAML files keep choices and overrides only
(``conf/recipe/``, ``conf/data/``, ``conf/variant/``, ``conf/experiment/``). A wrong type or an unknown key fails
when Hydra composes the config, with its message naming the key (Hydra's structured configs:
https://hydra.cc/docs/tutorials/structured_config/schema/).

Fields marked ``same_run`` identify a training run: ``run_identity_keys`` is derived from them, and a resume with
one of them changed is refused.

OmegaConf reads the annotations (``int | None``, ``list[float]``) to type the nodes. A setting that takes either of
two types (``trainer.threads``: a count or ``auto``) is ``Any``, as OmegaConf has no union of types, and its one
value check stays where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..engine.run import SettingError, identity_keys, same_run
from ..engine.trainer import TrainSettings
from ..errors import InvalidValue
from .loss import LOSSES, upgrade_loss

# -- the model: encoder and head options (package model.encoder / model.head), the network's top-level keys


@dataclass
class Encoder:
    """What every encoder takes from the top-level keys (``os``, ``width``, ``tap``, ``encoder_weights``, ``bn``)."""

    _target_: str = MISSING
    width: float = II("width")
    output_stride: int = II("os")
    tap: str | None = II("tap")
    weights: str | None = II("encoder_weights")
    bn: str = II("bn")


@dataclass
class MobileNetV2Encoder(Encoder):
    """Dilated MobileNetV2 (torchvision modules); tap: second_last = 320 channels (MNet V2*), last = 1280."""

    _target_: str = "deeplab_mobile.models.encoders.MobileNetV2Encoder"
    zero_init_residual: bool = True  # residual bottlenecks start as the identity (random init only)


@dataclass
class MobileNetV1Encoder(Encoder):
    """MobileNetV1 (timm), feature conv13 (1024 channels)."""

    _target_: str = "deeplab_mobile.models.encoders.MobileNetV1Encoder"


@dataclass
class MobileNetV3Encoder(Encoder):
    """Dilated MobileNetV3-Large (torchvision modules); tap: last = 960 channels (default), second_last = 160."""

    _target_: str = "deeplab_mobile.models.encoders.MobileNetV3Encoder"


@dataclass
class ResNet101Encoder(Encoder):
    """DeepLab's ResNet-101 beta (timm resnet101s; strides in the last unit; multi-grid)."""

    _target_: str = "deeplab_mobile.models.encoders.ResNet101BetaEncoder"
    multi_grid: list[int] = field(default_factory=lambda: [1, 2, 4])


@dataclass
class Head:
    _target_: str = MISSING
    _partial_: bool = True
    num_classes: int = II("num_classes")


@dataclass
class NoASPPHead(Head):
    """The paper's simplified head: 1x1 branch + image pooling, no atrous branches."""

    _target_: str = "deeplab_mobile.models.heads.DeepLabHead"
    aspp: bool = False
    channels: int = 256
    dropout: float = 0.1
    bn: str = II("bn")


@dataclass
class ASPPHead(Head):
    """DeepLabv3's head with ASPP: 1x1 + three 3x3 atrous branches (rates x 16 / os) + image pooling."""

    _target_: str = "deeplab_mobile.models.heads.DeepLabHead"
    aspp: bool = True
    rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    channels: int = 256
    separable: bool = False
    dropout: float = 0.1
    bn: str = II("bn")


@dataclass
class LRASPPHead(Head):
    """LR-ASPP (MobileNetV3 paper): a 1x1 branch gated by a pooled sigmoid branch, plus stride-8 logits."""

    _target_: str = "deeplab_mobile.models.heads.LRASPPHead"
    inter_channels: int = 128
    bn: str = II("bn")


@dataclass
class DeepLabV3PlusHead(Head):
    """DeepLabV3+: the context module (aspp, or 1x1 + image pooling), then the stride-4 decoder."""

    _target_: str = "deeplab_mobile.models.heads.DeepLabV3PlusHead"
    aspp: bool = True
    rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    channels: int = 256
    separable: bool = True  # depthwise-separable atrous branches and decoder convs (TF DeepLab's V3+ setting)
    dropout: float = 0.1
    low_channels: int = 48
    decoder_channels: int = 256
    bn: str = II("bn")


@dataclass
class ModelNode:
    """The ``model`` node Hydra instantiates (``models.build_model``); ``weights=`` replaces it with the network of
    a model file or run (``config.model.adopt_weights``), so it is typed ``Any`` where it is held."""

    _target_: str = "deeplab_mobile.models.build_model"
    geometry: str = II("geometry")
    encoder: Any = MISSING
    head: Any = MISSING


@dataclass
class ModelSettings:
    """The network's top-level keys, shared by every app that builds one (train, export, complexity)."""

    model: Any = same_run(default_factory=ModelNode)
    os: int = same_run(16)  # output stride: 8, 16 or 32; ASPP rates follow it
    width: float = same_run(1.0)  # width multiplier
    tap: str | None = same_run(None)  # MobileNetV2: second_last (default, 320 ch) or last (1280 ch)
    encoder_weights: str | None = same_run("random")  # random | imagenet | /path/to/state_dict.pth
    weights: str | None = same_run(None)  # a model file or run: the whole network and its weights
    num_classes: int = same_run(21)
    bn: str = "torch"  # BatchNorm momentum/epsilon: torch | deeplab (TF DeepLab's)
    geometry: str = "torch"  # resizes and padding: torch | deeplab (align_corners=True, "SAME" strided convs)


# -- data


@dataclass
class Rare:
    """Classes made rare on purpose in the generated dataset (``data.synthetic.Rare``)."""

    classes: list[int] = MISSING
    keep: float = MISSING
    splits: list[str] = field(default_factory=lambda: ["train"])


@dataclass
class Generate:
    """The generated dataset's settings (``data.synthetic.write_synthetic_voc``)."""

    root: str = "data/synthetic"
    n_train: int = 3000
    n_val: int = 100
    n_test: int = 100
    seed: int = 0
    rare: Rare | None = None


@dataclass
class DataSettings:
    """A dataset (``conf/data/``: voc, synthetic, synthetic_rare, cityscapes, folder) and how training reads it."""

    name: str = same_run(MISSING)
    format: str | None = None  # voc (null) | folder | cityscapes
    root: str | None = None
    train_split: str = same_run("train")
    val_split: str = "val"
    classes: Any = None  # a list of names, or where a Python sequence of them is (deeplab_mobile.data.voc.CLASSES)
    classes_file: str | None = None  # a folder dataset: null = <root>/classes.txt
    images: str = "images"  # a folder dataset's image folder under root
    masks: str = "masks"  # a folder dataset's mask folder under root
    generate: Generate | None = None
    random_init_cost: str | None = None  # logged when a run starts from random weights on this data
    help: str = ""  # what to do when the data cannot be read
    # how training reads it: the recipe sets these (null where the data is only evaluated)
    crop_size: int | None = same_run(None)
    scales: list[float] | None = same_run(None)  # random scaling of each training image
    batch_size: int | None = same_run(None)  # global, over all processes
    workers: int | None = None  # DataLoader workers per process


# -- evaluation (package eval)


@dataclass
class EvalSettings:
    """Evaluation (docs/protocol.md, section 5): full images padded to the crop; MF = these scales, each flipped."""

    mf: bool = True  # the final evaluation also runs MF + flip (single scale always runs)
    mf_scales: list[float] | None = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    flip: bool = True
    pad_to: int | None = II("data.crop_size")
    os: int | None = None  # output stride of the single-scale evaluation; null = the trained one
    mf_os: int | None = None  # output stride of the MF evaluation; null = os
    tile: Any = None  # sliding windows: a size, or {size, overlap, blend: mean | gaussian}
    batch_size: int = 1
    workers: int = 2
    examples: int = 4  # rows of the TensorBoard image grid


# -- optimizer, schedule, loss (instantiated by _target_)


@dataclass
class SGD:
    """SGD with momentum; weight decay on conv weights only (``engine.trainer.param_groups``)."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 4.0e-5


@dataclass
class AdamW:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 0.001
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1.0e-4


@dataclass
class Poly:
    """lr = base_lr * (1 - iter / iters) ** power, stepped every iteration."""

    _target_: str = "torch.optim.lr_scheduler.PolynomialLR"
    _partial_: bool = True
    total_iters: int = II("trainer.iters")
    power: float = 0.9


@dataclass
class CrossEntropyLoss:
    """Cross-entropy over labelled pixels. ``class_weights``: null, a class-weights file, or a rule's name
    (median_frequency, inverse_sqrt, inverse, enet), counted on the training split when the run starts."""

    _target_: str = f"{LOSSES}.CrossEntropy"
    class_weights: str | None = None


@dataclass
class HardPixelLoss:
    """DeepLab's hard-pixel mining (``top_k_percent_pixels``, ``hard_example_mining_step``)."""

    _target_: str = f"{LOSSES}.HardPixelCE"
    top_k: float = 0.25
    ramp_steps: int = 0  # 0: top_k from the first step
    class_weights: str | None = None


@dataclass
class DiceLoss:
    _target_: str = f"{LOSSES}.DiceLoss"
    class_weights: str | None = None
    smooth: float = 0.0
    log_loss: bool = False


@dataclass
class FocalLoss:
    _target_: str = f"{LOSSES}.FocalLoss"
    class_weights: str | None = None
    gamma: float = 2.0
    alpha: float | None = None


@dataclass
class LovaszLoss:
    """SMP's Lovasz-softmax; it takes no class weights (so the key is not there)."""

    _target_: str = f"{LOSSES}.LovaszLoss"
    per_image: bool = False


@dataclass
class WeightedSumLoss:
    """``sum(weights[i] * terms[i])``; each term is a loss node (``_target_``) with its own class weights."""

    _target_: str = f"{LOSSES}.WeightedSum"
    terms: list[Any] = MISSING
    weights: list[float] | None = None


# -- the apps' configs


@dataclass
class TrainConfig(ModelSettings):
    """``conf/train.yaml``: a training run."""

    trainer: TrainSettings = field(default_factory=TrainSettings)
    optim: Any = same_run(MISSING)
    sched: Any = same_run(MISSING)
    loss: Any = same_run(MISSING)
    data: DataSettings = field(default_factory=DataSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    resume: Any = False  # false | true | auto (runfolder.RunFolder.check_start)
    progress: bool = True  # every progress bar of the run
    seeds: int = 1  # with -m: every setting trained with trainer.seed 0..seeds-1


@dataclass
class EvalAppConfig:
    """``conf/eval.yaml``: a run folder, a sweep folder or a model file, evaluated."""

    eval: EvalSettings = field(default_factory=EvalSettings)
    data: DataSettings = field(default_factory=DataSettings)
    run_dir: str | None = None
    weights: str | None = None
    out_dir: str | None = None
    checkpoint: str | None = None
    split: str | None = None
    name: str | None = None
    data_root: str | None = None
    device: str = "auto"
    amp: str = "auto"
    progress: bool = True


@dataclass
class Parity:
    sizes: list[list[int]] = field(default_factory=lambda: [[513, 513], [385, 513]])
    seed: int = 0


@dataclass
class ExportConfig(ModelSettings):
    """``conf/export.yaml``: a network to a runtime's file."""

    run_dir: str | None = None
    checkpoint: str | None = None
    onnx: str | None = None
    out_dir: str | None = None
    size: list[int] = field(default_factory=lambda: [513, 513])
    dynamic: bool = False
    labels: str | None = None  # null: logits | uint8 | int32: argmax class map
    fold_bn: bool = True
    opset: int = 18
    format: str = "onnx"  # onnx | pte | tflite | openvino | hub
    resize: str = "matmul"  # matmul | interpolate
    name: str | None = None
    parity: Parity = field(default_factory=Parity)


@dataclass
class Calibration:
    images: int = 32
    split: str | None = None
    seed: int = 0


@dataclass
class QuantEval:
    pad_to: int | None = None
    mf: bool = False
    mf_scales: list[float] | None = None
    flip: bool = True
    batch_size: int = 1
    workers: int = 0


@dataclass
class QAT:
    steps: int = 0
    lr: float = 3.0e-5
    schedule: str = "constant"  # constant | poly
    freeze_bn_after: int | None = None
    freeze_observers_after: int | None = None
    momentum: float = 0.9
    batch_size: int = 8
    crop_size: int | None = None
    seed: int = 0


@dataclass
class Latency:
    threads: list[int] = field(default_factory=lambda: [1, 2])
    size: list[int] | None = None
    repeats: int = 10


@dataclass
class QuantizeConfig:
    """``conf/quantize.yaml``: post-training INT8 (and QAT), scored by the evaluator."""

    data: DataSettings = field(default_factory=DataSettings)
    run_dir: str | None = None
    checkpoint: str | None = None
    weights: str | None = None
    onnx: str | None = None
    out_dir: str | None = None
    data_root: str | None = None
    split: str | None = None
    method: str = "minmax"  # minmax | percentile | entropy
    percentile: float = 99.999
    per_channel: bool = True
    weight_type: str = "int8"  # int8 | uint8
    reduce_range: bool = False
    keep_float: list[str] = field(default_factory=lambda: ["first", "logits"])
    executorch: bool = False
    litert: bool = False
    openvino: bool = False
    progress: bool = True
    calibration: Calibration = field(default_factory=Calibration)
    eval: QuantEval = field(default_factory=QuantEval)
    qat: QAT = field(default_factory=QAT)
    latency: Latency = field(default_factory=Latency)


@dataclass
class ComplexityConfig(ModelSettings):
    """``conf/complexity.yaml``: Params and MAdds of a network."""

    eval: EvalSettings = field(default_factory=EvalSettings)
    input_size: int = 513
    mf: bool = False
    table7: bool = False


@dataclass
class CheckDataConfig:
    """``conf/check_data.yaml``: every sample of the splits read as training would."""

    data: DataSettings = field(default_factory=DataSettings)
    splits: list[str] | None = None
    num_classes: int | None = None
    progress: bool = True
    class_weights: str | None = None
    class_weights_split: str | None = None
    class_weights_file: str | None = None


APPS = {
    "train_schema": TrainConfig,
    "eval_schema": EvalAppConfig,
    "export_schema": ExportConfig,
    "quantize_schema": QuantizeConfig,
    "complexity_schema": ComplexityConfig,
    "check_data_schema": CheckDataConfig,
}

# group -> option -> node (a dataclass, or an instance for an option that only changes a default), and its package
GROUPS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "encoder": (
        "model.encoder",
        {
            "mobilenet_v2": MobileNetV2Encoder,
            "mobilenet_v1": MobileNetV1Encoder,
            "mobilenet_v3": MobileNetV3Encoder,
            "resnet101": ResNet101Encoder,
        },
    ),
    "head": (
        "model.head",
        {"aspp": ASPPHead, "no_aspp": NoASPPHead, "lraspp": LRASPPHead, "deeplabv3plus": DeepLabV3PlusHead},
    ),
    "trainer": (None, {"default": TrainSettings}),
    "evaluation": ("eval", {"default": EvalSettings}),
    "optim": (None, {"sgd": SGD, "adamw": AdamW}),
    "sched": (None, {"poly": Poly}),
    "loss": (
        None,
        {
            "ce": CrossEntropyLoss,
            "weighted_ce": CrossEntropyLoss(class_weights="median_frequency"),
            "weighted_ce_sqrt": CrossEntropyLoss(class_weights="inverse_sqrt"),
            "hard_pixels": HardPixelLoss,
            "dice": DiceLoss,
            "focal": FocalLoss,
            "lovasz": LovaszLoss,
            "ce_dice": WeightedSumLoss(terms=[CrossEntropyLoss(), DiceLoss()], weights=[1.0, 1.0]),
        },
    ),
}


def upgrade_run_config(raw: dict) -> dict:
    """A run folder's config as written by any version, in today's keys: the loss named by ``name`` (or none: CE)
    as its ``_target_`` node (``config.loss.upgrade_loss``); ``trainer.final_os`` / ``final_os_iters`` /
    ``final_lr`` as ``trainer.final_stage``."""
    raw = dict(raw)
    raw["loss"] = upgrade_loss(raw.get("loss"))
    trainer = dict(raw.get("trainer") or {})
    if "final_os" in trainer:
        stage_os, iters, lr = (
            trainer.pop("final_os"),
            trainer.pop("final_os_iters", None),
            trainer.pop("final_lr", None),
        )
        if stage_os is not None and "final_stage" not in trainer:
            trainer["final_stage"] = {"os": stage_os, "iters": iters, "lr": lr}
    raw["trainer"] = trainer
    return raw


def read_run_config(path: str | Path) -> DictConfig:
    """A training run folder's ``.hydra/config.yaml``, of any version (``upgrade_run_config``), typed by
    ``TrainConfig``: every key there with its default where the run's file predates it. The ``model`` node is the
    run's as written (a model file's network has ``build_model``'s keys)."""
    raw = upgrade_run_config(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    model = raw.pop("model", None)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), raw)
    except OmegaConfBaseException as exc:
        raise InvalidValue(f"{path}: not a training run's config this version reads ({exc})") from None
    if model is not None:
        cfg.model = model
    return cfg


def conform(cfg: DictConfig, schema: type) -> None:
    """Refuse a key that Hydra's ``+key=value`` forced into a node of ``schema`` that has no such field (Hydra adds
    it past the schema on request: a ``_target_`` node hands it to its class, a plain one would ignore it)."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(cfg, resolve=False))
    except OmegaConfBaseException as exc:
        key = f"{exc.full_key}: " if getattr(exc, "full_key", None) else ""
        raise SettingError(f"{key}{str(exc).splitlines()[0]} (added with +, but not a setting)") from None


def register() -> None:
    """Put the schema into Hydra's ConfigStore (every entry point calls it before Hydra composes; again is a
    no-op)."""
    store = ConfigStore.instance()
    for name, node in APPS.items():
        store.store(name=name, node=node)
    for group, (package, options) in GROUPS.items():
        for name, node in options.items():
            store.store(group=group, name=name, node=node, package=package)


def options(group: str) -> set[str]:
    """The options the schema registers in ``group`` (beside ``conf/<group>/*.yaml``)."""
    return set(GROUPS.get(group, (None, {}))[1])


def run_identity_keys() -> list[str]:
    """The settings that identify a training run: ``TrainConfig``'s fields marked ``same_run``."""
    return identity_keys(TrainConfig)


register()
