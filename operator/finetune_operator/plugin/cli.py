"""Argument parsing and dispatch for `kubectl finetune`."""
from __future__ import annotations

import argparse
import sys

from .errors import PluginError

USAGE_EXAMPLES = """examples:
  kubectl finetune list -A
  kubectl finetune watch support-bot-lora
  kubectl finetune describe support-bot-lora
  kubectl finetune promote support-bot-v2
  kubectl finetune rollback support-bot
  kubectl finetune plot support-bot-lora -o loss.png
"""


def _connection_flags(default) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--kubeconfig", default=default,
                       help="path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    flags.add_argument("--context", default=default, help="kubeconfig context to use")
    flags.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's namespace)")
    return flags


def parser() -> argparse.ArgumentParser:
    # Accepted before and after the subcommand, like kubectl; the subcommand's copy must not
    # overwrite a value given before it, hence SUPPRESS there.
    common = _connection_flags(argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="kubectl finetune", description="FineTuneJobs and ModelVersions.",
                                epilog=USAGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[_connection_flags(None)])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", parents=[common], help="FineTuneJobs with phase, progress and loss")
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    sub.add_parser("describe", parents=[common], help="status, conditions, checkpoints, lineage").add_argument("name")
    sub.add_parser("watch", parents=[common], help="live progress until the job ends").add_argument("job")
    lg = sub.add_parser("logs", parents=[common], help="the trainer's logs (the validation pod's before training)")
    lg.add_argument("job")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--tail", type=int)
    for name, text in (("cancel", "stop the job for good (checkpoints are kept)"),
                       ("suspend", "checkpoint and stop the trainer pods"), ("resume", "resume a suspended job")):
        sub.add_parser(name, parents=[common], help=text).add_argument("job")
    sub.add_parser("promote", parents=[common], help="set a ModelVersion's stage to production").add_argument("version")
    rb = sub.add_parser("rollback", parents=[common], help="put the previous production version back")
    rb.add_argument("model")
    rb.add_argument("--to", help="the version to restore (default: the one promoted before the current)")
    sub.add_parser("history", parents=[common], help="a model's versions, stages and promotions").add_argument("model")
    pl = sub.add_parser("plot", parents=[common], help="PNG of train and eval loss against step")
    pl.add_argument("job")
    pl.add_argument("-o", "--output", help="PNG path (default: JOB-loss.png)")
    return p


def run(args: argparse.Namespace) -> int:
    from . import commands
    from .kubeapi import connect
    cluster = connect(args.kubeconfig, args.context, args.namespace)
    c = args.command
    if c == "watch":
        return commands.watch(cluster, args.job)
    if c == "logs":
        commands.logs(cluster, args.job, args.follow, args.tail)
        return 0
    text = {
        "list": lambda: commands.list_jobs(cluster, args.all_namespaces),
        "describe": lambda: commands.describe(cluster, args.name),
        "cancel": lambda: commands.set_lifecycle(cluster, args.job, "cancel", True, "cancel"),
        "suspend": lambda: commands.set_lifecycle(cluster, args.job, "suspend", True, "suspend"),
        "resume": lambda: commands.set_lifecycle(cluster, args.job, "suspend", False, "resume"),
        "promote": lambda: commands.promote(cluster, args.version),
        "rollback": lambda: commands.rollback_model(cluster, args.model, args.to),
        "history": lambda: commands.history(cluster, args.model),
        "plot": lambda: commands.plot_job(cluster, args.job, args.output),
    }[c]()
    print(text)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = run(args)
    except PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
