"""``fcn-port download NAME``: official weights, the VGG16 base and the VOC/SBD data, checked.

The official repository gives one URL per model (``<model>/caffemodel-url``) and leaves the rest
to ``wget``; ``infer.py`` and the ``solve.py`` scripts then expect the files by hand-chosen paths
(``voc-fcn8s/fcn8s-heavy-pascal.caffemodel``, ``../ilsvrc-nets/vgg16-fcn.caffemodel``,
``../data/pascal/VOC2011``, ``../data/sbdd/dataset``). Where we differ: ``download`` fetches the
same URLs (:mod:`.catalog`) into one folder (``-o DIR``, default ``.``), keeps the URL's file
name, resumes (:mod:`.fetch`), checks what arrived (:mod:`.checks`: the right model, not an HTML
page) before it takes its final name, and with ``--extract`` unpacks the archives safely into
the official ``data/`` layout (:mod:`.archive`), so that ``-o data`` followed by
``fcn-port train ... --data-root data`` reads them. Nothing is published to check the files
against, so the size and sha256 of each file are recorded at download in ``DIR/downloads.json``
and every later run checks the file against that record (a changed file is an error).
"""
import datetime
import json
import os
import sys

from fcn_port.port.verbs import examples

from .fetch import MIRROR_ENV, DownloadError, fetch, mirrored

MANIFEST = "downloads.json"
FORMAT = "fcn-port-downloads/1"


def add_verbs(verbs):
    """Adds ``fcn-port download``."""
    p = verbs.add_parser("download", help="download official FCN weights, VGG16 and the VOC/SBD "
                         "data, resumably and checked", description=(
        "Download the official FCN caffemodels (by model name), the VGG16 ILSVRC base and the "
        "PASCAL VOC 2011 / SBD / seg11valid data. Each file goes to DIR/<file>.part, resumes "
        "with an HTTP Range request when the server allows, is checked (a caffemodel must be "
        "the named model; an HTML page is refused) and only then takes its final name. Its "
        "size and sha256 are recorded in DIR/downloads.json and checked on later runs. "
        f"{MIRROR_ENV}=http://host:port/ replaces the scheme and host of every URL."))
    p.add_argument("names", nargs="*", metavar="NAME", help="catalog names (see --list)")
    p.add_argument("-o", "--out", default=".", metavar="DIR",
                   help="folder for the files (default: current folder; created if missing)")
    p.add_argument("--url", metavar="URL", help="fetch this URL instead (one NAME only)")
    p.add_argument("--list", action="store_true", help="print the catalog and exit")
    p.add_argument("--json", action="store_true", help="with --list: JSON, URLs included")
    p.add_argument("--extract", action="store_true", help=(
        "unpack archives into the official data/ layout: voc2011 -> DIR/pascal/VOC2011, "
        "sbd -> DIR/sbdd/dataset, seg11valid -> DIR/pascal/VOC2011/ImageSets/Segmentation/"))
    p.add_argument("--force", action="store_true",
                   help="download again even if the file is present and checked")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the server at each step (default 60); a "
                   "transfer under 1 KB/s for twice that is given up as stalled")
    p.add_argument("--retries", type=int, default=3, metavar="N", help=(
        "resume up to N times after a dropped connection, timeout or HTTP 5xx (default 3)"))
    p.epilog = examples(
        "fcn-port download --list",
        "fcn-port download voc-fcn8s -o weights/",
        "fcn-port download voc2011 sbd seg11valid --extract -o data/",
        "fcn-port download vgg16 -o ilsvrc-nets/")
    p.set_defaults(run=_download)


# ------------------------------------------------------------------------------ manifest

