"""DeepLabv3's last stage with its own learning rate (``trainer.final_stage.lr``): the first stage follows the poly
schedule as configured (``sched``), and from the switch to the final stride (``trainer.final_stage.os``) the rate
decays by poly again, from that LR to zero over the final stage's iterations.

DeepLabv3's two trainings (0.007 over 30K iterations at OS16, then 0.001 over another 30K at OS8; docs/protocol.md,
section 4) are ``sched.total_iters`` at the switch, so the first stage decays to zero; by default
``sched.total_iters`` is ``trainer.iters`` and the first stage ends where the one schedule would be at the switch.

torch has the pieces but not this one schedule: ``PolynomialLR`` decays from the optimizer's own base LR only, and
``SequentialLR`` would have to chain two of them with the second starting from another base. So the rate is a
``LambdaLR`` factor of the base LR; the factor is a plain object, so ``LambdaLR.state_dict()`` saves its fields and
a resumed run continues on the same schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InvalidValue


@dataclass
class TwoStagePoly:
    """The factor of the base LR after ``step`` scheduler steps: ``(1 - min(step, first_total) / first_total) **
    power`` before ``switch``, then ``scale * (1 - (step - switch) / (total - switch)) ** power``."""

    switch: int
    total: int
    power: float
    scale: float
    first_total: int

    def __call__(self, step: int) -> float:
        if step < self.switch:
            return (1.0 - min(step, self.first_total) / self.first_total) ** self.power
        span = self.total - self.switch
        return self.scale * max(0.0, 1.0 - (step - self.switch) / span) ** self.power


def two_stage_poly(
    optimizer: torch.optim.Optimizer, switch: int, total: int, power: float, final_lr: float, first_total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly decay over ``first_total`` steps (zero from there) until ``switch``, then from ``final_lr`` to zero over
    the remaining ``total - switch`` steps. Every parameter group's LR is scaled alike: ``final_lr`` is the rate of
    the groups whose base LR is the largest (all of them, with the project's groups, which differ in weight decay
    only)."""
    if not 0 <= switch < total:
        raise InvalidValue(f"the last stage must start within the {total} iterations, got iteration {switch}")
    if not final_lr > 0:
        raise InvalidValue(f"the final stage's LR must be positive, got {final_lr}")
    if first_total < 1:
        raise InvalidValue(f"the first stage's poly schedule needs total_iters >= 1, got {first_total}")
    base = max(group["lr"] for group in optimizer.param_groups)
    factor = TwoStagePoly(switch, total, power, final_lr / base, first_total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
