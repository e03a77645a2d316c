"""`kubectl finetune plot`: train and eval loss against step, from status.progress.history."""
from __future__ import annotations

from .errors import PluginError


def loss_points(job: dict) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, eval) points from the job's status; the operator keeps a thinned history of every step it saw."""
    history = ((job.get("status") or {}).get("progress") or {}).get("history") or []
    train = [(p["step"], p["trainLoss"]) for p in history if p.get("trainLoss") is not None]
    evals = [(p["step"], p["evalLoss"]) for p in history if p.get("evalLoss") is not None]
    # The eval loss is repeated on every step until the next evaluation: keep the changes only.
    evals = [pt for i, pt in enumerate(evals) if i == 0 or pt[1] != evals[i - 1][1]]
    return train, evals


def write_png(job: dict, path: str) -> tuple[int, int]:
    """Writes the PNG; returns how many train and eval points it drew."""
    train, evals = loss_points(job)
    if not train and not evals:
        raise PluginError(f"finetunejob {job['metadata']['name']} has no loss history yet "
                          "(status.progress.history fills in once training reports its first step)")
    try:
        import matplotlib
    except ImportError:
        raise PluginError("plot needs matplotlib: pip install 'finetune-operator[plugin]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), label="eval loss", color="tab:orange", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{job['metadata'].get('namespace', '')}/{job['metadata']['name']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(train), len(evals)
