"""fcn-port download's catalog against the official caffemodel-url files, --list, the mirror
rule, and a file already in place (checked and recorded, no request made)."""
import json
import re
import shutil
import socket

from fcn_port import cli
from fcn_port.reproduce import catalog, fetch
from helpers import ORACLE

# each official model folder's caffemodel-url, transcribed (FCN_FACTS.md section 0)
CAFFEMODEL_URL = {
    "voc-fcn32s": "fcn32s-heavy-pascal", "voc-fcn16s": "fcn16s-heavy-pascal",
    "voc-fcn8s": "fcn8s-heavy-pascal", "voc-fcn8s-atonce": "fcn8s-atonce-pascal",
    "voc-fcn-alexnet": "fcn-alexnet-pascal", "nyud-fcn32s-color": "nyud-fcn32s-color-heavy",
    "nyud-fcn32s-hha": "nyud-fcn32s-hha-heavy",
    "nyud-fcn32s-color-hha": "nyud-fcn32s-color-hha-heavy",
    "pascalcontext-fcn32s": "pascalcontext-fcn32s-heavy",
    "pascalcontext-fcn16s": "pascalcontext-fcn16s-heavy",
    "pascalcontext-fcn8s": "pascalcontext-fcn8s-heavy",
    "siftflow-fcn32s": "siftflow-fcn32s-heavy", "siftflow-fcn16s": "siftflow-fcn16s-heavy",
    "siftflow-fcn8s": "siftflow-fcn8s-heavy"}


def run(*argv):
    return cli.main(["download", *map(str, argv)])


def test_catalog_matches_caffemodel_url_files():
    from fcn_port import models

    fcn = {e.name: e for e in catalog.CATALOG.values() if e.kind == "caffemodel"
           and e.model != "vgg16"}
    assert set(fcn) == set(models.OFFICIAL)  # every official model, color-d included
    assert fcn.pop("nyud-fcn32s-color-d").url is None
    for name, e in fcn.items():
        assert e.url == f"http://dl.caffe.berkeleyvision.org/{CAFFEMODEL_URL[name]}.caffemodel"
        assert e.model == name
    assert catalog.CATALOG["voc2011"].extract == ("TrainVal/VOCdevkit/VOC2011", "pascal/VOC2011")
    assert catalog.CATALOG["sbd"].extract == ("benchmark_RELEASE/dataset", "sbdd/dataset")
    assert catalog.ordered(["seg11valid", "sbd", "voc2011", "sbd"]) == \
        ["voc2011", "sbd", "seg11valid"]


def test_list(capsys):
    assert run("--list") == 0
    out = capsys.readouterr().out
    for name in ("voc-fcn8s", "siftflow-fcn8s", "vgg16", "voc2011", "sbd", "seg11valid"):
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert re.search(r"^nyud-fcn32s-color-d\s.*none published", out, re.M)
    assert run("--list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["voc-fcn8s"]["filename"] == "fcn8s-heavy-pascal.caffemodel"
    assert rows["nyud-fcn32s-color-d"]["url"] is None


def test_mirror_rule():
    assert fetch.mirrored("http://a.org/x/y.txt?q=1", "http://h:8/") == "http://h:8/x/y.txt?q=1"
    assert fetch.mirrored("http://a.org/x/y", "https://h/m/") == "https://h/m/x/y"


def test_file_in_place_checked_and_recorded(tmp_path, capsys):
    with socket.socket() as s:  # any request would be refused: the file is not fetched
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/w"
        shutil.copy(ORACLE / "fcn" / "voc-fcn16s" / "weights.caffemodel",
                    tmp_path / "fcn8s-heavy-pascal.caffemodel")
        assert run("voc-fcn8s", "-o", tmp_path, "--url", url) == 2  # voc-fcn16s: refused,
        assert "voc-fcn16s" in capsys.readouterr().err  # but the user's file stays
        assert (tmp_path / "fcn8s-heavy-pascal.caffemodel").exists()
        shutil.copy(ORACLE / "fcn" / "voc-fcn16s" / "weights.caffemodel",
                    tmp_path / "fcn16s-heavy-pascal.caffemodel")
        assert run("voc-fcn16s", "-o", tmp_path, "--url", url) == 0
    rec = json.loads((tmp_path / "downloads.json").read_text())["files"]
    assert list(rec) == ["fcn16s-heavy-pascal.caffemodel"]
    assert rec["fcn16s-heavy-pascal.caffemodel"]["checked"]["model"] == "voc-fcn16s"
