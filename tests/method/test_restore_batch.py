"""Restorations optimised together (restore.restore_batch_any_size): each member equals its own
restore_any_size (bit for bit in the loop, to float rounding in one vmap pass over members whose
operators observe alike), the projection as a single run's, and the batch's refusals."""
from __future__ import annotations

import pytest
import torch

from ganprior_core import (
    Downsample,
    Gray,
    Hole,
    restoration_chain,
    restore_any_size,
    restore_batch_any_size,
)
from ganprior_core.method import batched
from ganprior_core.method.degradations import Compose
from tests.method.test_batched import (
    MIXED,
    MODEL,
    SEEDS,
    assert_same_result,
    recorder,
    sequential_runs,
)
from tests.tiny_priors import assert_same_state, inpainting_problem, state_of

pytestmark = pytest.mark.usefixtures("one_thread")


def observations(prior, count: int = 3, hole_in: tuple[int, ...] = (0, 1, 2)):
    """Gray x2 observations of `count` images (with a hole on the low grid for those in
    `hole_in`), each with its chain."""
    found = []
    for seed in range(count):
        truth, hole = inpainting_problem(prior, seed)
        chain = restoration_chain(gray=True, scale=2, downsampler="area",
                                  hole_mask=hole[::2, ::2] if seed in hole_in else None)
        found.append((chain.observe(truth[None])[0], chain))
    return [y for y, _ in found], [chain for _, chain in found]


def sequential(prior, ys, chains):
    return sequential_runs(prior, ys, chains, MIXED, run=restore_any_size)


def test_operators_that_observe_alike():
    hole = torch.zeros(8, 8)
    other = hole.clone()
    other[2:4, 2:4] = 1
    assert Downsample(2, "area").observes_like(Downsample(2, "area"))
    assert not Downsample(2, "area").observes_like(Downsample(2, "bicubic"))
    assert not Downsample(2, "area").observes_like(Downsample(4, "area"))
    assert Gray().observes_like(Gray()) and not Gray().observes_like(Downsample(1, "area"))
    assert Hole(hole).observes_like(Hole(other)) and not Hole(hole).observes_like(Hole(torch.zeros(4, 4)))
    assert Compose((Gray(), Hole(hole))).observes_like(Compose((Gray(), Hole(other))))
    assert not Compose((Gray(), Hole(hole))).observes_like(Compose((Gray(),)))
    assert not Compose((Gray(),)).observes_like(Gray())


def test_a_batch_in_the_loop_equals_its_single_restorations(tiny_prior):
    ys, chains = observations(tiny_prior)
    before = state_of(tiny_prior)
    alone, alone_reports = sequential(tiny_prior, ys, chains)
    reports = [recorder() for _ in ys]
    together = restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:3],
                                      callbacks=[callback for _, callback in reports],
                                      vectorize="loop")
    for one, member, (seen, _), one_seen in zip(alone, together, reports, alone_reports):
        assert_same_result(one, member)
        assert torch.equal(one.restored, member.restored) and one.projection == member.projection
        assert one.notes == member.notes
        assert [(p.step, p.loss) for p in seen] == [(p.step, p.loss) for p in one_seen]
    assert_same_state(before, tiny_prior)


def test_members_that_observe_alike_are_vectorised(tiny_prior):
    ys, chains = observations(tiny_prior)
    alone, _ = sequential(tiny_prior, ys, chains)
    together = restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:3],
                                      vectorize="vmap")
    for one, member in zip(alone, together):
        assert not any("member after member" in note for note in member.notes)  # vmap ran
        assert (one.output - member.output).abs().max() < 1e-3
        assert member.projection.consistent
    again = restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:3],
                                   vectorize="vmap")
    assert all(torch.equal(a.restored, b.restored) for a, b in zip(together, again))


def test_members_that_observe_otherwise_run_in_batches_of_their_own(tiny_prior, monkeypatch):
    ys, chains = observations(tiny_prior, 4, hole_in=(1,))  # one chain ends in a hole
    alone, _ = sequential(tiny_prior, ys, chains)
    sizes = []
    run_together = batched._run_together

    def recorded(prior, targets, *args):
        sizes.append(len(targets))
        return run_together(prior, targets, *args)

    monkeypatch.setattr(batched, "_run_together", recorded)
    together = restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:4],
                                      vectorize="vmap")
    assert sizes == [3, 1]  # images 1, 3, 4 in one vmap pass, image 2 (the hole) alone
    for one, member in zip(alone, together):
        assert (one.output - member.output).abs().max() < 1e-3
        assert not any("member after member" in note for note in member.notes)
    looped = restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:4],
                                    vectorize="loop")
    assert sizes[2:] == [4]  # the loop steps any members together, exactly
    assert all(torch.equal(one.restored, member.restored) for one, member in zip(alone, looped))


def test_a_batch_is_refused_before_any_work(tiny_prior):
    ys, chains = observations(tiny_prior)
    with pytest.raises(ValueError, match="one of the degradations per image: 3 images, 2"):
        restore_batch_any_size(tiny_prior, ys, chains[:2], MODEL, MIXED, SEEDS[:3])
    with pytest.raises(ValueError, match="unknown fit mode"):
        restore_batch_any_size(tiny_prior, ys, chains, MODEL, MIXED, SEEDS[:3], fit="crop")
    with pytest.raises(ValueError, match="degradations must be Degradations"):
        restore_batch_any_size(tiny_prior, ys, ["gray"] * 3, None, None, SEEDS[:3])


def test_a_batch_runs_the_tasks_defaults_only_where_every_member_has_the_same(tiny_prior, monkeypatch):
    from ganprior_core.method import restore as restore_module
    chains = [Downsample(2, "area"), Downsample(2, "bicubic")]
    expected = restore_module.task_defaults(tiny_prior.config, chains[0])
    assert restore_module._batch_configs(tiny_prior, chains, None, None) == expected
    given = restore_module._batch_configs(tiny_prior, chains, MODEL, None)
    assert given == (MODEL, expected[1])
    monkeypatch.setattr(restore_module, "task_defaults",
                        lambda config, degradation: (MODEL, MIXED) if degradation is chains[1]
                        else expected)
    with pytest.raises(ValueError, match="different task defaults"):
        restore_batch_any_size(tiny_prior, [torch.rand(3, 8, 8)] * 2, chains, None, None, SEEDS[:2])
