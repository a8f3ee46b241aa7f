"""Fold inference BatchNorm into the preceding convolution: y = gamma (conv(x) - mean) / sqrt(var + eps) + beta
becomes one conv with scaled weights and a bias, so a device runs one op instead of two.

The graph is traced with ``torch.fx`` and every conv -> BN edge whose conv feeds nothing else is folded with
``torch.nn.utils.fusion.fuse_conv_bn_eval``. ``torch.fx.experimental.optimization.fuse`` does the same for exact
``nn.BatchNorm2d`` modules only; timm's encoders (MobileNetV1, ResNet-101) use ``BatchNormAct2d``, a BatchNorm2d
subclass with its activation inside, which that pass skips. Here such a module is folded too and replaced by the
activation it carries.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import InvalidValue


def _parent(root: nn.Module, target: str) -> tuple[nn.Module, str]:
    *path, name = target.split(".")
    module = root
    for part in path:
        module = getattr(module, part)
    return module, name


def _activation_of(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What a BN module does after normalising: None for plain BatchNorm2d, ``drop`` + ``act`` for timm's
    BatchNormAct2d."""
    if type(bn) is nn.BatchNorm2d:
        return None
    if hasattr(bn, "act") and hasattr(bn, "drop"):
        return nn.Sequential(bn.drop, bn.act)
    raise TypeError(f"cannot fold {type(bn).__name__}: unknown BatchNorm subclass")


class ConvLeafTracer(fx.Tracer):
    """``torch.fx``'s tracer, with every ``Conv2d`` subclass kept as one module (``SameConv2d`` computes its padding
    from the input's size, which a symbolic trace cannot; it is still one linear conv to fold into)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, module_qualified_name)


def fold_batchnorm(model: nn.Module, first_only: bool = False) -> fx.GraphModule:
    """A copy of ``model`` (put in eval mode) with every conv -> BN pair folded; returns an ``fx.GraphModule`` that
    computes the same function in inference. BN layers that follow something other than a lone conv are kept.
    ``first_only``: only the pairs whose conv reads the model's input (the first layer)."""
    model = copy.deepcopy(model).eval()
    try:
        tracer = ConvLeafTracer()
        traced = fx.GraphModule(model, tracer.trace(model))
    except fx.proxy.TraceError as exc:  # data-dependent Python control flow in forward()
        raise InvalidValue(f"{type(model).__name__} cannot be traced to fold its BatchNorm ({exc})") from exc
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        if first_only and not (isinstance(src.args[0], fx.Node) and src.args[0].op == "placeholder"):
            continue
        conv, bn = modules[src.target], modules[node.target]
        if not isinstance(conv, nn.Conv2d) or not bn.track_running_stats:
            continue
        after = _activation_of(bn)
        fused = fuse_conv_bn_eval(conv, bn)
        parent, name = _parent(traced, src.target)
        setattr(parent, name, fused)
        if after is None:
            node.replace_all_uses_with(src)
            traced.graph.erase_node(node)
        else:
            parent, name = _parent(traced, node.target)
            setattr(parent, name, after)
            modules[node.target] = after
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters (for tests and benchmarks: a freshly built
    model's BN is the identity, under which a folding mistake would not show)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            if m.affine:
                m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model
