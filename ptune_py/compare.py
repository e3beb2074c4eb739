#!/usr/bin/python3
"""Compare two results files from t5_reference.py-style cross-checks.

  compare.py EXPECTED.json ACTUAL.json [--logits-tol 1e-4] [--grad-tol 1e-3]
             [--loss-tol 1e-5]

Per case: logits and prompt_grad errors are max|a-b| / max(max|b|, tiny)
(relative to the largest magnitude of that case's expected array); loss
error is |a-b| / |b|; rank_log_probs (when the expected case has them) error
is max|a-b| / max(max|b|, 1).  Exits 1 on any tolerance failure or shape
mismatch.
"""
import argparse
import json
import sys

import numpy as np

TINY = 1e-30


def rel_err(actual, expected):
    """Return (error, None) or (None, message) on shape mismatch."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return None, "shape %s != expected %s" % (a.shape, b.shape)
    if b.size == 0:
        return 0.0, None
    err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), TINY))
    return (err if np.isfinite(err) else float("inf")), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--logits-tol", type=float, default=1e-4)
    ap.add_argument("--grad-tol", type=float, default=1e-3)
    ap.add_argument("--loss-tol", type=float, default=1e-5)
    ap.add_argument("--rank-tol", type=float, default=1e-5)
    args = ap.parse_args()
    with open(args.expected) as f:
        exp = json.load(f)["results"]
    with open(args.actual) as f:
        act = json.load(f)["results"]

    ok = True
    if len(exp) != len(act):
        print("compare: case count %d != expected %d" % (len(act), len(exp)))
        ok = False
    worst = {"logits": 0.0, "grad": 0.0, "loss": 0.0, "rank": 0.0}
    for i, (e, a) in enumerate(zip(exp, act)):
        le, lmsg = rel_err(a["logits"], e["logits"])
        ge, gmsg = rel_err(a.get("prompt_grad") or [], e.get("prompt_grad") or [])
        se = abs(a["loss"] - e["loss"]) / max(abs(e["loss"]), TINY)
        se = se if np.isfinite(se) else float("inf")
        if lmsg or gmsg:
            print("case %d: SHAPE MISMATCH %s" % (i, "; ".join(
                m for m in ("logits " + lmsg if lmsg else "", "prompt_grad " + gmsg if gmsg else "") if m)))
            ok = False
            continue
        case_ok = le <= args.logits_tol and ge <= args.grad_tol and se <= args.loss_tol
        re = 0.0
        if "rank_log_probs" in e:
            b = np.asarray(e["rank_log_probs"], dtype=np.float64)
            a_ = np.asarray(a.get("rank_log_probs") or [], dtype=np.float64)
            if a_.shape != b.shape:
                print("case %d: SHAPE MISMATCH rank_log_probs %s != expected %s" % (i, a_.shape, b.shape))
                ok = False
                continue
            re = float(np.max(np.abs(a_ - b)) / max(float(np.max(np.abs(b))), 1.0))
            re = re if np.isfinite(re) else float("inf")
            case_ok = case_ok and re <= args.rank_tol
            worst["rank"] = max(worst["rank"], re)
        ok = ok and case_ok
        worst["logits"] = max(worst["logits"], le)
        worst["grad"] = max(worst["grad"], ge)
        worst["loss"] = max(worst["loss"], se)
        print("case %d: logits err %.3e, grad err %.3e, loss err %.3e (loss %.6f vs %.6f)%s %s"
              % (i, le, ge, se, a["loss"], e["loss"],
                 ", rank err %.3e" % re if "rank_log_probs" in e else "", "ok" if case_ok else "FAIL"))
    print("compare: %d cases, max logits err %.3e, max grad err %.3e, max loss err %.3e, "
          "max rank err %.3e: %s"
          % (len(exp), worst["logits"], worst["grad"], worst["loss"], worst["rank"], "PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
