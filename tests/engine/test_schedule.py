"""DeepLabv3's last stage with its own LR (trainer.final_lr): the rates against the formula written out, every
parameter group alike, and a scheduler rebuilt from its state_dict continues on the same rates."""

import pytest
import torch

from deeplab_mobile.engine.schedule import two_stage_poly


def optimizer(lr=0.007):
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([{"params": [a], "weight_decay": 4e-5}, {"params": [b], "weight_decay": 0.0}], lr=lr)


def rates(opt, sched, steps):
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("first_total", [6, 10, 4])
def test_the_first_stage_follows_its_poly_then_the_last_decays_again_from_final_lr(first_total):
    # 0.007 until the switch at 6 of 10, power 0.9, then 0.001 over the last 4. first_total=6 is DeepLabv3's two
    # trainings (the first decays to zero at the switch), 10 the default (one schedule cut at the switch), 4 a
    # first schedule that has ended before the switch (zero until it)
    opt = optimizer()
    got = rates(opt, two_stage_poly(opt, switch=6, total=10, power=0.9, final_lr=0.001, first_total=first_total), 10)
    first = [0.007 * max(0.0, 1 - t / first_total) ** 0.9 for t in range(6)]
    last = [0.001 * (1 - t / 4) ** 0.9 for t in range(4)]
    assert [g[0] for g in got] == pytest.approx(first + last, abs=1e-15)
    assert [g[1] for g in got] == [g[0] for g in got]  # both groups (weight decay or not) alike
    assert got[6][0] == pytest.approx(0.001)
    assert opt.param_groups[0]["lr"] == 0.0  # after the last iteration


def test_a_rebuilt_scheduler_continues_from_its_state():
    def build(opt):
        return two_stage_poly(opt, switch=5, total=9, power=0.9, final_lr=0.002, first_total=9)

    opt = optimizer()
    want = rates(opt, build(opt), 9)

    opt = optimizer()
    sched = build(opt)
    head = rates(opt, sched, 6)  # into the last stage, as a checkpoint at iteration 6 would be
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    opt = optimizer()
    sched = build(opt)
    opt.load_state_dict(state_opt)
    sched.load_state_dict(state_sched)
    assert head + rates(opt, sched, 3) == want


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"switch": 10, "total": 10, "final_lr": 0.001, "first_total": 10}, "iteration 10"),
        ({"switch": 4, "total": 10, "final_lr": 0.0, "first_total": 10}, "positive"),
        ({"switch": 4, "total": 10, "final_lr": 0.001, "first_total": 0}, "total_iters >= 1"),
    ],
)
def test_refuses_a_stage_it_cannot_schedule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        two_stage_poly(optimizer(), power=0.9, **kwargs)
