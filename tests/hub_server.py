"""A stand-in Hugging Face Hub for tests: serves ``/{repo_id}/resolve/{revision}/{filename}`` on 127.0.0.1.

It emulates what ``huggingface_hub.hf_hub_download`` needs from the resolve endpoint (see
``get_hf_file_metadata`` / ``_get_metadata_or_catch_error`` in huggingface_hub's file_download.py):

* ``HEAD``/``GET`` → 200 with the bytes, ``X-Repo-Commit`` (40-hex commit of the revision),
  ``ETag`` (quoted; sha256 for ``*.safetensors`` like LFS files, else a git blob sha1),
  ``Content-Length``, and for LFS-like files ``X-Linked-Etag``/``X-Linked-Size``;
* 404 with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``.

Every request is counted by ``(method, repo_id, revision, filename)`` so tests can tell a download
(``GET``) from a metadata check (``HEAD``).
"""
from __future__ import annotations

import collections
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Repos → revisions → files, served over HTTP in a background thread.

    Examples:
        >>> with FakeHub() as hub:
        ...     hub.add_files("me/model", {"config.json": b"{}"}, revision="main")
        ...     url = hub.endpoint
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[str, dict[str, bytes]]]] = {}
        self.requests: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.last_user_agent = ""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content
    def add_files(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        """Publish ``files`` as ``revision`` of ``repo_id``; returns the revision's commit sha."""
        h = hashlib.sha1(repo_id.encode() + b"@" + revision.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + files[name])
        commit = h.hexdigest()
        with self._lock:
            self.repos.setdefault(repo_id, {})[revision] = (commit, dict(files))
        return commit

    def add_dir(self, repo_id: str, directory: str | Path, revision: str = "main") -> str:
        """Publish every file of ``directory`` (not recursive)."""
        files = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}
        return self.add_files(repo_id, files, revision)

    def count(self, method: str, filename: str | None = None, repo_id: str | None = None,
              revision: str | None = None) -> int:
        """How many requests matched (``None`` matches anything)."""
        with self._lock:
            return sum(n for (m, r, rev, f), n in self.requests.items()
                       if m == method and filename in (None, f) and repo_id in (None, r)
                       and revision in (None, rev))

    def _resolve(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        revisions = self.repos[repo_id]
        if revision in revisions:
            return revisions[revision]
        for commit, files in revisions.values():  # a commit sha works as a revision too
            if commit == revision:
                return commit, files
        return None

    # -- server
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "FakeHub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
                hub._serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._serve(self, body=True)

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a short poll interval keeps stop() (which waits for the loop to notice) fast
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        method = "GET" if body else "HEAD"
        match = _RESOLVE.match(urlsplit(handler.path).path)
        if match is None:
            self._error(handler, 404, "EntryNotFound", "not a resolve URL")
            return
        repo_id, revision, filename = (unquote(match[g]) for g in ("repo", "rev", "file"))
        with self._lock:
            self.requests[(method, repo_id, revision, filename)] += 1
            self.last_user_agent = handler.headers.get("User-Agent", "")
            if repo_id not in self.repos:
                self._error(handler, 404, "RepoNotFound", "Repository not found")
                return
            resolved = self._resolve(repo_id, revision)
            if resolved is None:
                self._error(handler, 404, "RevisionNotFound", "Invalid rev id")
                return
            commit, files = resolved
            data = files.get(filename)
        if data is None:
            self._error(handler, 404, "EntryNotFound", "Entry not found", commit=commit)
            return
        lfs = filename.endswith(".safetensors")
        etag = hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("ETag", f'"{etag}"')
        handler.send_header("X-Repo-Commit", commit)
        if lfs:
            handler.send_header("X-Linked-Etag", f'"{etag}"')
            handler.send_header("X-Linked-Size", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str,
               commit: str | None = None) -> None:
        payload = f'{{"error": "{message}"}}'.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        if commit is not None:
            handler.send_header("X-Repo-Commit", commit)
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(payload)
