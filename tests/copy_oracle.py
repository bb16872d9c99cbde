"""Copy the real-Caffe oracle cases the tests use from ../shared/oracle into tests/data/oracle.

The project must test without ../shared and without Caffe, so the cases live in the repository.
To keep the test data near 50 MB, the largest forward case stays out (``fcn/voc-fcn32s``, whose
64x64 upsampling blob alone is 7 MB twice over); the tests also sweep ../shared/oracle/cases when
it is present, as it is in CI, so it is still checked. Every solver case is copied: the solver's
parity must hold without ../shared. ``update/`` also holds cases written here with real Caffe
by ``tests/make_update_cases.py`` (AdaGrad, RMSProp, AdaDelta, Nesterov); this script leaves
them alone.

    python tests/copy_oracle.py [ORACLE_CASES_DIR]
"""
import shutil
import sys
from pathlib import Path

LEFT_OUT = {"fcn/voc-fcn32s"}
KINDS = ("data", "fcn", "formats", "layers", "solver", "update")
ZOO = ("argmax_threshold", "caffenet", "deeplab_largefov", "embed_filter_reindex", "googlenet",
       "losses_contrastive", "losses_multinomial_softmax_axis", "losses_regression",
       "lstm_rnn", "mix_neurons", "mix_shapes", "nin_cifar10", "prelu", "resnet50",
       "squeezenet_v1.1", "ssd_head")  # every zoo/ case
HERE = Path(__file__).resolve().parent


def main(src=None):
    src = Path(src or HERE.parent.parent / "shared" / "oracle" / "cases")
    dst = HERE / "data" / "oracle"
    cases = [p for kind in KINDS for p in src.glob(f"{kind}/*")] + [src / "zoo" / z for z in ZOO]
    for case in sorted(p for p in cases if p.is_dir()):
        rel = case.relative_to(src).as_posix()
        if rel in LEFT_OUT:
            continue
        shutil.rmtree(dst / rel, ignore_errors=True)
        shutil.copytree(case, dst / rel)
        for p in (dst / rel).rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    print(f"copied into {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:])