def read_manifest(folder):
    """{file name: record} from ``DIR/downloads.json`` ({} if there is none); each record a
    dict whose ``size`` and ``sha256`` (what later runs check) are of the types written."""
    from fcn_port.port.errors import CaffeFormatError
    from fcn_port.port.fileio import read_json

    path = os.path.join(folder, MANIFEST)
    if not os.path.lexists(path):
        return {}
    expected = f"a downloads manifest ({FORMAT!r})"
    data = read_json(path, expected)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CaffeFormatError(path, "format", f"expected {FORMAT!r}")
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise CaffeFormatError(path, "files", f"not an object; expected {expected}")
    for name, rec in files.items():
        if not (isinstance(rec, dict) and type(rec.get("size")) is int
                and isinstance(rec.get("sha256"), str)):
            raise CaffeFormatError(path, f"files.{name[:80]}", "not a record with a size and a "
                                   f"sha256; expected {expected}")
    return files


def write_manifest(folder, files):
    from fcn_port.port.fileio import atomic_output

    with atomic_output(os.path.join(folder, MANIFEST), "w") as f:
        json.dump({"format": FORMAT, "files": files}, f, indent=1, sort_keys=True)
        f.write("\n")


def digests(path, algos=("sha256",)):
    """{algorithm: hex digest} of ``path`` in one pass (a progress bar for big files)."""
    from tqdm import tqdm

    from fcn_port.port.fileio.hashing import digests as hash_file

    size = os.path.getsize(path)
    with tqdm(total=size, unit="B", unit_scale=True, leave=False,
              desc=f"checking {os.path.basename(path)}",
              disable=None if size > 64 << 20 else True) as bar:
        return hash_file(path, algos, bar.update)


# ------------------------------------------------------------------------------ one entry

def _verify(entry, path, shown):
    """(checked info, size, sha256) of ``path``, or an error (reference checksum, kind)."""
    from . import checks

    size = os.path.getsize(path)
    if entry.size is not None and size != entry.size:
        raise DownloadError(f"{shown}: {size:,} bytes, {entry.name} has {entry.size:,}")
    info = checks.check(entry, path, shown)
    algos = ["sha256"] + ([entry.ref[0]] if entry.ref and entry.ref[0] != "sha256" else [])
    sums = digests(path, algos)
    if entry.ref and sums[entry.ref[0]] != entry.ref[1]:
        raise DownloadError(f"{shown}: {entry.ref[0]} {sums[entry.ref[0]]}, expected "
                            f"{entry.ref[1]} (as {entry.ref[2]} records it): a corrupt or "
                            f"different file")
    return info, size, sums["sha256"]


def _record(entry, url, size, sha, info):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"name": entry.name, "url": url, "kind": entry.kind, "size": size, "sha256": sha,
            "checked": info, "downloaded": now.isoformat()}


def get(entry, folder, url, *, force=False, timeout=60.0, retries=3, log=print):
    """Make ``folder/<file>`` the checked file of ``entry``; returns its path."""
    final = os.path.join(folder, entry.filename)
    files = read_manifest(folder)
    rec = files.get(entry.filename)
    if os.path.exists(final) and not force:
        if rec is not None:
            size = os.path.getsize(final)
            if size == rec.get("size") and digests(final)["sha256"] == rec.get("sha256"):
                log(f"{entry.name}: {final} already present and checked (size {size:,}, "
                    f"sha256 as recorded): skipped")
                return final
            raise DownloadError(f"{final}: changed since it was downloaded (size {size:,}, "
                                f"recorded {rec.get('size')}, sha256 differs from "
                                f"{MANIFEST}); delete it or run with --force")
        info, size, sha = _verify(entry, final, final)
        files[entry.filename] = {**_record(entry, "(found in place)", size, sha, info)}
        write_manifest(folder, files)
        log(f"{entry.name}: {final} was already there; checked and recorded")
        return final
    part = final + ".part"
    fetch(url, part, timeout=timeout, retries=retries, refuse_html=entry.kind != "text",
          log=lambda m: print(f"fcn-port: {m}", file=sys.stderr), desc=entry.filename)
    try:
        info, size, sha = _verify(entry, part, final)
    except BaseException:
        os.unlink(part)  # a wrong file would only be resumed onto: nothing is kept
        raise
    os.replace(part, final)
    files = read_manifest(folder)
    files[entry.filename] = _record(entry, url, size, sha, info)
    write_manifest(folder, files)
    note = f" ({info['note']})" if "note" in info else ""
    log(f"{entry.name}: downloaded {final} ({size:,} bytes, sha256 {sha[:16]}...){note}")
    return final


