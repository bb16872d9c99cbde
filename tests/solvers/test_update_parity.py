"""Caffe's update to the bit (issue 17): the update cases of the oracle (Caffe's gradients fed
to fcn-port's solver) land on Caffe's params and histories in 0 ulps, through ``fcn-port
parity``; the suite sees a one-ulp difference in the arithmetic (torch's sqrt for Caffe's
powf, numpy's power for C's powf in the rate); and the ulp measure itself."""
import ctypes
import json

import numpy as np
import pytest
import torch

from fcn_port.cli import main
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.solvers import libm, rules
from fcn_port.solvers.lr_policy import learning_rate
from fcn_port.solvers.update_parity import run_update_case, ulps
from helpers import case_params, oracle_cases

F32 = np.float32


@pytest.mark.parametrize("case", case_params("update"))
def test_every_update_case_is_bit_identical_to_caffe(case, capsys):
    assert main(["parity", "--json", str(case)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["kind"] == "update" and row["pass"] and row["compared"] > 50
    assert row["max_ulp"] == 0 and row["differ"] == 0.0, row  # the targets are 0 and 1
    kind = json.loads((case / "case.json").read_text())["solver"].get("type", "SGD")
    assert row["target_ulp"] == (0 if kind in ("SGD", "Nesterov") else 1)


def test_all_six_solver_types_are_covered():
    kinds = {json.loads((c / "case.json").read_text())["solver"].get("type", "SGD")
             for c in oracle_cases("update")}
    assert kinds == {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"}


def test_the_suite_sees_the_order_of_the_clipping_sum(monkeypatch):
    """ClipGradients' sum of squares is OpenBLAS's sdot in Caffe; torch.dot sums in another
    order, and one ulp of the norm at a step shows as 64 ulps of a history element."""
    case = next(c for c in oracle_cases("update") if c.name == "nesterov_clip_itersize")
    monkeypatch.setattr(rules, "_sumsq", lambda flat: np.float32(torch.dot(flat, flat).item()))
    row = run_update_case(case)
    assert not row["pass"] and row["max_ulp"] > 1


def test_the_suite_sees_one_ulp_in_the_square_root(monkeypatch):
    """Adam with torch.sqrt (Sleef, not C's powf) for Caffe's caffe_powx(v, 0.5): 384 ulps on
    a param by step 7, from one-ulp differences in the first steps."""
    adam = next(c for c in oracle_cases("update") if c.name == "adam_resume")
    monkeypatch.setattr(rules, "powx",
                        lambda x, b: torch.mul(x, x) if b == 2 else torch.sqrt(x))
    row = run_update_case(adam)
    assert not row["pass"] and row["max_ulp"] > 1 and 0 < row["differ"] < 0.1


def test_ulps():
    one = np.float32(1)
    assert ulps([np.nextafter(one, F32(2))], [one]).tolist() == [1]
    assert ulps([F32(-0.0)], [F32(0.0)]).tolist() == [0]
    tiny = np.nextafter(F32(0), F32(1))
    assert ulps([-tiny], [tiny]).tolist() == [2]                 # across zero
    assert ulps([F32("nan")], [one]).tolist() == [1 << 62]
    assert ulps([F32("nan")], [F32("nan")]).tolist() == [0]
    assert ulps([F32(1e-30)], [F32(-1e-30)])[0] > 1 << 24        # far apart in floats


def _c_powf():
    lib = ctypes.CDLL(None)
    lib.powf.restype, lib.powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    return lambda x, y: F32(lib.powf(float(x), float(y)))


@pytest.mark.parametrize("b", [2, 0.5])
def test_powx_is_c_powf_element_by_element(b):
    """caffe_powx is powf per element; libm.powx asks the C library only near float midpoints
    and for special values. Checked against one powf call per element, on values of every
    exponent, near-midpoint squares and square roots, and the special ones."""
    powf = _c_powf()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 0x7F800000, 200_000, dtype=np.int64).astype(np.uint32).view(np.float32)
    grads = rng.standard_normal(100_000).astype(np.float32) * F32(1e-3)
    special = np.array([0, -0.0, 1, 2, 4, np.inf, -1, np.nan, 1e-45, 1e-40, 1e-20, 3e19, 1e38,
                        1 + 2 ** -12], np.float32)
    x = np.concatenate([x, grads, np.abs(grads), special])
    got = libm.powx(x, b)
    want = np.array([powf(v, b) for v in x], np.float32)
    same = (got.view(np.int32) == want.view(np.int32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]
    # and the C library is not the correctly rounded function numpy and torch would give
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = (x.astype(np.float64) ** b).astype(np.float32)
    finite = np.isfinite(want) & np.isfinite(rounded)
    assert (rounded[finite].view(np.int32) != want[finite].view(np.int32)).any()


@pytest.mark.parametrize("values", [
    dict(lr_policy="inv", gamma=1e-4, power=0.75),
    dict(lr_policy="poly", power=0.9, max_iter=5000),
    dict(lr_policy="sigmoid", gamma=-0.002, stepsize=2500),
])
def test_rates_call_c_powf_and_expf_as_caffe(values):
    """GetLearningRate's float formulas with C's powf/expf (ctypes), for 5000 iterations; numpy's
    float32 power and exp give another value at a fifth of them."""
    powf = _c_powf()
    lib = ctypes.CDLL(None)
    lib.expf.restype, lib.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    p = caffe_pb2.SolverParameter(base_lr=0.01, **values)
    base, gamma, power = F32(p.base_lr), F32(p.gamma), F32(p.power)
    numpy_differs = 0
    for it in range(5000):
        if p.lr_policy == "inv":
            x = F32(1) + gamma * F32(it)
            want, alt = base * powf(x, -power), base * np.power(x, -power)
        elif p.lr_policy == "poly":
            x = F32(1) - F32(it) / F32(p.max_iter)
            want, alt = base * powf(x, power), base * np.power(x, power)
        else:
            e = -gamma * (F32(it) - F32(p.stepsize))
            want = base * (F32(1) / (F32(1) + F32(lib.expf(float(e)))))
            alt = base * (F32(1) / (F32(1) + np.exp(e)))
        got, _ = learning_rate(p, it)
        assert got == want and isinstance(got, np.float32), (it, got, want)
        numpy_differs += bool(alt != want)
    assert numpy_differs > 0
