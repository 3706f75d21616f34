"""Uploading an export through huggingface_hub, with errors a person can act on.

The token comes from `token=`, `HF_TOKEN` or the stored login (`hf auth login`); the endpoint from
`endpoint=`, `HF_ENDPOINT` or huggingface_hub's default. The order of work keeps failures cheap and
clean:

1. token present? (no network) -> 2. `whoami` (token valid, Hub reachable) -> 3. plan the export
(weights checked, remote code generated; nothing written locally except re-sharded weights in a
temporary folder) -> 4. remote code imported in a clean process (`verify`) -> 5. create the repo
(and branch) when missing -> 6. one commit with every file, removing files of an earlier export that
this one does not replace.

The commit is atomic on the Hub: a failure before or during it leaves the repository as it was.
Nothing is ever written into the model folder, and temporary files are removed whatever happens.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .export import MANAGED_PATTERNS, ExportPlan, human_size, plan_export, verify_plan


class HubUploadError(RuntimeError):
    """The upload failed; the message says where, why and what to do."""


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_url: str | None
    commit_oid: str | None
    files: list[str]
    deleted: list[str]
    total_size: int
    plan: ExportPlan

    def __str__(self) -> str:
        text = f"Uploaded {len(self.files)} files ({human_size(self.total_size)}) to {self.repo_id}@{self.revision}"
        if self.deleted:
            text += f", removed {len(self.deleted)} stale file(s) ({', '.join(self.deleted)})"
        return text + (f": {self.commit_url}" if self.commit_url else "")


def resolve_endpoint(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None = None) -> str:
    from huggingface_hub import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise HubUploadError(
            "No Hugging Face token: set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`. Nothing was uploaded."
        )
    return token


def _http_error(error: BaseException):
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, HfHubHTTPError) and getattr(error, "response", None) is not None:
            return error
        error = error.__cause__ or error.__context__
    return None


def _is_network_error(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        module = type(error).__module__.split(".")[0]
        if module in ("httpx", "httpx2", "httpcore", "h11", "urllib3", "requests") or isinstance(
            error, (ConnectionError, TimeoutError)
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def explain(error: BaseException, stage: str, endpoint: str, repo_id: str) -> HubUploadError:
    """A `HubUploadError` saying what went wrong while `stage`, for the errors huggingface_hub raises."""
    from huggingface_hub.errors import LocalTokenNotFoundError

    untouched = "The repository was not changed."
    if isinstance(error, HubUploadError):
        return error
    if isinstance(error, LocalTokenNotFoundError):
        return resolve_token_error()
    http = _http_error(error)
    if http is not None:
        status = http.response.status_code
        detail = (getattr(http, "server_message", None) or "").strip()
        detail = f" The Hub said: {detail}" + ("" if detail.endswith((".", "!", "?")) else ".") if detail else ""
        owner = repo_id.split("/")[0]
        if status == 401:
            message = (
                f"The Hub at {endpoint} refused the token (401 Unauthorized) while {stage}: it is invalid or expired. "
                "Set HF_TOKEN to a valid token with write access, or run `hf auth login`."
            )
        elif status == 403:
            message = (
                f"Permission refused (403 Forbidden) while {stage} for {repo_id}: the token may not write to "
                f"'{owner}'. Use a token with write access to that namespace (fine-grained tokens need write "
                "permission on it), or push to your own namespace."
            )
        elif status == 404:
            message = f"Not found (404) while {stage} for {repo_id}: check the repo id and the revision."
        elif status == 413:
            message = f"The Hub refused the upload as too large (413) while {stage} for {repo_id}."
        elif status == 429:
            message = f"The Hub rate-limited the upload (429 Too Many Requests) while {stage}; retry later."
        elif status >= 500:
            message = f"The Hub at {endpoint} failed with a server error ({status}) while {stage} for {repo_id}; retry later."
        else:
            message = f"The Hub answered {status} while {stage} for {repo_id}."
        return HubUploadError(f"{message}{detail} {untouched}")
    if isinstance(error, ValueError) and "metadata in README.md" in str(error):
        return HubUploadError(f"The Hub refused the model card's metadata while {stage}: {error} {untouched}")
    if _is_network_error(error):
        return HubUploadError(
            f"Could not reach the Hub at {endpoint} while {stage} ({type(error).__name__}: {error}). Check the "
            f"network connection, proxy settings and HF_ENDPOINT. {untouched}"
        )
    return HubUploadError(f"Upload to {repo_id} failed while {stage}: {type(error).__name__}: {error}. {untouched}")


def resolve_token_error() -> HubUploadError:
    try:
        resolve_token(None)
    except HubUploadError as error:
        return error
    return HubUploadError("The Hugging Face token could not be read. Nothing was uploaded.")


def push(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    verify: bool = True,
    log=print,
    **export_kwargs,
) -> PushResult:
    """Export `model_dir` (full, or `adapter_only=True`) and upload it to `repo_id` in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from deepvrm import __version__

    log = log or (lambda *_: None)
    try:
        validate_repo_id(repo_id)
        if "/" not in repo_id:
            raise HFValidationError("it must be OWNER/NAME")
    except HFValidationError as error:
        raise HubUploadError(f"Invalid --repo-id {repo_id!r}: {error}") from None
    token = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    stage = "checking the token"
    try:
        user = api.whoami(token=token)
        log(f"Logged in to {endpoint} as {user.get('name', '?')}")
    except Exception as error:
        raise explain(error, stage, endpoint, repo_id) from error

    adapter_only = export_kwargs.get("adapter_only", False)
    plan = plan_export(model_dir, repo_id=repo_id, **export_kwargs)
    try:
        log(plan.describe())
        if verify:
            loaded = verify_plan(plan)
            log(f"Remote code loads without deepvrm: {', '.join(loaded)}")
        revision = revision or "main"
        stage = "creating the repository"
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision != "main":
                stage = f"creating the branch {revision!r}"
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            stage = "listing the repository's files"
            existing = api.list_repo_files(repo_id, revision=revision, repo_type="model")
            uploads = {f.path_in_repo for f in plan.files}
            stale = sorted(
                path for path in existing
                if path not in uploads and any(fnmatch.fnmatch(path, pattern) for pattern in MANAGED_PATTERNS)
            )  # fmt: skip
            operations = [CommitOperationDelete(path_in_repo=path) for path in stale]
            operations += [
                CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.content if f.content is not None else str(f.source))
                for f in plan.files
            ]
            stage = "uploading and committing the files"
            message = commit_message or f"Upload Deep-VRM {'LoRA adapter' if adapter_only else 'model'} (deepvrm {__version__})"
            commit = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=message,
                commit_description=commit_description,
                revision=revision,
                repo_type="model",
            )
        except Exception as error:
            raise explain(error, stage, endpoint, repo_id) from error
        result = PushResult(
            repo_id=repo_id,
            revision=revision,
            commit_url=getattr(commit, "commit_url", None),
            commit_oid=getattr(commit, "oid", None),
            files=[f.path_in_repo for f in plan.files],
            deleted=stale,
            total_size=plan.total_size,
            plan=plan,
        )
        log(str(result))
        return result
    finally:
        plan.cleanup()


def push_model(model, repo_id: str, processor=None, *, token: str | None = None, **kwargs) -> PushResult:
    """Push a model in memory (a Deep-VRM class, or a PEFT-wrapped one with `adapter_only=True`).

    The model (and `processor`, else the processor found in the folder it was loaded from) is saved to
    a temporary folder, which is then exported and uploaded like a folder; the folder is removed after.
    """
    token = resolve_token(token)  # fail before saving gigabytes
    with tempfile.TemporaryDirectory(prefix="deepvrm-push-model-") as folder:
        model.save_pretrained(folder)
        if kwargs.get("adapter_only") and not Path(folder, "config.json").exists():
            # A PeftModel saves the adapter only; the card and remote code also want the Deep-VRM config.
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.config.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        elif "processor_dir" not in kwargs:
            source = getattr(getattr(model, "config", None), "_name_or_path", None)
            if source and Path(source, "tokenizer_config.json").exists():
                kwargs["processor_dir"] = source
        return push(folder, repo_id, token=token, **kwargs)


__all__ = ["HubUploadError", "PushResult", "explain", "push", "push_model", "resolve_endpoint", "resolve_token"]
