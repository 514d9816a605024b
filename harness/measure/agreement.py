"""Output agreement: a backend/precision's outputs against a second, independent execution (the fp32
eager model; for an ONNX file, a second session of it), same inputs. With none, "not checked", never a pass.

Recorded per point: max abs error, max error relative to the reference's largest magnitude, NaN/Inf,
a pass/fail against the precision's tolerance (written into the result), and the task's own
agreement: top-1 class (classification), kept-box set (detection), per-pixel class (segmentation).
"""

from __future__ import annotations

import numpy as np

from kernels import seg_argmax

# max |out - ref| / max |ref| allowed per precision (fp32: kernel-order and fusion differences only)
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 6e-2, "int8": 0.15}


def _box_set_agreement(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> float:
    """Fraction of reference boxes (b) matched by a box of the same class with IoU >= 0.5."""
    if nb == 0:
        return 1.0 if na == 0 else 0.0
    hit = 0
    for j in range(nb):
        bx = b[j]
        for i in range(na):
            ax = a[i]
            if ax[5] != bx[5]:
                continue
            iw = max(0.0, min(ax[2], bx[2]) - max(ax[0], bx[0]))
            ih = max(0.0, min(ax[3], bx[3]) - max(ax[1], bx[1]))
            inter = iw * ih
            union = (ax[2] - ax[0]) * (ax[3] - ax[1]) + (bx[2] - bx[0]) * (bx[3] - bx[1]) - inter
            if union > 0 and inter / union >= 0.5:
                hit += 1
                break
    return hit / nb


NOT_CHECKED = "not checked (no independent reference)"


def not_checked(why: str, out: np.ndarray | None = None) -> dict:
    """The agreement record of a point with no second, independent execution to compare with:
    `passed` None (flag `accuracy_not_checked`), never a pass; `note` says why."""
    d = {"reference": None, "passed": None, "checked": NOT_CHECKED, "note": why}
    if out is not None:
        d["nan_or_inf"] = not bool(np.isfinite(out).all())
    return d


def agreement(
    out: np.ndarray,
    ref: np.ndarray,
    precision: str,
    task: str,
    head=None,
    reference: str = "torch eager fp32, same input batch",
) -> dict:
    """Compare one batch of raw outputs with the reference outputs (`reference` says what made them);
    `head` (harness.vision.detection.DetectHead) decodes detector outputs. Outputs compared with
    themselves (the same array) check nothing: `passed` is then None, "not checked"."""
    if out is ref or (isinstance(out, np.ndarray) and np.shares_memory(out, ref)):
        return not_checked(f"outputs compared with themselves ({reference})", out)
    out = out.astype(np.float32)
    ref = ref.astype(np.float32)
    finite = bool(np.isfinite(out).all())
    scale = float(np.abs(ref).max()) or 1.0
    max_abs = float(np.abs(out - ref).max()) if finite else float("nan")
    rel = max_abs / scale
    tol = TOLERANCE.get(precision, TOLERANCE["fp32"])  # (an ONNX graph in fp64: fp32's)
    d = {
        "reference": reference,
        "max_abs_err": max_abs,
        "max_rel_err": rel,
        "tolerance_rel": tol,
        "nan_or_inf": not finite,
        "passed": finite and rel <= tol,
    }
    if task == "classify":
        d["top1_agreement"] = float(np.mean(out.argmax(1) == ref.argmax(1)))
    elif task == "segment":
        d["pixel_agreement"] = float(np.mean(seg_argmax(out) == seg_argmax(ref)))
    elif head is not None:
        n = out.shape[0]
        meta = head.identity_meta(n)
        a, na = head.decode(out, *meta, 0.25, 0.45, 300)
        b, nb = head.decode(ref, *meta, 0.25, 0.45, 300)
        d["box_set_agreement"] = float(np.mean([_box_set_agreement(a[i], na[i], b[i], nb[i]) for i in range(n)]))
    return d
