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
        #: upload API: one dict per received commit (repo_id, revision, summary, paths, authorization, oid)
        self.commits: list[dict] = []
        #: upload API: create-repo payloads by repo id (name, organization, visibility, ...)
        self.created: dict[str, dict] = {}
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

    def commits_of(self, repo_id: str) -> list[dict]:
        """Commits received through the upload API for ``repo_id``, oldest first."""
        with self._lock:
            return [c for c in self.commits if c["repo_id"] == repo_id]

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

            def do_POST(self) -> None:  # noqa: N802 (upload API: create repo/branch, preupload, commit)
                hub._serve_post(self)

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

    # -- upload API (what huggingface_hub's create_repo / create_branch / create_commit call)
    #
    # Facts from huggingface_hub's hf_api.py and _commit_api.py (2.x, same shapes since 0.x):
    # * POST /api/repos/create {"name", "organization", "type", "visibility"|"private"} -> {"url"}; 409 if it exists
    # * POST /api/{type}s/{repo}/branch/{branch} {"startingPoint"?} -> 200; 409 if it exists
    # * POST /api/validate-yaml {"content", "repoType"} -> {"errors": [], "warnings": []} (before a README.md)
    # * POST /api/{type}s/{repo}/preupload/{rev} {"files": [{"path", "sample", "size"}]}
    #   -> {"files": [{"path", "uploadMode": "regular"|"lfs", "shouldIgnore", "oid"?}]}
    # * POST /api/{type}s/{repo}/commit/{rev}, NDJSON: {"key": "header", "value": {"summary", "description",
    #   "parentCommit"?}}, then {"key": "file", "value": {"content" (base64), "path", "encoding": "base64"}}
    #   / "lfsFile" / "deletedFile" lines -> {"commitUrl", "commitOid"}
    # Every file is answered "regular" (inline base64 in the commit), so no LFS or Xet transfer is involved.
    _POST = re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+(?:/[^/]+)?)"
                       r"/(?P<action>preupload|commit|branch)/(?P<rev>[^/]+)$")

    def _serve_post(self, handler: BaseHTTPRequestHandler) -> None:
        import base64
        import json

        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        auth = handler.headers.get("Authorization", "")
        if path == "/api/validate-yaml":
            self._post_json(handler, 200, {"errors": [], "warnings": []})
            return
        if path == "/api/repos/create":
            payload = json.loads(raw or b"{}")
            repo_id = "/".join(p for p in (payload.get("organization"), payload.get("name")) if p)
            with self._lock:
                self.requests[("POST", repo_id, "", "create")] += 1
                exists = repo_id in self.repos
                if not exists:
                    self.created[repo_id] = dict(payload, authorization=auth)
            if exists:
                self._post_json(handler, 409, {"error": "You already created this model repo",
                                               "url": f"{self.endpoint}/{repo_id}"}, code="RepoExists")
                return
            self.add_files(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            self._post_json(handler, 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})
            return
        match = self._POST.match(path)
        if match is None:
            self._post_json(handler, 404, {"error": "not an upload API URL"}, code="EntryNotFound")
            return
        repo_id, action, revision = unquote(match["repo"]), match["action"], unquote(match["rev"])
        with self._lock:
            self.requests[("POST", repo_id, revision, action)] += 1
            known = repo_id in self.repos
            resolved = self._resolve(repo_id, revision) if known and action != "branch" else None
        if not known:
            self._post_json(handler, 404, {"error": "Repository not found"}, code="RepoNotFound")
            return
        if action == "branch":
            payload = json.loads(raw or b"{}")
            with self._lock:
                exists = revision in self.repos[repo_id]
                start = self._resolve(repo_id, payload.get("startingPoint") or "main")
            if exists:
                self._post_json(handler, 409, {"error": "Reference already exists"})
            elif start is None:
                self._post_json(handler, 404, {"error": "Invalid rev id"}, code="RevisionNotFound")
            else:
                self.add_files(repo_id, dict(start[1]), revision)
                self._post_json(handler, 200, {})
            return
        if resolved is None:
            self._post_json(handler, 404, {"error": "Invalid rev id"}, code="RevisionNotFound")
            return
        if action == "preupload":
            files = json.loads(raw)["files"]
            self._post_json(handler, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                      "shouldIgnore": False} for f in files]})
            return
        # commit
        files = dict(resolved[1])
        summary, paths = "", []
        for line in raw.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                paths.append(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:  # lfsFile etc.: this stand-in never asks for LFS in preupload
                self._post_json(handler, 400, {"error": f"unsupported commit operation {key!r}"}, code="BadRequest")
                return
        if not summary:
            self._post_json(handler, 400, {"error": "commit summary is empty"}, code="BadRequest")
            return
        oid = self.add_files(repo_id, files, revision)
        with self._lock:
            self.commits.append({"repo_id": repo_id, "revision": revision, "summary": summary, "paths": paths,
                                 "authorization": auth, "oid": oid})
        self._post_json(handler, 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid,
                                       "success": True})

    @staticmethod
    def _post_json(handler: BaseHTTPRequestHandler, status: int, payload: dict, code: str | None = None) -> None:
        import json

        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if code is not None:
            handler.send_header("X-Error-Code", code)
        if status >= 400:
            handler.send_header("X-Error-Message", str(payload.get("error", "")))
        handler.end_headers()
        handler.wfile.write(body)
