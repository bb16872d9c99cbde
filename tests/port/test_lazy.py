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


def test_layer_names_need_no_torch_and_match_what_the_families_register():
    code = ("import sys; from fcn_port.port import layers; n = layers.names(); "
            "a = 'torch' in sys.modules; t = list(layers.types()); "
            "print(a, n == t, len(t))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    a, same, count = out.stdout.split()
    assert (a, same) == ("False", "True") and int(count) >= 37


def test_a_type_registered_outside_its_listed_family_is_refused():
    import pytest

    from fcn_port.port.layers import CaffeLayer, register
    with pytest.raises(RuntimeError):
        register("NotListedAnywhere")(type("Odd", (CaffeLayer,), {}))


def test_inspect_of_a_caffemodel_imports_no_torch():
    """issue 18: ``inspect`` stays light (no torch), so its peak RSS is the file's pages."""
    from helpers import ORACLE

    model = ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel"
    code = ("import sys, contextlib, io; from fcn_port import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    cli.main(['inspect', {str(model)!r}])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
