"""One HTTP download into ``<file>.part``, resumed with a Range request where the server allows.

Nothing of Caffe or FCN here: :func:`fetch` appends to an existing ``.part`` after asking for
``Range: bytes=N-``. A ``206`` whose ``Content-Range`` starts at ``N`` continues the file; a
``200`` (the server ignores Range) or a ``206`` starting elsewhere starts it again. A dropped
connection or a timeout is retried (``retries`` times, resuming each time); what arrived stays
in ``.part`` for the next run. Errors are :class:`DownloadError`, one line each: the HTTP status,
connection refused, host unknown, timeout, disk full, more bytes than announced.

Two clocks bound a transfer: the socket's ``timeout`` (no byte at all for that long) and a
watchdog (:class:`_Watchdog`) that ends an attempt when a whole window of twice ``timeout``
brought fewer than :data:`MIN_RATE` bytes a second, or the headers did not all arrive in one:
a server trickling a byte at a time never trips the first, and would hold the transfer forever.
(Twice: a server that sends nothing is the socket's "timed out", first.) A stalled attempt is
resumed like a dropped one.
"""
import errno
import http.client
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from fcn_port.port.errors import FcnPortError

CHUNK = 1 << 20  # the most bytes one read returns (each read returns what has arrived)
MIN_RATE = 1024  # bytes/s over each watchdog window (twice --timeout): less is a stalled transfer
MIRROR_ENV = "FCN_PORT_MIRROR"


class DownloadError(FcnPortError):
    """A download failed: the message names the URL or file and what went wrong."""


class _Dropped(Exception):
    """The transfer stopped early; worth resuming."""


def mirrored(url, mirror):
    """``url`` with its scheme and host replaced by ``mirror``'s (whose path, if any, is put
    before ``url``'s path): ``http://dl.x.org/a.caffemodel`` + ``http://127.0.0.1:8000/m/`` ->
    ``http://127.0.0.1:8000/m/a.caffemodel``."""
    m = urllib.parse.urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise DownloadError(f"{MIRROR_ENV}={mirror!r}: expected http://host[:port]/[path/]")
    u = urllib.parse.urlsplit(url)
    path = m.path.rstrip("/") + u.path
    return urllib.parse.urlunsplit((m.scheme, m.netloc, path, u.query, ""))


def _why(e):
    reason = getattr(e, "reason", e)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason.strerror or reason})", False
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out", True
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower(), True
    return str(reason), True


class _Watchdog:
    """Shuts an attempt's sockets down when a window of ``window`` seconds ends with fewer
    than ``MIN_RATE * window`` new bytes counted in :attr:`got` (the headers count none: they
    must arrive within the first window). The blocked read then ends, and :attr:`stalled`
    says why. Used as a context manager around one attempt."""

    def __init__(self, window):
        self.window, self.got, self.stalled, self.socks = window, 0, False, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _watch(self):
        seen = 0
        while not self._done.wait(self.window):
            if self.got - seen < MIN_RATE * self.window:
                self.stalled = True
                for sock in self.socks:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed
                        pass
                return
            seen = self.got

    def opener(self):
        """A urllib opener whose HTTP(S) connections this watchdog can shut down."""
        watch = self

        def watched(cls):
            class Watched(cls):
                def connect(self):  # urllib drops conn.sock once the headers are read
                    super().connect()
                    watch.socks.append(self.sock)
            return Watched

        class Http(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class Https(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(watched(http.client.HTTPSConnection), req,
                                    context=self._context)
        return urllib.request.build_opener(Http, Https)

    def why(self):
        return f"stalled (under {MIN_RATE:,} bytes/s for {self.window:g} s)"


def _open(url, have, timeout, watch):
    """(response, start offset, total size or None) for a request from byte ``have``."""
    from fcn_port import __version__

    headers = {"User-Agent": f"fcn-port/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    resp = watch.opener().open(request, timeout=timeout)
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if m and int(m.group(1)) == have:
            total = None if m.group(3) == "*" else int(m.group(3))
            return resp, have, total
        resp.close()
        if not have:
            raise DownloadError(f"{url}: the server answered a request for the whole file with "
                                f"part of it (206, Content-Range "
                                f"{resp.headers.get('Content-Range', '')[:60]!r})")
        return _open(url, 0, timeout, watch)  # a range we did not ask for: start again
    return resp, 0, length


def _copy(resp, part, start, total, bar, shown, watch):
    with open(part, "r+b" if start else "wb") as f:
        f.seek(start)
        f.truncate()
        got = start
        while True:
            try:
                block = resp.read1(CHUNK)
            except (socket.timeout, TimeoutError):
                raise _Dropped(f"timed out after {got:,} bytes") from None
            except (http.client.HTTPException, OSError) as e:
                if watch.stalled:
                    raise _Dropped(f"{watch.why()} after {got:,} bytes") from None
                raise _Dropped(f"connection dropped ({type(e).__name__}) after {got:,} "
                               f"bytes") from None
            if not block:
                if watch.stalled:
                    raise _Dropped(f"{watch.why()} after {got:,} bytes")
                break
            try:
                f.write(block)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise DownloadError(f"{part}: disk full after {got + len(block):,} bytes "
                                        f"of {shown}; free space and run again to "
                                        f"resume") from None
                raise DownloadError(f"{part}: cannot write ({e.strerror})") from None
            got += len(block)
            watch.got += len(block)
            bar.update(len(block))
            if total is not None and got > total:
                break
    if total is not None and got > total:
        os.unlink(part)
        raise DownloadError(f"{shown}: the server sent more than the {total:,} bytes it "
                            f"announced; nothing kept")
    if total is not None and got < total:
        raise _Dropped(f"connection dropped after {got:,} of {total:,} bytes")
    return got


def fetch(url, part, *, timeout=60.0, retries=3, refuse_html=True, log=print, desc=None):
    """Download ``url`` into ``part``, resuming what is already there. Returns the byte count.
    ``refuse_html``: an HTML answer (a login or error page) is refused before it is saved."""
    from tqdm import tqdm

    attempt = 0
    while True:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        with _Watchdog(2 * timeout) as watch:
            try:
                resp, start, total = _open(url, have, timeout, watch)
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:  # our part is longer than the file: start again
                    log(f"{url}: the server refuses to resume at byte {have:,}: starting again")
                    os.unlink(part)
                    continue
                if e.code >= 500 and attempt < retries:
                    attempt += 1
                    time.sleep(min(attempt, 5))
                    continue
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                why, again = (watch.why(), True) if watch.stalled else _why(e)
                if again and attempt < retries:
                    attempt += 1
                    time.sleep(min(attempt, 5))
                    continue
                raise DownloadError(f"{url}: {why}") from None
            with resp:
                ctype = resp.headers.get("Content-Type", "")
                if refuse_html and ctype.startswith("text/html"):
                    raise DownloadError(f"{url}: the server answered with an HTML page, not the "
                                        f"file (Content-Type {ctype}); nothing kept")
                if have and start == 0:
                    log(f"{url}: the server does not resume (no Range support): starting again")
                elif start:
                    log(f"{url}: resuming at byte {start:,}")
                with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=desc, leave=False, disable=None) as bar:
                    try:
                        return _copy(resp, part, start, total, bar, url, watch)
                    except _Dropped as e:
                        if attempt >= retries:
                            if os.path.getsize(part) == 0:
                                os.unlink(part)
                                raise DownloadError(f"{url}: {e}") from None
                            raise DownloadError(f"{url}: {e}; kept in {part}: run again to "
                                                f"resume") from None
                        attempt += 1
                        log(f"{url}: {e}; resuming (try {attempt} of {retries})")
