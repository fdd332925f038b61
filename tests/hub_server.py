"""A local stand-in for the Hugging Face hub's HTTP API, for tests: it answers the endpoints that
huggingface_hub's own client calls when ackd-bench publishes and downloads (create a repository,
preupload, commit, tag, repository info, tree listing, file resolve with ranges), keeps the
repositories in memory, and records every request. Point huggingface_hub at it with HF_ENDPOINT.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (sha, files)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> sha

    def files(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        sha = self.refs.get(revision, revision)
        return next(((s, f) for s, f in self.commits if s == sha), None)


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.cut_after: dict[str, int] = {}  # file name -> bytes to send before dropping the connection, once
        self.api_answer: bytes | None = None  # set: every API call gets this body (a malformed answer)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    data = self.rfile.read(length)
                return gzip.decompress(data) if self.headers.get("Content-Encoding") == "gzip" else data

            def _json(self, status: int, payload, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _missing(self, what: str) -> None:
                self._json(404, {"error": what}, {"X-Error-Code": "RepoNotFound" if "repo" in what else "EntryNotFound"})

            def do_POST(self):
                path = urlparse(self.path).path
                hub.requests.append(("POST", path, ""))
                body = self._body()
                if path == "/api/repos/create":
                    spec = json.loads(body)
                    kind = spec.get("type") or "model"
                    repo_id = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
                    hub.repos.setdefault((kind, repo_id), Repo())
                    prefix = "" if kind == "model" else f"{kind}s/"
                    return self._json(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":  # the client checks a README's metadata before committing it
                    return self._json(200, {"errors": [], "warnings": []})
                match = re.fullmatch(r"/api/(\w+)s/(.+?/.+?)/(preupload|commit|tag)/(.+)", path)
                if not match:
                    return self._missing(f"no endpoint {path}")
                kind, repo_id, action, revision = match[1], match[2], match[3], unquote(match[4])
                repo = hub.repos.get((kind, repo_id))
                if repo is None:
                    return self._missing(f"repo {repo_id}")
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if action == "tag":
                    head = repo.files(revision)
                    if head is None:
                        return self._missing(f"revision {revision}")
                    repo.refs[json.loads(body)["tag"]] = head[0]
                    return self._json(200, {})
                parent = repo.files(revision)
                files = dict(parent[1]) if parent else {}
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        files.pop(item["value"]["path"], None)
                sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                                   .encode() + str(len(repo.commits)).encode()).hexdigest()
                repo.commits.append((sha, files))
                repo.refs[revision] = sha
                prefix = "" if kind == "model" else f"{kind}s/"
                return self._json(200, {"commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{sha}", "commitOid": sha,
                                        "pullRequestUrl": None})

            def _resolve(self, head: bool) -> None:
                path = urlparse(self.path).path
                match = re.fullmatch(r"/(?:(datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if not match:
                    return self._missing(f"no endpoint {path}")
                kind = "dataset" if match[1] else "model"
                repo = hub.repos.get((kind, match[2]))
                found = repo.files(unquote(match[3])) if repo else None
                if found is None:
                    return self._missing(f"repo {match[2]}")
                sha, files = found
                name = unquote(match[4])
                if name not in files:
                    return self._missing(f"file {name}")
                data = files[name]
                start = 0
                if ranged := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                    start = int(ranged[1])
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", sha)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                cut = hub.cut_after.pop(name, None) if not start else None
                self.wfile.write(data[start:cut] if cut else data[start:])
                if cut:
                    self.close_connection = True

            def do_HEAD(self):
                hub.requests.append(("HEAD", urlparse(self.path).path, self.headers.get("Range", "")))
                self._resolve(head=True)

            def do_GET(self):
                parsed = urlparse(self.path)
                hub.requests.append(("GET", parsed.path, self.headers.get("Range", "")))
                match = re.fullmatch(r"/api/(\w+)s/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?", parsed.path)
                if not match:
                    return self._resolve(head=False)
                if hub.api_answer is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(hub.api_answer)))
                    self.end_headers()
                    self.wfile.write(hub.api_answer)
                    return
                kind, repo_id, what, revision = match[1], match[2], match[3], unquote(match[4] or "main")
                repo = hub.repos.get((kind, repo_id))
                found = repo.files(revision) if repo else None
                if found is None:
                    return self._missing(f"repo {repo_id}" if repo is None else f"revision {revision}")
                sha, files = found
                if what == "tree":
                    return self._json(200, [{"type": "file", "path": name, "size": len(data),
                                             "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                                            for name, data in sorted(files.items())])
                return self._json(200, {"id": repo_id, "sha": sha, "private": False,
                                        "siblings": [{"rfilename": name} for name in sorted(files)]})

        return Handler
