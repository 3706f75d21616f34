"""How Deep-VRM ships: the Hub export (model code as transformers saves it, model card) and upload.

    export_model(model_dir, out_dir, ...)      `deepvrm push MODEL_DIR --dry-run OUT_DIR`
    push(model_dir, repo_id, ...)              `deepvrm push MODEL_DIR --repo-id OWNER/NAME`
    push_model(model, repo_id, processor=...)  the same for a model in memory, in one commit with its card
                                               (`model.push_to_hub` is transformers' own: no card)
"""

from .export import Export, ExportError, export_model, write_export
from .upload import HubUploadError, PushResult, push, push_model
from .verify import CleanProcessError, check_in_clean_process

__all__ = [
    "CleanProcessError",
    "Export",
    "ExportError",
    "HubUploadError",
    "PushResult",
    "check_in_clean_process",
    "export_model",
    "push",
    "push_model",
    "write_export",
]
