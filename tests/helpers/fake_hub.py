"""A loopback Hugging Face Hub for the tests: model repositories in memory, served on 127.0.0.1 only.

It speaks the endpoints `huggingface_hub` uses to create a repository and a branch, upload a folder (every file is
sent inline in the commit: the pre-upload answer marks them "regular", so neither LFS nor Xet is involved) and
download files (`from_pretrained`, `pipeline`). Writes need the server's token (`Authorization: Bearer ...`); a
wrong one gets the Hub's 401 "Invalid credentials". Reads of a private repository need it too. `fail_commits`
makes the commit endpoint of chosen repositories answer an error status (to test failing pushes).

Limits: one state per branch (no history), model repositories only, no pull requests, no LFS/Xet.

`HF_ENDPOINT` is read when huggingface_hub is imported, so clients run in a fresh Python process with
`client_env(hub)`; `run_python` runs such a process with the project's packages reachable or not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKEN = "hf_fake_loopback_token"
USER = "tester"

_MODEL = r"/api/models/(?P<repo>[^/]+/[^/]+)"  # {repo} is "namespace/name"
_FILE = r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"
ROUTES = [  # (method, path regex, handler name)
    ("POST", r"/api/repos/create", "create_repo"),
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", _MODEL, "repo_info"),
    ("GET", _MODEL + r"/revision/(?P<rev>.+)", "repo_info"),
    *(("POST", _MODEL + rf"/{action}/(?P<rev>.+)", handler)
      for action, handler in (("branch", "create_branch"), ("preupload", "preupload"), ("commit", "commit"),
                              ("paths-info", "paths_info"))),
    ("GET", _MODEL + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("GET", _FILE, "resolve"),
    ("HEAD", _FILE, "resolve"),
]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FakeHub(ThreadingHTTPServer):
    """The server and its state. Use as a context manager: it serves from a daemon thread and shuts down on exit."""

    daemon_threads = True

    def __init__(self, *, token: str = DEFAULT_TOKEN) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "branches": {name: {"sha", "files"}}}
        self.fail_commits: dict[str, int] = {}  # repo id -> HTTP status its commits answer
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a branch (a copy)."""
        with self.lock:
            return dict(self.repos[repo_id]["branches"][revision]["files"])


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean; requests are recorded in server.requests
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -------------------------------------------------------------------------------------------------- plumbing

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        status = 500
        try:
            for route_method, pattern, name in ROUTES:
                match = re.fullmatch(pattern, split.path)
                if route_method == method and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    with self.server.lock:
                        status, payload, headers = getattr(self, name)(**params)
                    break
            else:
                raise HubError(404, f"no route for {method} {split.path}")
        except HubError as error:
            status, payload = error.status, {"error": error.message}
            headers = {"X-Error-Code": error.code} if error.code else {}
            if status == 401:
                headers["X-Error-Message"] = error.message
        self.server.requests.append((method, split.path, status))
        self._send(status, payload, headers, head=method == "HEAD")

    def _send(self, status: int, payload, headers: dict, *, head: bool) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if not isinstance(payload, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server.token}"

    def _require_token(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _branch(self, repo: str, rev: str, *, write: bool = False) -> dict:
        record = self.server.repos.get(repo)
        if record is None or (record["private"] and not self._authorized()):
            raise HubError(404, f"Repository {repo} not found", "RepoNotFound")
        if write:
            self._require_token()
        branch = record["branches"].get(rev)
        if branch is None:
            matches = [b for b in record["branches"].values() if b["sha"] == rev]  # a commit sha
            if not matches:
                raise HubError(404, f"Revision {rev} not found in {repo}", "RevisionNotFound")
            branch = matches[0]
        return branch

    def _json(self) -> dict:
        return json.loads(self.body or b"{}")

    # -------------------------------------------------------------------------------------------------- endpoints

    def whoami(self):
        self._require_token()
        return 200, {"type": "user", "name": USER, "orgs": [], "auth": {"type": "access_token"}}, {}

    def validate_yaml(self):
        return 200, {"errors": [], "warnings": []}, {}

    def create_repo(self):
        self._require_token()
        data = self._json()
        if data.get("type", "model") != "model":
            raise HubError(400, "the loopback hub only stores model repositories")
        repo = f"{data.get('organization') or USER}/{data['name']}"
        if repo in self.server.repos:  # the Hub's 409 still names the repository (create_repo(exist_ok=True) reads it)
            return 409, {"error": "You already created this model repo", "url": f"{self.server.url}/{repo}"}, {}
        sha = hashlib.sha1(repo.encode()).hexdigest()
        private = data.get("visibility") == "private" or bool(data.get("private"))  # hub >= 2 sends "visibility"
        self.server.repos[repo] = {"private": private, "branches": {"main": {"sha": sha, "files": {}}}}
        return 200, {"url": f"{self.server.url}/{repo}", "name": repo}, {}

    def repo_info(self, repo: str, rev: str = "main"):
        branch = self._branch(repo, rev)
        siblings = [{"rfilename": path, "size": len(data)} for path, data in sorted(branch["files"].items())]
        info = {"id": repo, "modelId": repo, "sha": branch["sha"], "private": self.server.repos[repo]["private"]}
        return 200, {**info, "siblings": siblings}, {}

    def create_branch(self, repo: str, rev: str):
        start = self._json().get("startingPoint") or "main"
        source = self._branch(repo, start, write=True)
        branches = self.server.repos[repo]["branches"]
        if rev in branches:
            raise HubError(409, f"Branch {rev} already exists")
        branches[rev] = {"sha": source["sha"], "files": dict(source["files"])}
        return 200, {}, {}

    def preupload(self, repo: str, rev: str):
        self._branch(repo, rev, write=True)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in self._json()["files"]]
        return 200, {"files": files}, {}

    def commit(self, repo: str, rev: str):
        if "create_pr" in self.query:
            raise HubError(400, "the loopback hub does not support pull requests")
        branch = self._branch(repo, rev, write=True)
        status = self.server.fail_commits.get(repo)
        if status is not None:
            raise HubError(status, f"injected failure: commits to {repo} answer {status}")
        files = dict(branch["files"])
        for line in self.body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            elif key != "header":
                raise HubError(400, f"unsupported commit operation {key!r} (LFS is not served)")
        digest = hashlib.sha1(branch["sha"].encode())
        for path, data in sorted(files.items()):
            digest.update(path.encode() + hashlib.sha256(data).digest())
        branch["files"], branch["sha"] = files, digest.hexdigest()
        url = f"{self.server.url}/{repo}/commit/{branch['sha']}"
        return 200, {"commitUrl": url, "commitOid": branch["sha"], "pullRequestUrl": None}, {}

    def _entries(self, files: dict[str, bytes], paths: list[str], *, recursive: bool) -> list[dict]:
        entries, folders = [], set()
        for path, data in sorted(files.items()):
            for wanted in paths:
                prefix = wanted.rstrip("/") + "/" if wanted else ""
                if path == wanted:
                    entries.append({"type": "file", "path": path, "size": len(data), "oid": _oid(data)})
                elif path.startswith(prefix):
                    rest = path[len(prefix):]
                    if recursive or "/" not in rest:
                        entries.append({"type": "file", "path": path, "size": len(data), "oid": _oid(data)})
                    else:
                        folders.add(prefix + rest.split("/")[0])
        return entries + [{"type": "directory", "path": p, "oid": _oid(p.encode())} for p in sorted(folders)]

    def tree(self, repo: str, rev: str, path: str = ""):
        files = self._branch(repo, rev)["files"]
        entries = self._entries(files, [path], recursive=self.query.get("recursive", ["false"])[0].lower() == "true")
        if path and not entries:
            raise HubError(404, f"{path} not found in {repo}", "EntryNotFound")
        return 200, entries, {}

    def paths_info(self, repo: str, rev: str):
        files = self._branch(repo, rev)["files"]
        form = parse_qs(self.body.decode())
        paths = form.get("paths") or self._json_paths()
        return 200, [e for e in self._entries(files, paths, recursive=False) if e["path"] in paths], {}

    def _json_paths(self) -> list[str]:
        try:
            return list(json.loads(self.body).get("paths", []))
        except (json.JSONDecodeError, AttributeError):
            return []

    def resolve(self, repo: str, rev: str, path: str):
        branch = self._branch(repo, rev)
        data = branch["files"].get(path)
        headers = {"X-Repo-Commit": branch["sha"]}
        if data is None:
            raise HubError(404, f"{path} not found in {repo}@{rev}", "EntryNotFound")
        return 200, data, {**headers, "ETag": f'"{_oid(data)}"', "Content-Type": "application/octet-stream"}


def _oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def client_env(*, hub: FakeHub | None, home: Path, token: str | None = DEFAULT_TOKEN) -> dict[str, str]:
    """Environment of a client process: a fresh HF home, and with `hub`, its endpoint (online, Xet off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_")) and k != "PYTHONPATH"}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", TOKENIZERS_PARALLELISM="false")
    if hub is None:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_python(args: list[str], *, env: dict[str, str], cwd: Path, project_importable: bool, timeout: float = 240):
    """Run `python ARGS` in `cwd`; with `project_importable`, the repository root is on `PYTHONPATH`.

    Returns the `CompletedProcess`; raises `AssertionError` with the output when it fails.
    """
    env = dict(env)
    if project_importable:
        env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"python {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result
