"""How Deep-VRM ships: Hub export (self-contained remote code, model card) and upload.

    export_model(model_dir, out_dir, ...)      `deepvrm push MODEL_DIR --dry-run OUT_DIR`
    push(model_dir, repo_id, ...)              `deepvrm push MODEL_DIR --repo-id OWNER/NAME`
    push_model(model, repo_id, processor=...)  the same for a model in memory (`model.push_to_hub`)
"""

from .export import ExportError, ExportPlan, export_model, plan_export, verify_plan
from .remote_code import RemoteCodeError, check_in_clean_process, generate_remote_code
from .upload import HubUploadError, PushResult, push, push_model

__all__ = [
    "ExportError",
    "ExportPlan",
    "HubUploadError",
    "PushResult",
    "RemoteCodeError",
    "check_in_clean_process",
    "export_model",
    "generate_remote_code",
    "plan_export",
    "push",
    "push_model",
    "verify_plan",
]
