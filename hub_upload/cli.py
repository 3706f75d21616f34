"""`deepvrm push`: export a model folder for the Hub (model code, model card) and upload it.

    deepvrm push MODEL_DIR --repo-id OWNER/NAME [--private] [--revision BRANCH] [--commit-message M]
                 [--adapter-only] [--dry-run OUT_DIR] [--base-model ID] [--metrics FILE] [--license ID]
                 [--dataset ID ...] [--tag TAG ...] [--processor DIR] [--max-shard-size 5GB] [--no-verify]

The token comes from HF_TOKEN or the stored login (`hf auth login`), the endpoint from HF_ENDPOINT.
Exit status: 0 done, 1 the export or the upload failed (nothing half-written), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepvrm push",
        description="Export a Deep-VRM model folder for the Hugging Face Hub (safetensors weights, config with "
        "auto_map, the model code for trust_remote_code, processor, model card) and upload it in one commit.",
        epilog="The token comes from HF_TOKEN or `hf auth login`; the endpoint from HF_ENDPOINT.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a Deep-VRM model folder, or a stage-2 adapter folder with --adapter-only")
    parser.add_argument("--repo-id", help="OWNER/NAME of the Hub repository (required unless --dry-run)")
    parser.add_argument("--private", action="store_true", help="create the repository as private (an existing one keeps its visibility)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created from main when missing)")
    parser.add_argument("--commit-message", metavar="M")
    parser.add_argument("--adapter-only", action="store_true", help="upload the LoRA adapter of a stage-2 run instead of the full model")
    parser.add_argument("--dry-run", metavar="OUT_DIR", help="write the export to OUT_DIR (new or empty) and upload nothing")
    parser.add_argument("--base-model", metavar="ID", help="Hub id of the base model, for the card (required for an adapter whose base is a local folder)")
    parser.add_argument("--metrics", metavar="FILE", help="`deepvrm evaluate` metrics JSON for the card (default: metrics.json or eval_metrics.json beside the model)")
    parser.add_argument("--license", metavar="ID", help="license id for the card (default apache-2.0; the 3B shape: Qwen research license)")
    parser.add_argument("--dataset", metavar="ID", action="append", default=[], help="Hub id of a training dataset, for the card (repeatable)")
    parser.add_argument("--tag", metavar="TAG", action="append", default=[], help="extra tag for the card (repeatable)")
    parser.add_argument("--processor", metavar="DIR", help="take the tokenizer/processor from DIR instead of MODEL_DIR")
    parser.add_argument("--max-shard-size", default="5GB", help="re-shard weight files larger than this (default 5GB)")
    parser.add_argument("--no-verify", action="store_true", help="skip loading the export in a Python process without deepvrm first")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("--repo-id OWNER/NAME is required (or use --dry-run OUT_DIR to only write the export)")

    from .export import ExportError, export_model
    from .upload import HubUploadError, push
    from .verify import CleanProcessError

    export_kwargs = dict(adapter_only=args.adapter_only, base_model=args.base_model, metrics=args.metrics, license=args.license,
                         datasets=args.dataset, tags=args.tag, processor_dir=args.processor, max_shard_size=args.max_shard_size)  # fmt: skip
    try:
        if args.dry_run:
            export = export_model(args.model_dir, args.dry_run, repo_id=args.repo_id, verify=not args.no_verify, **export_kwargs)
            print(f"{export.describe()}\nWrote the export to {args.dry_run}; nothing was uploaded.")
        else:
            push(args.model_dir, args.repo_id, private=True if args.private else None, revision=args.revision,
                 commit_message=args.commit_message, verify=not args.no_verify, **export_kwargs)  # fmt: skip
        return 0
    except (ExportError, CleanProcessError, HubUploadError) as error:
        print(f"deepvrm push: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
