"""port/lazy.exports: the packages' names import their modules on first use, and only then."""
import subprocess
import sys


def test_packages_import_no_torch_until_a_lazy_name_is_used():
    code = ("import sys; from fcn_port import models, solvers; a = 'torch' in sys.modules; "
            "s = solvers.Solver; b = 'torch' in sys.modules; "
            "print(a, b, 'Solver' in vars(solvers), models.load.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "fcn_port.models.checkpoint"]


def test_unknown_name_is_an_attribute_error():
    import pytest

    from fcn_port import models
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        models.nope  # noqa: B018
    assert not hasattr(models, "also_not")
