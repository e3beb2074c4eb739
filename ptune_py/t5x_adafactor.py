#!/usr/bin/env python3
"""T5X's Adafactor update, re-implemented in float64 numpy from T5X's code.

Written from t5x/adafactor.py (google-research/t5x), not from ptune:
  Adafactor.__init__           the defaults (decay_rate 0.8, clipping_threshold 1.0,
                               min_dim_size_to_factor 128, epsilon1 1e-30, ...)
  Adafactor._decay_rate_pow    1 - (step + 1)^-0.8, computed in float32
  Adafactor._factored_dims     factor only if the second-largest dim >= min_dim_size_to_factor
  Adafactor.apply_param_gradient   the update itself
with the settings prompt-tuning's gin gives it for the paper
(prompt_tuning/configs/models/t5_1_1_prompt.gin: decay_rate 0.8, step_offset 0,
multiply_by_parameter_scale False, weight_decay_rate 1e-5; and
prompt_tuning/train/optim.py's factor rules, which mark the prompt's axes NONE,
so T5X's _parse_rule falls back to the heuristic rule for a 2-D prompt).

T5X keeps the parameter and the optimizer state in float32 (state zeros are
float32; new_param.astype(param.dtype)); this script does each step's
arithmetic in float64 and, by default, stores the parameter and state in
float32 between steps as T5X does (--float64-state keeps them in float64).

  t5x_adafactor.py make-case --rows R --cols C [--steps 20] [--seed S] ... > case.json
  t5x_adafactor.py run [--float64-state] < case.json > params.json
  t5x_adafactor.py compare REFERENCE.json ENGINE.json [--tol 1e-6]
"""
import argparse
import json
import sys

import numpy as np


class Hyper:
    """The hyper-parameters apply_param_gradient reads (T5X names)."""

    def __init__(self, learning_rate, weight_decay_rate, min_dim_size_to_factor, step_offset=0):
        self.learning_rate = learning_rate
        self.factored = True
        self.multiply_by_parameter_scale = False   # the gin
        self.beta1 = None                          # T5X default: no momentum
        self.decay_rate = 0.8                      # the gin
        self.step_offset = step_offset             # the gin: 0
        self.clipping_threshold = 1.0              # T5X default
        self.weight_decay_rate = weight_decay_rate  # the gin: 1e-5
        self.min_dim_size_to_factor = min_dim_size_to_factor  # T5X default: 128
        self.epsilon1 = 1e-30                      # T5X default
        self.epsilon2 = 1e-3                       # unused: no parameter scale
        self.global_norm_clip_threshold = None     # T5X default


def decay_rate_pow(i, exponent=0.8):
    """Adafactor._decay_rate_pow: t = float32(i) + 1; 1 - t^-exponent, in float32."""
    t = np.float32(i) + np.float32(1.0)
    return np.float32(1.0) - t ** np.float32(-exponent)


def factored_dims(hp, shape):
    """Adafactor._factored_dims (the heuristic rule)."""
    if not hp.factored or len(shape) < 2:
        return None
    sorted_dims = np.argsort(shape)
    if shape[sorted_dims[-2]] < hp.min_dim_size_to_factor:
        return None
    return (int(sorted_dims[-2]),), (int(sorted_dims[-1]),)


def init_state(hp, shape):
    """Adafactor.init_param_state: zeros."""
    fd = factored_dims(hp, shape)
    if fd is None:
        return {"v": np.zeros(shape)}
    d1, d0 = fd
    return {"v_row": np.zeros(np.delete(shape, d0)), "v_col": np.zeros(np.delete(shape, d1))}


def apply_param_gradient(step, hp, param, state, grad):
    """Adafactor.apply_param_gradient for a 2-D parameter, float64."""
    averaging_dims = tuple(range(param.ndim))
    decay_rate = np.float64(decay_rate_pow(step - hp.step_offset, exponent=hp.decay_rate))
    update_scale = hp.learning_rate
    assert not hp.multiply_by_parameter_scale
    mixing_rate = 1.0 - decay_rate
    grad_sqr = grad * grad + hp.epsilon1
    fd = factored_dims(hp, param.shape)
    new_state = {}
    if fd is not None:
        d1, d0 = fd
        new_v_row = decay_rate * state["v_row"] + mixing_rate * np.mean(grad_sqr, axis=d0)
        new_v_col = decay_rate * state["v_col"] + mixing_rate * np.mean(grad_sqr, axis=d1)
        new_state = {"v_row": new_v_row, "v_col": new_v_col}
        reduced_d1 = tuple(d - len([e for e in d0 if e < d]) for d in d1)
        row_col_mean = np.mean(new_v_row, axis=reduced_d1, keepdims=True)
        row_factor = (new_v_row / row_col_mean) ** -0.5
        col_factor = new_v_col ** -0.5
        y = grad * np.expand_dims(row_factor, axis=d0) * np.expand_dims(col_factor, axis=d1)
    else:
        new_v = decay_rate * state["v"] + mixing_rate * grad_sqr
        new_state = {"v": new_v}
        y = grad * new_v ** -0.5
    if hp.clipping_threshold is not None:
        clipping_denom = np.maximum(
            1.0, np.sqrt(np.mean(y * y, axis=averaging_dims, keepdims=True)) / hp.clipping_threshold)
        y = y / clipping_denom
    subtrahend = update_scale * y
    assert hp.beta1 is None
    if hp.weight_decay_rate is not None:
        new_param = (1.0 - hp.weight_decay_rate) * param - subtrahend
    else:
        new_param = param - subtrahend
    return new_param, new_state


