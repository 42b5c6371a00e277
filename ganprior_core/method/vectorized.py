"""The members of a batch stepped as one vectorised computation (torch.func.vmap), for GPUs.

batched.py's loop runs each member's forward pass in turn: on a CPU that costs what sequential
steps cost and loses nothing, but on a GPU a bundled-prior step is a few hundred tiny kernels,
so eight members launch eight times the kernels. Here the members' parameters are stacked
([members, ...] per parameter), one forward pass of `torch.func.functional_call` under
`torch.func.vmap` computes every member's image and loss with each kernel launched once
(convolutions with per-member weights become grouped convolutions), and one Adam updates the
stacked tensors. Adam is elementwise, so each member's slice moves exactly as its own Adam
would move it.

Everything else is a single run's (fit.py): each member is set up by `fit._start` (its copy of
the prior, codes, alpha, beta, stop rule, held-out pixels, loss), its auto-stop checks, late
phase, progress reports and result are fit's own. The members' models keep working because
their parameters are made views of the stacked tensors: they always hold the current values,
which fit reads when G1 is frozen and when a run returns its last image.

What differs from a sequential run: the pass computes in fp32 (bf16 autocast does not reach
inside vmap), and float rounding, since grouped convolutions sum in another order. The first
steps agree to about 1e-5 and the difference grows as the optimisation amplifies it
(tests/method/test_vectorized.py; docs/benchmarks.md, "Batched runs"), so an auto-stop check
can come out otherwise and a long run ends on another, equally good fill. The loop is exact;
this is what a GPU needs. A member that stops leaves the stacks (the batch shrinks).
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch.func import functional_call

from . import fit
from .config import OptimizerConfig
from .losses import masked_loss
from .results import Progress

Callback = Callable[[Progress], None]


class CannotVectorize(Exception):
    """These members are not vectorised (bf16 asked for, or an operation of the prior without a
    batching rule): nothing has been updated yet, so the loop can run them instead."""


def can_vectorize(runs: Sequence[fit._Run]) -> str | None:
    """Why these members cannot be vectorised, or None: every member must see its image the same
    way, directly (inpainting, reconstruction) or through one and the same degradation operator
    (the starts of one restoration, restore.py); images restored through operators of their own
    are not batched here."""
    observe = runs[0].loss.observe
    if any(run.loss.observe != observe for run in runs):
        return "members observed through degradation operators of their own are not vectorised"
    return None


class _Members:
    """The stacked state of the members still running: per-member tensors [members, ...] in the
    order of `runs`."""

    def __init__(self, runs: list[fit._Run], config: OptimizerConfig, device: torch.device) -> None:
        self.runs = runs
        first = runs[0].model
        # The template functional_call runs; its own values are never read (meta device).
        self.template = copy.deepcopy(first).to("meta")
        # The fitted parameters are stacked; the rest (and the buffers) are the prior's, the same
        # in every member's copy, and shared.
        members = [dict(run.model.named_parameters()) for run in runs]
        self.stacked = {name: torch.stack([_plain(parameters[name]) for parameters in members])
                        .requires_grad_(True)
                        for name, parameter in first.named_parameters() if parameter.requires_grad}
        self.shared = {name: parameter.detach() for name, parameter in first.named_parameters()
                       if name not in self.stacked}
        self.buffers = dict(first.named_buffers())
        self.observe = runs[0].loss.observe  # shared by every member (can_vectorize)
        self.known_mask = torch.stack([run.loss.known_mask for run in runs])
        self.masked_target = torch.stack([run.loss.masked_target for run in runs])
        self.target_features = (None if runs[0].loss.target_features is None
                                else torch.stack([run.loss.target_features for run in runs]))
        self.g1_features = None  # stacked G1 outputs once G1 is frozen
        self.g2_ws = None
        self.adam = fit._build_optimizer([_StackedModel(first, self.stacked)], config, device)

    def point_members_at_stacks(self) -> None:
        """Each member's parameters become views of its slice: its model reads the current values
        (and its own copies are freed)."""
        for index, run in enumerate(self.runs):
            parameters = dict(run.model.named_parameters())
            for name, stack in self.stacked.items():
                parameters[name].data = stack.data[index]

    def freeze_g1(self) -> None:
        """The late phase for every member (fit's freeze on each model), then the kept G1 outputs
        stacked and G1's parameters and the codes out of Adam."""
        for run in self.runs:
            run.freeze_g1()
        models = [run.model for run in self.runs]
        features = [model.frozen_g1_features for model in models]
        self.g1_features = (torch.stack(features) if isinstance(features[0], torch.Tensor)
                            else tuple(torch.stack(parts) for parts in zip(*features)))
        if models[0].frozen_g2_ws is not None:
            self.g2_ws = torch.stack([model.frozen_g2_ws for model in models])
        parameters = dict(models[0].named_parameters())
        frozen = [name for name in self.stacked if not parameters[name].requires_grad]
        self._leave_adam([self.stacked[name] for name in frozen])
        for name in frozen:
            self.stacked[name].requires_grad_(False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's image [members, 1, 3, R, R] and loss [members], in fp32."""
        runs = self.runs
        weights, perceptual = runs[0].loss.weights, runs[0].loss.perceptual
        template, shared, buffers, observe = self.template, self.shared, self.buffers, self.observe

        def member(stacked, known_mask, masked_target, target_features, g1_features, g2_ws):
            template.frozen_g1_features, template.frozen_g2_ws = g1_features, g2_ws
            try:
                output = functional_call(template, ({**stacked, **shared}, buffers), ())
            finally:
                template.frozen_g1_features = template.frozen_g2_ws = None
            observed = output if observe is None else observe(output)
            return output, masked_loss(observed, known_mask, masked_target, weights, perceptual,
                                       target_features)

        optional = (self.target_features, self.g1_features, self.g2_ws)
        in_dims = (0, 0, 0, *(None if value is None else 0 for value in optional))
        return torch.vmap(member, in_dims=in_dims)(self.stacked, self.known_mask,
                                                    self.masked_target, *optional)

    def keep(self, positions: list[int]) -> None:
        """Only the members at `positions` stay: every stack, Adam's state and the member views
        are cut to them."""
        index = torch.tensor(positions, device=self.known_mask.device)
        old_to_new = {}
        for name, stack in list(self.stacked.items()):
            kept = stack.detach()[index].clone().requires_grad_(stack.requires_grad)
            old_to_new[stack] = kept
            self.stacked[name] = kept
        for group in self.adam.param_groups:
            group["params"] = [old_to_new[p] for p in group["params"]]
        state = {}
        for old, values in self.adam.state.items():
            state[old_to_new[old]] = {key: value if key == "step" else value[index].clone()
                                      for key, value in values.items()}
        self.adam.state.clear()
        self.adam.state.update(state)

        def pick(stacked):  # a stacked tensor, a tuple of them, or None
            if isinstance(stacked, tuple):
                return tuple(part[index] for part in stacked)
            return None if stacked is None else stacked[index]

        self.known_mask, self.masked_target = self.known_mask[index], self.masked_target[index]
        self.target_features = pick(self.target_features)
        self.g1_features, self.g2_ws = pick(self.g1_features), pick(self.g2_ws)
        self.runs = [self.runs[position] for position in positions]
        self.point_members_at_stacks()

    def _leave_adam(self, tensors: list[torch.Tensor]) -> None:
        gone = {id(tensor) for tensor in tensors}
        for group in self.adam.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in gone]
        for tensor in tensors:
            self.adam.state.pop(tensor, None)


def _plain(parameter: torch.Tensor) -> torch.Tensor:
    """A copy in the default (NCHW) layout: fit's channels-last weights stacked keep strides
    that vmap's convolution gradient mishandles (a 1x1 kernel's came out wrong)."""
    return parameter.detach().clone(memory_format=torch.contiguous_format)


class _StackedModel:
    """The stacked tensors grouped as fit._build_optimizer groups a model's parameters (codes,
    alpha, beta, generator), so the batch's Adam has the same groups and learning rates."""

    def __init__(self, model, stacked: dict[str, torch.Tensor]) -> None:
        self._model, self._stacked = model, stacked
        self._name_of = {id(parameter): name for name, parameter in model.named_parameters()}
        self.alpha, self.beta = stacked.get("alpha", model.alpha), stacked.get("beta", model.beta)

    def _stacks_of(self, parameters) -> list[torch.Tensor]:
        return [self._stacked[self._name_of[id(parameter)]] for parameter in parameters]

    def latent_parameters(self) -> list[torch.Tensor]:
        return self._stacks_of(self._model.latent_parameters())

    def generator_parameters(self) -> list[torch.Tensor]:
        return self._stacks_of(self._model.generator_parameters())


def run_vectorized(runs: list[fit._Run], config: OptimizerConfig,
                   callbacks: Sequence[Callback | None], on_end: Callable[[int], None],
                   pause_at: int | None = None,
                   choose: Callable[[], Sequence[int]] | None = None) -> None:
    """batched.step_members' loop with the members' forward passes vectorised: each member's
    checks, late phase and reports as fit makes them; `on_end(i)` when member i ends, and at step
    `pause_at` the members `choose()` names go on, the others are dropped."""
    freeze_at = runs[0].freeze_at
    if runs[0].use_bf16 and config.precision != "auto":
        raise CannotVectorize(f"precision {config.precision} is not vectorised (bf16 autocast does "
                              "not reach inside torch.func.vmap)")
    try:
        members = _Members(runs, config, runs[0].device)
        first_pass = None if freeze_at == 0 else members.forward()
    except (RuntimeError, NotImplementedError) as error:
        lines = str(error).strip().splitlines()
        raise CannotVectorize(f"torch.func.vmap could not run this prior ({type(error).__name__}: "
                              f"{lines[0][:200] if lines else ''})") from error
    # Only now, so that a batch the loop runs instead has the members' models untouched.
    members.point_members_at_stacks()
    for run in runs:
        if run.use_bf16:  # "auto" chose bf16 for a single run
            run.use_bf16 = False
            run.notes.append("precision auto: fp32 in a vectorised batch (bf16 autocast does not "
                             "reach inside torch.func.vmap)")
    scheduler = fit._schedule(members.adam, config)
    index_of = {id(run): index for index, run in enumerate(runs)}

    for step in range(config.steps):
        if step == pause_at and choose is not None:
            going_on = set(choose())
            kept = [position for position, run in enumerate(members.runs)
                    if index_of[id(run)] in going_on]
            if not kept:
                return
            if len(kept) < len(members.runs):
                members.keep(kept)
        if step == freeze_at:
            members.freeze_g1()
        if first_pass is not None:
            (outputs, losses), first_pass = first_pass, None
        else:
            outputs, losses = members.forward()
        going = []
        for position, run in enumerate(members.runs):
            run.last_output = outputs[position]
            stop_rule = run.stop_rule
            if stop_rule is not None and stop_rule.is_check(step):
                output = outputs[position]
                stop_rule.record(step, run.held_out_error(output), output.detach()[0].float().clone())
                if stop_rule.should_stop:
                    run.ended = True
                    on_end(index_of[id(run)])
                    continue
            going.append(position)
        if not going:
            return
        members.adam.zero_grad(set_to_none=True)
        # No tensor is shared between members' slices: each slice's gradient is its own loss's.
        losses[going].sum().backward()
        members.adam.step()
        if scheduler is not None:
            scheduler.step()
        for position in going:
            run = members.runs[position]
            fit._updated(run, step, losses[position], callbacks[index_of[id(run)]])
        if len(going) < len(members.runs):
            members.keep(going)
    for run in members.runs:
        run.ended = True
        on_end(index_of[id(run)])
