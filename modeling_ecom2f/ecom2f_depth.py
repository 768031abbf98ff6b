"""Encoder-depth decisions: validating requested depths, mapping gate scores to depths, sampling step-1 depths."""

from __future__ import annotations

import random

import torch

from configuration.configuration_ecom2f import check_gate_beta


def exit_layers_tensor(exit_layers: list[int], device: torch.device) -> torch.Tensor:
    """`exit_layers` as a LongTensor `(num_exits,)` on `device`."""
    return torch.tensor(exit_layers, dtype=torch.long, device=device)


def validate_encoder_depths(
    num_encoder_layers: int | torch.Tensor, *, exit_layers: list[int], batch_size: int
) -> int | torch.Tensor:
    """Check a requested depth against the allowed exits.

    Args:
        num_encoder_layers: one depth for the whole batch (an `int` or a 0-d tensor) or one per image (a
            LongTensor `(batch_size,)`).
        exit_layers: the allowed exits (`config.exit_layers`).
        batch_size: number of images in the batch.

    Returns:
        A Python `int` for one shared depth, else a LongTensor `(batch_size,)`.

    Raises:
        ValueError: a depth outside `exit_layers`, or a tensor of the wrong shape or dtype.
    """
    if isinstance(num_encoder_layers, torch.Tensor) and num_encoder_layers.dim() == 0:
        num_encoder_layers = int(num_encoder_layers)
    if isinstance(num_encoder_layers, bool) or not isinstance(num_encoder_layers, (int, torch.Tensor)):
        raise ValueError(
            f"num_encoder_layers must be an int, a LongTensor of shape (batch_size,) or None, "
            f"got {type(num_encoder_layers).__name__}"
        )
    if isinstance(num_encoder_layers, int):
        if num_encoder_layers not in exit_layers:
            raise ValueError(f"num_encoder_layers={num_encoder_layers} is not an allowed exit; allowed: {exit_layers}")
        return num_encoder_layers
    depths = num_encoder_layers
    if depths.shape != (batch_size,) or depths.dtype.is_floating_point or depths.dtype == torch.bool:
        raise ValueError(
            f"num_encoder_layers as a tensor must be an integer tensor of shape ({batch_size},), "
            f"got dtype {depths.dtype} and shape {tuple(depths.shape)}"
        )
    allowed = exit_layers_tensor(exit_layers, depths.device)
    # One host sync to validate user input; gate-made depths skip this function.
    if not bool(torch.isin(depths, allowed).all()):
        raise ValueError(f"num_encoder_layers={depths.tolist()} has depths that are not allowed exits: {exit_layers}")
    return depths.long()


def depths_from_gate_logits(gate_logits: torch.Tensor, *, exit_layers: list[int]) -> torch.Tensor:
    """Per-image depth chosen by the gate: `exit_layers[argmax]`, `(batch,)` LongTensor (no host sync)."""
    return exit_layers_tensor(exit_layers, gate_logits.device)[gate_logits.argmax(dim=-1)]


def gate_depths(gate_logits: torch.Tensor, *, config, gate_beta: float | None = None) -> torch.Tensor:
    """Per-image depth `(batch,)` from the gate's outputs `(batch, num_exits)`, by `config.gate_objective`:

    - `"classification"` (ECO-M2F, arXiv 2404.15244 Sec. 3.3): the outputs are logits over the exits trained for one
      beta; the depth is `exit_layers[argmax]`. `gate_beta` must then be `None`.
    - `"utility"`: the outputs predict each exit's per-image quality gain (PQ fraction) over the shallowest exit;
      the depth is `exit_layers[argmax_k(pred_k - beta * k)]` with `beta = gate_beta` or `config.gate_beta`, so one
      trained gate serves every trade-off.

    Raises:
        ValueError: a `gate_beta` for a classification gate, or a negative / non-finite `gate_beta`.
    """
    if config.gate_objective == "classification":
        if gate_beta is not None:
            raise ValueError(
                "gate_beta applies to a gate with gate_objective='utility'; this gate was trained with "
                "gate_objective='classification' for one beta (retrain it, or train a utility gate)"
            )
        return depths_from_gate_logits(gate_logits, exit_layers=config.exit_layers)
    beta = check_gate_beta(config.gate_beta if gate_beta is None else gate_beta, name="gate_beta")
    return utility_gate_depths(gate_logits, exit_layers=config.exit_layers, beta=beta)


def utility_gate_depths(gate_outputs: torch.Tensor, *, exit_layers: list[int], beta: float) -> torch.Tensor:
    """A utility gate's depth per image: `exit_layers[argmax_k(pred_k - beta * k)]` in float32, ties to the shallowest
    exit; `gate_outputs` `(batch, num_exits)`, returns a LongTensor `(batch,)` (no host sync)."""
    exits = exit_layers_tensor(exit_layers, gate_outputs.device)
    scores = gate_outputs.float() - beta * exits.to(torch.float32)  # (B, num_exits)
    return exits[scores.argmax(dim=-1)]


def exit_indices(depths: torch.Tensor, *, exit_layers: list[int]) -> torch.Tensor:
    """Map depths `(batch,)` to gate class indices `(batch,)`; raises `ValueError` for a depth that is no exit."""
    allowed = exit_layers_tensor(exit_layers, depths.device)
    matches = depths.long()[:, None] == allowed[None, :]  # (B, num_exits)
    if not bool(matches.any(dim=1).all()):
        raise ValueError(f"exit_labels={depths.tolist()} has depths that are not allowed exits: {exit_layers}")
    return matches.long().argmax(dim=1)


def resolve_encoder_depths(
    config, num_encoder_layers: int | torch.Tensor | None, *, batch_size: int
) -> int | torch.Tensor | None:
    """The depth request of a forward after validation: an `int`, a LongTensor `(batch,)`, or `None` (the trained
    gate decides). `config` is any ecom2f config (`exit_layers`, `max_exit`, `gate_trained`)."""
    if num_encoder_layers is None:
        return None if config.gate_trained else config.max_exit
    return validate_encoder_depths(num_encoder_layers, exit_layers=config.exit_layers, batch_size=batch_size)


def depth_loss_weight(config, depths: int | torch.Tensor) -> float | torch.Tensor:
    """ECO-M2F step-1 loss weight of the depth(s) used (`config.exit_loss_weighting`); for per-image depths the mean
    of the per-image weights."""
    if isinstance(depths, int):
        return config.exit_loss_weight(depths)
    if config.exit_loss_weighting == "uniform":
        return 1.0
    return depths.float().mean()  # "linear": weight k at exit k


def gate_cross_entropy(gate_logits: torch.Tensor, exit_labels: torch.Tensor, *, exit_layers: list[int]) -> torch.Tensor:
    """ECO-M2F step 3: cross-entropy of gate logits `(batch, num_exits)` against ideal depths `(batch,)`."""
    targets = exit_indices(exit_labels.to(gate_logits.device), exit_layers=exit_layers)
    return torch.nn.functional.cross_entropy(gate_logits, targets)


def sample_exit_depth(exit_layers: list[int], *, rng: random.Random) -> int:
    """ECO-M2F step 1: one depth for the whole batch, uniform over the allowed exits.

    ECO-M2F (arXiv 2404.15244) trains the parent with one randomly chosen exit per step; the authors' training forward
    (GYeow/ECO-M2F `mask2former/maskformer_model.py`) keeps one exit index for the whole batch.

    A Python `random.Random` is used on purpose: the depth is a host-side decision that every data-parallel
    process must make identically, so seed it the same on every process.
    """
    return exit_layers[rng.randrange(len(exit_layers))]