def extract(entry, folder, path, log=print):
    """``--extract`` for ``entry`` whose checked file is ``path``."""
    from fcn_port.port.errors import UserInputError
    from fcn_port.port.fileio import atomic_output

    from .archive import extract_tree

    if entry.extract is None:
        log(f"{entry.name}: nothing to extract")
        return
    inner, rel = entry.extract
    target = os.path.join(folder, *rel.split("/"))
    if entry.kind == "tar":
        if os.path.exists(target):
            log(f"{entry.name}: {target} already exists: not extracted again (remove it to "
                f"extract again)")
            return
        n = extract_tree(path, inner, target, desc=f"extracting {entry.name}")
        files = read_manifest(folder)
        files.setdefault(entry.filename, {})["extracted"] = rel
        write_manifest(folder, files)
        log(f"{entry.name}: extracted {n:,} entries of {inner}/ to {target}")
        return
    voc = os.path.join(folder, "pascal", "VOC2011")
    if not os.path.isdir(voc):
        raise UserInputError(f"download {entry.name} --extract: {voc} does not exist; extract "
                             f"voc2011 first (fcn-port download voc2011 {entry.name} --extract "
                             f"-o {folder})")
    with open(path, "rb") as f:
        data = f.read()
    if os.path.exists(target):
        with open(target, "rb") as f:
            if f.read() == data:
                log(f"{entry.name}: {target} already in place")
                return
        raise UserInputError(f"{target}: exists and differs from {path}; remove it first")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with atomic_output(target) as f:
        f.write(data)
    log(f"{entry.name}: copied to {target}")


# ------------------------------------------------------------------------------ the verb

def _download(args):
    from fcn_port.port.errors import UserInputError

    from . import catalog

    if args.list:
        if args.json:
            import dataclasses

            print(json.dumps([{**dataclasses.asdict(e), "filename": e.filename}
                              for e in catalog.CATALOG.values()], indent=1))
        else:
            print(catalog.format_list())
        return 0
    if not args.names:
        raise UserInputError("download: name what to download (fcn-port download --list)")
    if args.url and len(args.names) != 1:
        raise UserInputError(f"download --url: one NAME only, got {len(args.names)}")
    if args.retries < 0 or args.timeout <= 0:
        raise UserInputError("download: --retries must be >= 0 and --timeout > 0")
    entries = [catalog.lookup(n) for n in args.names]
    entries = [catalog.CATALOG[n] for n in catalog.ordered(e.name for e in entries)]
    from fcn_port.port.verbs import check_output_dir

    folder = args.out
    check_output_dir(folder, "download -o")
    made, at = [], os.path.abspath(folder)
    while not os.path.lexists(at):  # the folders this run makes, innermost first
        made.append(at)
        at = os.path.dirname(at)
    os.makedirs(folder, exist_ok=True)
    mirror = os.environ.get(MIRROR_ENV)
    try:
        for entry in entries:
            url = args.url or (mirrored(entry.url, mirror) if mirror else entry.url)
            path = get(entry, folder, url, force=args.force, timeout=args.timeout,
                       retries=args.retries)
            if args.extract:
                extract(entry, folder, path)
    except BaseException:  # a failed first download leaves no empty folders behind (a
        for d in made:     # partial .part stays for the resume, and so does its folder)
            try:
                os.rmdir(d)
            except OSError:
                break
        raise
    return 0
