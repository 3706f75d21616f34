"""`deepvrm push` end to end against a small Hub on 127.0.0.1 that speaks the HTTP API huggingface_hub uses.

`FakeHub` answers whoami, repo creation and info, branches, the file tree, preupload, README metadata
validation, the LFS batch API (with PUT uploads checked against their sha256), and the ndjson commit
endpoint, which applies a commit atomically. It stores what it receives, so the tests compare the
uploaded bytes with a `--dry-run` export of the same folder. Failures are injected per endpoint.
Nothing in huggingface_hub is mocked: HF_ENDPOINT points at the server, HF_HUB_DISABLE_XET makes the
client use the LFS path the server implements, HF_TOKEN is a dummy. The tests set offline mode off
themselves, so they pass with HF_HUB_OFFLINE=1 in the environment (the server is local).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

import deepvrm

from deepvrm.hub_upload import HubUploadError, export_model, push, push_model
from deepvrm.hub_upload.cli import main as push_main

TOKEN = "hf_test_write_token"
USER = "test-user"
WRITABLE = {USER, "test-org"}


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 with a model-repo store; stops on `close()` or after `lifetime` s."""

    def __init__(self, lifetime: float = 300):
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {name: {path: bytes}}, "commits": [...]}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[str] = []
        self.fail: dict[str, tuple[int, str]] = {}  # endpoint name -> (status, message)
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a stuck client cannot hold a thread forever
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._dispatch(self, "GET")

            def do_POST(self):
                hub._dispatch(self, "POST")

            def do_PUT(self):
                hub._dispatch(self, "PUT")

            def do_HEAD(self):
                hub._dispatch(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.watchdog = threading.Timer(lifetime, self.close)
        self.watchdog.daemon = True
        self.watchdog.start()

    def close(self):
        self.watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["branches"][branch])

    # ------------------------------------------------------------------ HTTP plumbing
    @staticmethod
    def _body(handler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    handler.rfile.readline()
                    break
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            return b"".join(chunks)
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    @staticmethod
    def _send(handler, status: int, payload=None, headers: dict | None = None):
        body = json.dumps(payload if payload is not None else {}).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")  # no pooled connection outlives close()
        handler.close_connection = True
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _error(self, handler, status: int, message: str, code: str | None = None):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(handler, status, {"error": message}, headers)

    def _authorized(self, handler) -> bool:
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._error(handler, 401, "Invalid credentials in Authorization header")
            return False
        return True

    ROUTES = [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/?]+)", "preupload"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/?]+)", "commit"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>[^/?]+)", "branch"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)(?P<path>/[^?]*)?", "tree"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/?]+))?", "info"),
        ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", r"/lfs-verify", "lfs_verify"),
        ("GET", r"/api/agent-harnesses", "agent_harnesses"),  # huggingface_hub's best-effort telemetry
        ("HEAD", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),  # file downloads
    ]

    def _dispatch(self, handler, method: str):
        parsed = urlparse(handler.path)
        path = unquote(parsed.path)
        body = self._body(handler) if method in ("POST", "PUT") else b""
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                with self.lock:
                    self.requests.append((method, name))
                    if name in self.fail:
                        status, message = self.fail[name]
                        return self._error(handler, status, message)
                    if name not in ("lfs_put", "agent_harnesses") and not self._authorized(handler):
                        return
                    return getattr(self, f"_{name}")(handler, body=body, query=parse_qs(parsed.query), **{
                        k: v for k, v in match.groupdict().items() if v is not None})  # fmt: skip
        with self.lock:
            self.unhandled.append(f"{method} {handler.path}")
        self._error(handler, 404, f"{method} {path} is not handled by the test Hub")

    def _repo(self, handler, repo_id: str, rev: str | None = None):
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, 404, "Repository not found", "RepoNotFound")
            return None, None
        if rev is not None and unquote(rev) not in repo["branches"]:
            self._error(handler, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return repo, None
        return repo, unquote(rev) if rev is not None else None

    # ------------------------------------------------------------------ endpoints
    def _whoami(self, handler, **_):
        self._send(handler, 200, {"type": "user", "name": USER, "orgs": [{"name": "test-org"}],
                                  "auth": {"accessToken": {"displayName": "test", "role": "write"}}})  # fmt: skip

    def _create(self, handler, body, **_):
        payload = json.loads(body)
        namespace = payload.get("organization") or USER
        repo_id = f"{namespace}/{payload['name']}"
        if namespace not in WRITABLE:
            return self._error(handler, 403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        if repo_id in self.repos:  # the Hub names the existing repo in its 409 answer
            message = "You already created this model repo"
            return self._send(handler, 409, {"error": message, "url": f"{self.url}/{repo_id}"}, {"X-Error-Message": message})
        private = payload.get("private", payload.get("visibility") == "private")
        self.repos[repo_id] = {"private": bool(private), "branches": {"main": {}}, "commits": []}
        self._send(handler, 200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _info(self, handler, repo, rev=None, **_):
        repo_data, _ = self._repo(handler, repo)
        if repo_data is not None:
            self._send(handler, 200, {"id": repo, "modelId": repo, "private": repo_data["private"], "sha": "0" * 40,
                                      "siblings": [{"rfilename": p} for p in repo_data["branches"]["main"]]})  # fmt: skip

    def _branch(self, handler, repo, rev, **_):
        repo_data, _ = self._repo(handler, repo)
        if repo_data is None:
            return
        if rev in repo_data["branches"]:
            return self._error(handler, 409, "Reference already exists")
        repo_data["branches"][rev] = dict(repo_data["branches"]["main"])
        self._send(handler, 200, {})

    def _tree(self, handler, repo, rev, path=None, **_):
        repo_data, branch = self._repo(handler, repo, rev)
        if branch is None:
            return
        entries = []
        for name, data in sorted(repo_data["branches"][branch].items()):
            entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if name.endswith(".safetensors"):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            entries.append(entry)
        self._send(handler, 200, entries)

    def _validate_yaml(self, handler, body, **_):
        content = json.loads(body)["content"]
        errors = []
        try:
            meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else None
            if not isinstance(meta, dict):
                errors.append("no YAML metadata block")
            else:
                for result in (meta.get("model-index") or [{}])[0].get("results", []):
                    if not result.get("dataset", {}).get("type") or not result.get("metrics"):
                        errors.append("model-index results need dataset.type and metrics")
        except yaml.YAMLError as error:
            errors.append(f"invalid YAML: {error}")
        if errors:
            return self._send(handler, 400, {"errors": [{"message": e} for e in errors]})
        self._send(handler, 200, {"errors": [], "warnings": []})

    def _preupload(self, handler, repo, rev, body, **_):
        repo_data, branch = self._repo(handler, repo, rev)
        if branch is None:
            return
        files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") or f["size"] > 10_000_000 else "regular",
                  "shouldIgnore": False, "oid": None} for f in json.loads(body)["files"]]  # fmt: skip
        self._send(handler, 200, {"files": files, "commitOid": "0" * 40})

    def _lfs_batch(self, handler, repo, body, **_):
        if repo not in self.repos:
            return self._error(handler, 404, "Repository not found")
        objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                    "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                                "verify": {"href": f"{self.url}/lfs-verify"}}}  # fmt: skip
                   for o in json.loads(body)["objects"]]
        self._send(handler, 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _resolve(self, handler, repo, rev, path, **_):
        # Only what transformers' push_to_hub asks (does the repo have a README.md yet?): a missing file.
        # A HEAD answer carries no body; the error code goes in the headers, as the Hub sends it.
        handler.send_response(404)
        for key, value in {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                           "Content-Length": "0", "Connection": "close"}.items():  # fmt: skip
            handler.send_header(key, value)
        handler.close_connection = True
        handler.end_headers()

    def _agent_harnesses(self, handler, **_):
        self._error(handler, 404, "not served here")  # nothing to cache; the client shrugs it off

    def _lfs_put(self, handler, oid, body, **_):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(handler, 400, "sha256 mismatch")
        self.lfs[oid] = body
        self._send(handler, 200, {})

    def _lfs_verify(self, handler, body, **_):
        payload = json.loads(body)
        if payload["oid"] not in self.lfs or len(self.lfs[payload["oid"]]) != payload["size"]:
            return self._error(handler, 404, "object not found")
        self._send(handler, 200, {})

    def _commit(self, handler, repo, rev, body, **_):
        repo_data, branch = self._repo(handler, repo, rev)
        if branch is None:
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]
        assert header["key"] == "header"
        files = dict(repo_data["branches"][branch])
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return self._error(handler, 422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.lfs[value["oid"]]
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                return self._error(handler, 422, f"unsupported commit operation {key}")
        repo_data["branches"][branch] = files  # all or nothing
        oid = hashlib.sha1(body).hexdigest()
        repo_data["commits"].append({"branch": branch, "summary": header["value"]["summary"], "oid": oid})
        self._send(handler, 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A FakeHub, with the client pointed at it (in this process) and temp files kept under tmp_path."""
    import huggingface_hub.constants as constants

    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # huggingface_hub reads HF_HUB_DISABLE_XET and HF_HUB_OFFLINE at import; set the constants it consults
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # ... and ENDPOINT, which its helpers (e.g. the agent-harness lookup) use: never contact another host
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    # transformers keeps one HfApi, made with the endpoint in force when a test first used it: start a new one here
    import transformers.utils.hub

    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    server.scratch = scratch
    try:
        yield server
    finally:
        server.close()
    assert not server.unhandled, f"requests the test Hub does not know: {server.unhandled}"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("push") / "model"
    folder.mkdir()
    for f in Path(tiny_model_dir).iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "eval_metrics.json").write_text(json.dumps(
        {"SynthBuster": {"accuracy": 0.945, "real_accuracy": 0.95, "fake_accuracy": 0.94, "average_precision": 0.97,
                         "roc_auc": 0.975, "n_real": 100, "n_fake": 900, "n_failed": 0}}))  # fmt: skip
    return folder


@pytest.mark.slow  # a fresh Python process
def test_cli_push_uploads_exactly_the_dry_run_export(model_dir, tmp_path, monkeypatch):
    """The real command in a subprocess (env vars read at import, as for a user): every exported file
    arrives byte-identical, weights through LFS, in one commit to a newly created private repo."""
    import huggingface_hub.constants as constants

    # transformers writes the offline setting it loaded the tokenizer with (local_files_only) into
    # tokenizer_config.json: the dry run must see the same setting as the push
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    dry = tmp_path / "dry"
    assert push_main([str(model_dir), "--dry-run", str(dry), "--repo-id", "test-org/tiny-deepvrm", "--no-verify"]) == 0
    server = FakeHub()
    try:
        env = dict(os.environ, HF_ENDPOINT=server.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1",
                   NO_PROXY="127.0.0.1,localhost", HF_HUB_DISABLE_PROGRESS_BARS="1", TMPDIR=str(tmp_path),
                   HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "deepvrm.cli", "push", str(model_dir), "--repo-id", "test-org/tiny-deepvrm",
             "--private", "--commit-message", "First Deep-VRM", "--no-verify"],  # fmt: skip
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        uploaded = server.files("test-org/tiny-deepvrm")
        exported = {p.name: p.read_bytes() for p in dry.iterdir()}
        assert f"Uploaded {len(exported)} files" in result.stdout and "test-org/tiny-deepvrm@main" in result.stdout
        assert set(uploaded) == set(exported)
        for name, data in exported.items():
            assert uploaded[name] == data, f"{name} differs"
        repo = server.repos["test-org/tiny-deepvrm"]
        assert repo["private"] is True
        assert [c["summary"] for c in repo["commits"]] == ["First Deep-VRM"]
        assert hashlib.sha256(exported["model.safetensors"]).hexdigest() in server.lfs  # the weights went through LFS
        assert ("POST", "validate_yaml") in server.requests  # the card's metadata was validated by the "Hub"
        assert not server.unhandled
        meta = yaml.safe_load(exported["README.md"].decode().split("---\n")[1])
        assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "SynthBuster"  # eval_metrics.json found
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(("deepvrm-", "tmp"))]
        assert not (tmp_path / "hf-home" / "token").exists()
    finally:
        server.close()


def test_push_again_to_a_branch_replaces_stale_files_in_the_same_commit(hub, model_dir, tmp_path):
    before = _snapshot(model_dir)
    first = push(model_dir, "test-user/tiny", revision="dev", max_shard_size="600KB", verify=False, log=None)
    assert first.revision == "dev" and len([f for f in first.files if f.endswith(".safetensors")]) >= 2
    assert hub.files("test-user/tiny", "main") == {}  # only the branch got the files
    # what an older export or the user left there: old weights and code go, the user's own files stay
    branch = hub.repos["test-user/tiny"]["branches"]["dev"]
    branch.update({"pytorch_model.bin": b"old pickle", "remote_helpers.py": b"old", "modeling_deepvrm.py": b"old",
                   "notes.md": b"mine", "images/roc.png": b"png"})  # fmt: skip
    second = push(model_dir, "test-user/tiny", revision="dev", verify=False, log=None)
    stale_shards = [f for f in first.files if "-of-" in f or f.endswith(".index.json")]
    assert sorted(second.deleted) == sorted(stale_shards + ["pytorch_model.bin"])
    dry = tmp_path / "dry"
    export_model(model_dir, dry, repo_id="test-user/tiny")
    expected = {p.name: p.read_bytes() for p in dry.iterdir()}
    expected.update({"notes.md": b"mine", "images/roc.png": b"png", "remote_helpers.py": b"old"})
    assert hub.files("test-user/tiny", "dev") == expected
    assert [c["branch"] for c in hub.repos["test-user/tiny"]["commits"]] == ["dev", "dev"]  # one commit per push
    assert _snapshot(model_dir) == before  # the model folder is never written to
    assert list(hub.scratch.iterdir()) == []  # the export and re-sharded weights were removed


@pytest.mark.slow  # a fresh Python process
def test_push_with_verification_loads_the_export_without_deepvrm_first(hub, model_dir):
    lines = []
    result = push(model_dir, "test-user/verified", verify=True, log=lines.append)
    assert any(line.startswith("The export loads without deepvrm: DeepVRMConfig") for line in lines)
    assert "modeling_deepvrm.py" in hub.files("test-user/verified") and result.commit_oid


def test_missing_token_is_a_clear_error_and_contacts_nothing(hub, model_dir, monkeypatch, capsys, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"), raising=False)
    assert push_main([str(model_dir), "--repo-id", "test-user/x", "--no-verify"]) == 1
    message = capsys.readouterr().err
    assert "No Hugging Face token" in message and "HF_TOKEN" in message and "hf auth login" in message
    assert hub.requests == []


def test_offline_mode_is_a_clear_error_and_contacts_nothing(hub, model_dir, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert push_main([str(model_dir), "--repo-id", "test-user/x", "--no-verify"]) == 1
    message = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in message and "Nothing was uploaded" in message
    assert hub.requests == []


@pytest.mark.parametrize(
    "case, expected",
    [
        ("bad-token", "refused the token (401 Unauthorized) while checking the token"),
        ("foreign-namespace", "Permission refused (403 Forbidden) while creating the repository for someone-else/x"),
        ("server-error", "server error (500) while uploading and committing the files"),
        ("unreachable", "Could not reach the Hub at http://127.0.0.1:"),
    ],
)
def test_hub_errors_surface_as_clear_messages(hub, model_dir, monkeypatch, capsys, case, expected):
    before = _snapshot(model_dir)
    repo_id = "someone-else/x" if case == "foreign-namespace" else "test-user/x"
    if case == "bad-token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    if case == "server-error":
        hub.fail["commit"] = (500, "the storage backend is down")
    if case == "unreachable":
        hub.close()  # nothing listens on that port any more
    assert push_main([str(model_dir), "--repo-id", repo_id, "--no-verify"]) == 1
    message = capsys.readouterr().err
    assert expected in message, message
    assert "The repository was not changed." in message
    if case == "server-error":
        assert "the storage backend is down" in message
        assert hub.repos["test-user/x"]["branches"]["main"] == {} and hub.repos["test-user/x"]["commits"] == []
    if case in ("bad-token", "foreign-namespace"):
        assert all(files == {} for repo in hub.repos.values() for files in repo["branches"].values())
    assert _snapshot(model_dir) == before
    assert list(hub.scratch.iterdir()) == []


def test_push_errors_are_exceptions_in_python(hub, model_dir):
    hub.fail["create"] = (403, "nope")
    with pytest.raises(HubUploadError, match="403 Forbidden"):
        push(model_dir, "test-user/y", verify=False, log=None)
    with pytest.raises(HubUploadError, match="Invalid --repo-id"):
        push(model_dir, "no-namespace", verify=False, log=None)


def test_push_model_from_python_and_adapter_only(hub, model_dir, tmp_path):
    from test_hub_export import make_adapter_folder

    from deepvrm import DeepVRMForConditionalGeneration, DeepVRMProcessor

    model = DeepVRMForConditionalGeneration.from_pretrained(model_dir)
    processor = DeepVRMProcessor.from_pretrained(model_dir)
    push_model(model, "test-user/from-python", processor=processor, tags=["my-run"], commit_message="from Python",
               verify=False, log=None)  # fmt: skip
    files = hub.files("test-user/from-python")
    assert "- my-run" in files["README.md"].decode() and hub.repos["test-user/from-python"]["commits"][0]["summary"] == "from Python"
    assert {"config.json", "model.safetensors", "modeling_deepvrm.py", "processor_config.json", "README.md"} <= set(files)
    assert json.loads(files["processor_config.json"])["auto_map"]["AutoProcessor"] == "processing_deepvrm.DeepVRMProcessor"
    assert files["modeling_deepvrm.py"] == (Path(deepvrm.__file__).parent / "modeling_deepvrm.py").read_bytes()

    run = tmp_path / "run"
    make_adapter_folder(model_dir, run)
    result = push(run, "test-org/tiny-lora", adapter_only=True, base_model="test-org/tiny-base", verify=False, log=None)
    files = hub.files("test-org/tiny-lora")
    assert files["adapter_model.safetensors"] == (run / "adapter_model.safetensors").read_bytes()
    assert not any(name.startswith("model") and name.endswith(".safetensors") for name in files)
    assert "base_model: test-org/tiny-base" in files["README.md"].decode()
    assert result.total_size < 200_000


def test_model_push_to_hub_is_transformers_own_and_ships_the_model_code(hub, model_dir):
    """`model.push_to_hub` is transformers' own (no card, no weight check): it still uploads the model
    code, verbatim copies of the package's files, because the classes are registered for auto classes."""
    from deepvrm import DeepVRMForImageClassification

    model = DeepVRMForImageClassification.from_pretrained(model_dir)
    model.push_to_hub("test-user/via-method")
    files = hub.files("test-user/via-method")
    package = Path(deepvrm.__file__).parent
    code = {name: data for name, data in files.items() if name.endswith(".py")}
    assert {"configuration_deepvrm.py", "modeling_deepvrm.py", "processing_deepvrm.py"} <= set(code)
    assert all(data == (package / name).read_bytes() for name, data in code.items())
    assert json.loads(files["config.json"])["auto_map"]["AutoModelForImageClassification"] == (
        "modeling_deepvrm.DeepVRMForImageClassification"
    )
