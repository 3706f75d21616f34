"""Uploading an export through huggingface_hub, in one commit, with errors a person can act on.

Order of work: token present? (no network) -> `whoami` (token valid, Hub reachable) -> the export, in
a temporary folder (weights checked; weight files not re-sharded are linked) -> loaded in a clean
process (`verify`) -> repository and branch created when missing -> one commit with every file, which
also deletes the files of an earlier export that this one does not replace. `create_commit`, not
`upload_folder`: with hf_xet, `upload_folder` may split a folder into several commits (it does when a
commit of over 20 files fails); a push leaves the repository as it was or fully updated.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .export import TRAINING_INFO, Export, human_size, model_code_files, write_export

# Files of an earlier export that this one replaces or removes, in the same commit; other files of the
# repository (images of a hand-edited card, say) are left alone.
STALE_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "adapter_config.json", TRAINING_INFO]


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

    def __str__(self) -> str:
        text = f"Uploaded {len(self.files)} files ({human_size(self.total_size)}) to {self.repo_id}@{self.revision}"
        if self.deleted:
            text += f", removed {len(self.deleted)} stale file(s) ({', '.join(self.deleted)})"
        return text + (f": {self.commit_url}" if self.commit_url else "")


def resolve_token(token: str | None = None) -> str:
    from huggingface_hub import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise HubUploadError("No Hugging Face token: set HF_TOKEN to a token with write access "
                             "(https://huggingface.co/settings/tokens) or run `hf auth login`. Nothing was uploaded.")  # fmt: skip
    return token


def _find(error: BaseException, test):
    """The first exception in `error`'s chain of causes for which `test` holds."""
    seen = set()
    while error is not None and id(error) not in seen:
        if test(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


_STATUS = {
    401: "The Hub at {endpoint} refused the token (401 Unauthorized) while {stage}: it is invalid or expired. "
         "Set HF_TOKEN to a valid token with write access, or run `hf auth login`.",
    403: "Permission refused (403 Forbidden) while {stage} for {repo_id}: the token may not write to '{owner}'. Use a "
         "token with write access to that namespace (fine-grained tokens need write permission on it), or push to your own namespace.",
    404: "Not found (404) while {stage} for {repo_id}: check the repo id and the revision.",
    413: "The Hub refused the upload as too large (413) while {stage} for {repo_id}.",
    429: "The Hub rate-limited the upload (429 Too Many Requests) while {stage}; retry later.",
}  # fmt: skip


def explain(error: BaseException, stage: str, endpoint: str, repo_id: str) -> HubUploadError:
    """A `HubUploadError` saying what went wrong while `stage`, for the errors huggingface_hub raises."""
    from huggingface_hub.errors import HfHubHTTPError

    untouched = "The repository was not changed."
    if isinstance(error, HubUploadError):
        return error
    http = _find(error, lambda e: isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None)
    if http is not None:
        status = http.response.status_code
        detail = (getattr(http, "server_message", None) or "").strip()
        detail = f" The Hub said: {detail}" + ("" if detail.endswith((".", "!", "?")) else ".") if detail else ""
        message = _STATUS.get(status, "The Hub answered {status} while {stage} for {repo_id}.")
        if status >= 500:
            message = "The Hub at {endpoint} failed with a server error ({status}) while {stage} for {repo_id}; retry later."
        message = message.format(endpoint=endpoint, stage=stage, repo_id=repo_id, owner=repo_id.split("/")[0], status=status)
        return HubUploadError(f"{message}{detail} {untouched}")
    if isinstance(error, ValueError) and "metadata in README.md" in str(error):
        return HubUploadError(f"The Hub refused the model card's metadata while {stage}: {error} {untouched}")
    network = ("httpx", "httpx2", "httpcore", "h11", "urllib3", "requests")
    if _find(error, lambda e: isinstance(e, (ConnectionError, TimeoutError)) or type(e).__module__.split(".")[0] in network):
        return HubUploadError(f"Could not reach the Hub at {endpoint} while {stage} ({type(error).__name__}: {error}). "
                              f"Check the network connection, proxy settings and HF_ENDPOINT. {untouched}")  # fmt: skip
    return HubUploadError(f"Upload to {repo_id} failed while {stage}: {type(error).__name__}: {error}. {untouched}")


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
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import filter_repo_objects, validate_repo_id

    from deepvrm import __version__

    from .verify import check_in_clean_process

    log = log or (lambda *_: None)
    try:
        validate_repo_id(repo_id)
        if "/" not in repo_id:
            raise HFValidationError("it must be OWNER/NAME")
    except HFValidationError as error:
        raise HubUploadError(f"Invalid --repo-id {repo_id!r}: {error}") from None
    token = resolve_token(token)
    if constants.is_offline_mode():
        raise HubUploadError("HF_HUB_OFFLINE is set, so huggingface_hub contacts no server: unset it (and "
                             "TRANSFORMERS_OFFLINE) to push. Nothing was uploaded.")  # fmt: skip
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        log(f"Logged in to {endpoint} as {api.whoami().get('name', '?')}")
    except Exception as error:
        raise explain(error, "checking the token", endpoint, repo_id) from error

    with tempfile.TemporaryDirectory(prefix="deepvrm-push-") as folder:
        export: Export = write_export(model_dir, folder, repo_id=repo_id, link_weights=True, **export_kwargs)
        log(export.describe())
        if verify:
            log(f"The export loads without deepvrm: {', '.join(check_in_clean_process(folder))}")
        files = export.files
        revision = revision or "main"
        stage = "creating the repository"
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision != "main":
                stage = f"creating the branch {revision!r}"
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            stage = "listing the repository's files"
            remote = api.list_repo_files(repo_id, revision=revision, repo_type="model")
            patterns = STALE_PATTERNS + [p.name for p in model_code_files()]
            stale = sorted(p for p in filter_repo_objects(remote, allow_patterns=patterns) if p not in files)
            operations = [CommitOperationDelete(path_in_repo=path) for path in stale]
            operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder, name))) for name in files]
            stage = "uploading and committing the files"
            kind = "LoRA adapter" if export.kind == "adapter" else "model"
            commit = api.create_commit(repo_id, operations=operations, revision=revision, repo_type="model",
                                       commit_message=commit_message or f"Upload Deep-VRM {kind} (deepvrm {__version__})",
                                       commit_description=commit_description)  # fmt: skip
        except Exception as error:
            raise explain(error, stage, endpoint, repo_id) from error
    result = PushResult(repo_id=repo_id, revision=revision, commit_url=getattr(commit, "commit_url", None),
                        commit_oid=getattr(commit, "oid", None), files=list(files), deleted=stale,
                        total_size=sum(files.values()))  # fmt: skip
    log(str(result))
    return result


def push_model(model, repo_id: str, processor=None, *, token: str | None = None, **kwargs) -> PushResult:
    """Push a model in memory (a Deep-VRM class, or a PEFT-wrapped one with `adapter_only=True`), with its
    card, in one commit: it is saved to a temporary folder, which is pushed like a model folder.

    `processor` defaults to the one in the folder the model was loaded from."""
    token = resolve_token(token)  # fail before saving gigabytes
    with tempfile.TemporaryDirectory(prefix="deepvrm-push-model-") as folder:
        model.save_pretrained(folder)
        if kwargs.get("adapter_only") and not Path(folder, "config.json").exists():
            # A PeftModel saves the adapter only; the card and the model code also want the Deep-VRM config.
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            base.config.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        elif "processor_dir" not in kwargs:
            source = getattr(getattr(model, "config", None), "_name_or_path", None)
            if source and Path(source, "tokenizer_config.json").exists():
                kwargs["processor_dir"] = source
        return push(folder, repo_id, token=token, **kwargs)


__all__ = ["HubUploadError", "PushResult", "explain", "push", "push_model", "resolve_token"]
