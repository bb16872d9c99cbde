"""A local HTTP server for fcn-port download's tests (127.0.0.1, a thread; conftest.py's
``server`` fixture) that counts the bytes it sends and misbehaves on demand: HTTP errors,
ignored ranges, dropped connections, a delay before the body, a byte at a time, a wrong range;
and the CLI helpers those tests share."""
import http.server
import json
import re
import threading
import time

from fcn_port import cli


class State:
    def __init__(self):
        self.files, self.types = {}, {}
        self.sent, self.requests = 0, []
        self.status, self.drops, self.drop_after = None, 0, 0
        self.ignore_range, self.delay = False, 0.0
        self.trickle = 0.0  # seconds between single bytes of the body
        self.trickle_headers = 0.0  # seconds between the bytes of a header that never ends
        self.wrong_range = None  # a Content-Range sent with 206 whatever was asked

    def serve(self, path, body, ctype="application/octet-stream"):
        self.files[path], self.types[path] = body, ctype


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        st = self.server.state
        rng = self.headers.get("Range")
        st.requests.append((self.path, rng))
        body = st.files.get(self.path)
        if st.status or body is None:
            self.send_error(st.status or 404)
            return
        if st.trickle_headers:
            self._trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60000, st.trickle_headers)
            return
        if st.wrong_range:
            self.send_response(206)
            self.send_header("Content-Range", st.wrong_range)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(body[:5])
            return
        start = 0
        if rng and not st.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", st.types[self.path])
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if st.delay:
            time.sleep(st.delay)
        chunk = body[start:]
        if st.drops:
            st.drops -= 1
            chunk = chunk[:st.drop_after]
        if st.trickle:
            self._trickle(chunk, st.trickle)
            return
        try:
            self.wfile.write(chunk)
            self.wfile.flush()
            st.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def _trickle(self, data, pause):
        """Send ``data`` a byte every ``pause`` seconds, until the client hangs up."""
        try:
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                self.server.state.sent += 1
                time.sleep(pause)
        except OSError:  # the client gave up
            pass


def run(*argv):
    return cli.main(["download", *map(str, argv)])


def fails(capsys, *argv, words=()):
    """Runs the CLI expecting one error line and exit status 2; returns the line."""
    capsys.readouterr()
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fcn-port: error:"), err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def manifest(folder):
    return json.loads((folder / "downloads.json").read_text())["files"]


def nothing_kept(folder, name):
    return not any((folder / n).exists() for n in (name, f"{name}.part"))





def serving():
    """(base URL, State) of a server in a thread, and a function that stops it."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = State()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state, stop
