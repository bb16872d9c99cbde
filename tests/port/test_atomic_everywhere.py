"""Every file the package writes goes through fileio.atomic_output (a hidden temporary name in
the same folder, renamed when complete): a scan of the sources for the calls that write files
(open for writing, savefig, PIL/torch/numpy save, h5py.File for writing, Path.write_text,
shutil.copy, torch.onnx.export, scipy.io.savemat) whose target is not a name that an
``atomic_output(...)`` block yields. The few exceptions are listed with their reason."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (file, call) -> why it may write in place
EXCEPTIONS = {
    ("solvers/log.py", "open"): "the training CSV log, appended as training goes; its header "
                                "and kept rows are written atomically first (open_csv_log)",
    ("reproduce/fetch.py", "open"): "a download's resumable <file>.part, checked, then renamed",
    ("models/deploy/bench.py", "open"): "/proc/self/clear_refs, a kernel control file",
    ("port/fileio/torchsave.py", "torch.save"): "writes into atomic_output's temporary file",
    ("models/deploy/onnx.py", "torch.onnx.export"): "_export_dynamo is handed atomic_output's "
                                                    "temporary path",
    ("port/formats/proto/generate.py", "shutil.copyfile"): "developer tool: regenerates caffe_pb2",
    ("port/formats/proto/generate.py", "shutil.move"): "developer tool: regenerates caffe_pb2",
}
# files other engineers own, to be routed through atomic_output (see the issue 11D report)
PENDING = set()  # files not yet converted (none)

WRITE_MODES = set("wax+")


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")
    return ".".join(reversed(parts))


def _mode(call, position):
    mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None and len(call.args) > position:
        mode = call.args[position]
    if isinstance(mode, ast.IfExp):  # "r+b" if start else "wb": either may write
        return "".join(_mode(ast.Call(args=[], keywords=[ast.keyword("mode", m)]), 0) or ""
                       for m in (mode.body, mode.orelse))
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def _target(call, name):
    """(kind, target node) when ``call`` writes a file, else None."""
    last = name.rsplit(".", 1)[-1]
    args = call.args
    if name == "open":
        mode = _mode(call, 1)
        return ("open", args[0]) if mode and WRITE_MODES & set(mode) else None
    if name.endswith("h5py.File"):
        mode = _mode(call, 1)
        return ("h5py.File", args[0]) if mode and WRITE_MODES & set(mode) else None
    if name == "torch.save" and len(args) > 1:
        return "torch.save", args[1]
    if name == "torch.onnx.export" and len(args) > 2:
        return "torch.onnx.export", args[2]
    if name.startswith(("np.save", "numpy.save", "scipy.io.savemat")) and args:
        return name, args[0]
    if name.startswith("shutil.") and last in ("copy", "copy2", "copyfile", "move"):
        return name, None
    if last in ("write_text", "write_bytes") and "." in name:
        return last, None  # Path methods: always in place
    if last in ("savefig", "save", "tofile") and args and "." in name:  # a method: PIL, figure
        return last, args[0]
    return None


def _atomic_names(tree):
    """Names bound by ``with ...atomic_output(...) as NAME``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and _dotted(call.func).endswith("atomic_output") \
                        and isinstance(item.optional_vars, ast.Name):
                    names.add(item.optional_vars.id)
    return names


def _findings():
    files = [ROOT / "cli.py"]
    for pkg in ("port", "models", "solvers", "reproduce"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith("port/fileio/files.py"):
            continue  # atomic_output itself
        tree = ast.parse(f.read_text())
        atomic = _atomic_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            found = _target(node, _dotted(node.func))
            if found is None:
                continue
            kind, target = found
            if isinstance(target, ast.Name) and target.id in atomic:
                continue
            yield rel, kind, node.lineno


def test_every_output_goes_through_atomic_output():
    bad = [(rel, kind, line) for rel, kind, line in _findings()
           if (rel, kind) not in EXCEPTIONS and rel not in PENDING]
    assert bad == [], "writes in place (route them through fileio.atomic_output): " + str(bad)


def test_the_scan_sees_writes_and_the_exceptions_are_still_needed():
    found = {(rel, kind) for rel, kind, _ in _findings()}
    assert set(EXCEPTIONS) <= found  # each exception is still there; drop it when it goes
    tree = ast.parse("with atomic_output(p) as f:\n    im.save(f)\nim.save(p)\n"
                     "open(q, 'a')\nh5py.File(t, mode='w')\nPath(x).write_text('s')\n")
    atomic = _atomic_names(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    hits = [_target(c, _dotted(c.func)) for c in calls]
    kinds = [h[0] for h in hits if h and not (isinstance(h[1], ast.Name) and h[1].id in atomic)]
    assert sorted(kinds) == ["h5py.File", "open", "save", "write_text"]
