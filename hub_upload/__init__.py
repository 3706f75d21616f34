"""How Deep-VRM ships: the Hub export (model code as transformers saves it, model card) and upload.

    export_model(model_dir, out_dir, ...)      `deepvrm push MODEL_DIR --dry-run OUT_DIR`
    push(model_dir, repo_id, ...)              `deepvrm push MODEL_DIR --repo-id OWNER/NAME`
    push_model(model, repo_id, processor=...)  the same for a model in memory, in one commit with its card
                                               (`model.push_to_hub` is transformers' own: no card)
"""

# Imported on first use: `deepvrm push --help` (whose module sits in this package) needs none of them.
_PUBLIC = {
    "Export": "export", "ExportError": "export", "export_model": "export", "write_export": "export",
    "HubUploadError": "upload", "PushResult": "upload", "push": "upload", "push_model": "upload",
    "CleanProcessError": "verify", "check_in_clean_process": "verify",
}  # fmt: skip


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
