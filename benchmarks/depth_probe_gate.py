"""The utility gate of ECO-M2F step 3 on the probe's per-image gains, and its evaluation at encoder budgets.

The gate is the model's own `EcoExitGate` (pooled input-projected 1/32 map -> one linear layer, or a hidden layer;
`mean` or `mean_std` pooling) trained as `modeling_ecom2f.recipe.gate_training` trains a utility gate: mean-squared
regression of each exit's per-image quality gain over the shallowest exit (`utility_targets`), AdamW, learning rate
1e-2, weight decay 0.01, batch 32, 60 epochs with a cosine schedule, gradient norm clipped at 1 (the step-3 parser's
defaults; a plain loop, without step 3's 5% warm-up, with weight decay on every parameter). A share of the gate's training images is held out; on it `routing.calibrate_beta` picks, for each
budget (mean encoder cost as a fraction of full depth), the beta whose routing meets it. The depths on the evaluation
images then come from the model's own rule (`routing.utility_depths`), and each routing is compared with the
fixed-exit frontier and its random control with bootstrap standard errors (`depth_probe_analysis`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from depth_probe_analysis import bootstrap_routing, passes

from modeling_ecom2f.ecom2f_gate import EcoExitGate
from modeling_ecom2f.recipe.gate_training import holdout_split, utility_targets
from modeling_ecom2f.experiments.report_statistics import spearman
from modeling_ecom2f.recipe.routing import calibrate_beta, utility_depths


def train_utility_gate(maps: np.ndarray, quality: np.ndarray, *, hidden_size: int | None = None,
                       pooling: str = "mean", epochs: int = 60, batch_size: int = 32, learning_rate: float = 1e-2,
                       weight_decay: float = 0.01, max_grad_norm: float = 1.0, seed: int = 0,
                       init_std: float | None = None) -> EcoExitGate:
    """An `EcoExitGate` regressing `utility_targets(quality)` from the gate maps `(N, d, h, w)`. `init_std`: start
    as step 3's `recipe.modeling.rebuild_gate` does (first layer normal with this std, zero biases); None keeps the
    module's own initialisation."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    gate = EcoExitGate(in_channels=maps.shape[1], num_exits=quality.shape[1], hidden_size=hidden_size,
                       pooling=pooling)
    if init_std is not None:
        for layer in gate.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.zeros_(layer.bias)
        first = gate.classifier if hidden_size is None else gate.classifier[0]
        torch.nn.init.normal_(first.weight, std=init_std)
    inputs = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    targets = torch.from_numpy(utility_targets(quality))
    optimizer = torch.optim.AdamW(gate.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(inputs) // batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for b in range(steps_per_epoch):
            batch = order[b * batch_size:(b + 1) * batch_size]
            loss = torch.nn.functional.mse_loss(gate(inputs[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gate.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
    return gate.eval()


def predict(gate: EcoExitGate, maps: np.ndarray) -> np.ndarray:
    """`(N, exits)` predicted gains."""
    with torch.no_grad():
        return gate(torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))).numpy()


def evaluate_gate(*, train_maps: np.ndarray, train_quality: np.ndarray, eval_maps: np.ndarray,
                  eval_quality: np.ndarray, exits: Sequence[int], budgets: Sequence[float], hidden_size: int | None,
                  pooling: str, holdout_fraction: float = 0.2, resamples: int = 1000, seed: int = 0) -> dict:
    """Train a utility gate on `train_*`, calibrate a beta per budget on its held-out part, evaluate on `eval_*`.

    Returns:
        `{"gate": {...}, "budgets": [{target, beta, calibrated_fraction, depth_histogram, quality, mean_cost,
        frontier, random, gain_over_frontier(_se), gain_over_random(_se), passes}], "passing_budgets": n,
        "holdout_mse": ..., "constant_mse": ...}`.
    """
    fit, held = holdout_split(len(train_quality), holdout_fraction, seed)
    gate = train_utility_gate(train_maps[fit], train_quality[fit], hidden_size=hidden_size, pooling=pooling,
                              seed=seed)
    held_pred = predict(gate, train_maps[held])
    held_target = utility_targets(train_quality[held])
    constant = utility_targets(train_quality[fit]).mean(0, keepdims=True)
    eval_pred = predict(gate, eval_maps)
    eval_target = utility_targets(eval_quality)
    exits = list(exits)
    rows = []
    for target in budgets:
        beta, achieved = calibrate_beta(held_pred, exits, target_fraction=float(target))
        depths = utility_depths(eval_pred, exits, beta)
        choice = np.searchsorted(np.asarray(exits), depths)
        result = bootstrap_routing(eval_quality, choice, exits, resamples=resamples, seed=seed)
        result.update({"target_fraction": float(target), "beta": float(beta), "calibrated_fraction": achieved,
                       "depth_histogram": {int(k): int((depths == k).sum()) for k in exits}})
        result["passes"] = passes(result)
        rows.append(result)
    return {"gate": {"hidden_size": hidden_size, "pooling": pooling, "fit_images": int(len(fit)),
                     "calibration_images": int(len(held))},
            "holdout_mse": float(((held_pred - held_target) ** 2).mean()),
            "holdout_constant_mse": float(((constant - held_target) ** 2).mean()),
            "eval_mse": float(((eval_pred - eval_target) ** 2).mean()),
            "eval_constant_mse": float(((constant - eval_target) ** 2).mean()),
            "eval_spearman_predicted_vs_true_gain": spearman(eval_pred[:, -1], eval_target[:, -1]),
            "budgets": rows, "passing_budgets": int(sum(r["passes"] for r in rows))}


__all__ = ["evaluate_gate", "predict", "train_utility_gate"]