def run(case, float64_state=False):
    rows, cols = case["rows"], case["cols"]
    hp = Hyper(case.get("learning_rate", 0.3), case.get("weight_decay", 1e-5),
               case.get("min_dim_size_to_factor", 128))
    store = (lambda a: a) if float64_state else (lambda a: a.astype(np.float32).astype(np.float64))
    param = np.array(case["params"], dtype=np.float64).reshape(rows, cols)
    state = init_state(hp, param.shape)
    # T5X's step counter: the checkpoint's step at the first update (start_step, with
    # step_offset 0), then one more per update (OptimizerState(step + 1, ...))
    step = case.get("start_step", 0)
    for g in case["grads"]:
        grad = np.array(g, dtype=np.float32).astype(np.float64).reshape(rows, cols)
        param, state = apply_param_gradient(step, hp, param, state, grad)
        param = store(param)
        state = {k: store(v) for k, v in state.items()}
        step += 1
    return {"params": param.reshape(-1).tolist(),
            "factored": factored_dims(hp, param.shape) is not None}


def make_case(a):
    """Pseudo-random float32 parameters and gradients with uneven row and column scales
    (so a factored and a full second moment differ), some exact zeros, and a gradient
    scale that changes over the steps."""
    rng = np.random.default_rng(a.seed)
    n = a.rows * a.cols
    params = rng.uniform(-0.5, 0.5, size=n).astype(np.float32)
    row_scale = np.exp(rng.uniform(-3, 1, size=(a.rows, 1)))
    col_scale = np.exp(rng.uniform(-2, 2, size=(1, a.cols)))
    grads = []
    for t in range(a.steps):
        g = rng.standard_normal((a.rows, a.cols)) * row_scale * col_scale * (1 + 4 * (t % 3 == 0))
        g[rng.uniform(size=g.shape) < 0.01] = 0.0
        grads.append(g.astype(np.float32).reshape(-1).tolist())
    return {"optimizer": "adafactor", "rows": a.rows, "cols": a.cols,
            "learning_rate": a.lr, "weight_decay": a.weight_decay,
            "min_dim_size_to_factor": a.min_dim, "start_step": a.start_step,
            "params": params.tolist(), "grads": grads}


def compare(a):
    with open(a.reference) as f:
        ref = np.array(json.load(f)["params"])
    with open(a.engine) as f:
        eng = np.array(json.load(f)["params"])
    if ref.shape != eng.shape:
        print(f"shape mismatch: reference {ref.shape}, engine {eng.shape}")
        return 1
    # relative to each element, with a floor at the parameter's RMS (an element near 0
    # has no meaningful relative error)
    scale = np.abs(ref) + np.sqrt(np.mean(ref * ref))
    rel = np.abs(eng - ref) / scale
    worst = float(rel.max())
    print(f"max relative difference {worst:.3g} (tolerance {a.tol:g}), "
          f"max |param| {float(np.abs(ref).max()):.3g}")
    return 0 if worst <= a.tol and np.all(np.isfinite(eng)) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-case")
    m.add_argument("--rows", type=int, required=True)
    m.add_argument("--cols", type=int, required=True)
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--lr", type=float, default=0.3)
    m.add_argument("--weight-decay", type=float, default=1e-5)
    m.add_argument("--min-dim", type=int, default=128)
    m.add_argument("--start-step", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--float64-state", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("reference")
    c.add_argument("engine")
    c.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args()
    if a.cmd == "make-case":
        json.dump(make_case(a), sys.stdout)
    elif a.cmd == "run":
        json.dump(run(json.load(sys.stdin), a.float64_state), sys.stdout)
    else:
        sys.exit(compare(a))


if __name__ == "__main__":
    main()
