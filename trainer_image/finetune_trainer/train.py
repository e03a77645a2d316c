"""The training recipe, readable top to bottom: setup in dependency order, one loop, the result.

    recipe = Recipe(config); result = recipe.run()

Single process, or one process per GPU under torchrun (DDP; gloo on CPU, NCCL on GPU). Only
rank 0 writes anything (checkpoints, adapter, manifest, progress); every rank reads the same
deterministic batch plan and takes its share.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import os
import signal
import tempfile
import time
from pathlib import Path

import torch

from finetune_api import datasets, manifest as manifestmod, resume

from . import __version__, batching, checkpoint, data, derived, evaluate, model as modelmod, parallel, s3 as s3mod
from .config import TrainerConfig
from .loss import TokenLoss, collate
from .outcomes import ExitCode, TrainerFailure
from .report import Reporter

log = logging.getLogger("finetune-trainer")


class Distributed:
    """torchrun's environment; a single process when WORLD_SIZE is unset."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            if cuda:
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if cuda else "gloo")

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (for stop decisions)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([float(value)], device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class Recipe:
    def __init__(self, cfg: TrainerConfig):
        self.cfg = cfg
        self.dist = Distributed()
        self.reporter = Reporter(cfg.job.namespace, cfg.job.name, enabled=self.dist.main)
        self.preempted = False
        self.last_checkpoint = None  # {step, uri, digest} of the newest checkpoint this run saved
        self.t_start = time.monotonic()

    # --- setup ------------------------------------------------------------------------------
    def _on_sigterm(self, *_):
        log.warning("SIGTERM: finishing this step, then checkpointing and exiting (retryable)")
        self.preempted = True

    def _setup_s3(self):
        s3 = s3mod.client(self.cfg.s3_endpoint, self.cfg.s3_region)
        bucket, _ = s3mod.parse_uri(self.cfg.output_uri)
        try:
            with s3mod.errors(f"checking the output bucket {bucket}"):
                s3.head_bucket(Bucket=bucket)
        except FileNotFoundError:
            raise TrainerFailure(ExitCode.INVALID_CONFIG,
                                 f"spec.output.uri: bucket {bucket!r} does not exist (create it, or point "
                                 "spec.output.uri at an existing bucket)") from None
        return s3

    def _setup_data(self, s3, tokenizer):
        self.reporter.update(phase="validating")
        return data.load(derived.training_config(self.cfg), s3, tokenizer)  # a validated copy where one was made

    def validate_only(self) -> dict:
        """Checks the dataset (and that the base model's tokenizer loads) without touching a GPU. Its
        datasetStats (also a failure's stats) carry peakRssBytes: the pod's memory limit is not enforced
        everywhere (the process node), so the pass reports what it took."""
        try:
            result = self._validate_only()
        except TrainerFailure as err:
            if isinstance(err.details.get("stats"), dict):
                err.details["stats"]["peakRssBytes"] = peak_rss_bytes()
            raise
        result["datasetStats"]["peakRssBytes"] = peak_rss_bytes()
        return result

    def _validate_only(self) -> dict:
        from transformers import AutoTokenizer
        s3 = self._setup_s3()
        folder = modelmod.fetch(self.cfg, s3)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        self.reporter.update(phase="validating")
        gate = self._safety_gate(tokenizer)  # spec.dataSafety; a Fail ends validation with DatasetUnsafe
        report = data.validate(self.cfg, s3, tokenizer, gate=gate)  # streaming, bounded memory: no examples kept
        self._check_output_writable(s3)
        if gate is None:
            return {"datasetStats": report.summary()}
        # Redact/Drop/cleaning changed rows: training reads these copies (derived.training_config)
        report.sources = [*report.sources, *derived.upload_copies(s3, self.cfg, gate.copy_paths(), report.sources)]
        return {"datasetStats": {**report.summary(), "safety": gate.report()}}

    def _safety_gate(self, tokenizer):
        config = derived.safety_config(self.cfg)
        if config is None:
            return None
        from .safety.gate import Gate
        return Gate(config, tokenizer, work_dir=self.cfg.runtime.work_dir)

    def _check_output_writable(self, s3) -> None:
        """Writes and deletes a marker under spec.output.uri, so a read-only prefix fails now, not after training."""
        probe = s3mod.join(self.cfg.output_uri, f".fto-write-check-{self.cfg.job.uid or 'local'}")
        bucket, key = s3mod.parse_uri(probe)
        with s3mod.errors(f"writing to spec.output.uri ({self.cfg.output_uri})"):
            s3mod.ensure_bucket(s3, bucket)
            s3.put_object(Bucket=bucket, Key=key, Body=b"")
            s3.delete_object(Bucket=bucket, Key=key)

    def run(self) -> dict:
        cfg, dist, t = self.cfg, self.dist, self.cfg.training
        self.plan = modelmod.hardware_plan(cfg, dist.device)  # dtype and hardware checked before anything loads
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.reporter.serve(cfg.runtime.metrics_host, cfg.runtime.metrics_port)
        torch.manual_seed(t["seed"])
        s3 = self._setup_s3()

        self.reporter.update(phase="loading")
        if dist.local_rank == 0:  # one download per node; the other ranks wait, then find it complete
            modelmod.fetch(cfg, s3)
        dist.barrier()
        folder = modelmod.fetch(cfg, s3)
        base_digest = modelmod.verify_digest(cfg, folder)
        model, tokenizer, model_type = modelmod.load(cfg, folder, dist.device, self.plan)
        train_set, val_set, stats = self._setup_data(s3, tokenizer)
        regression_set = data.load_regression_set(cfg, s3, tokenizer)
        log.info("data: %s", json.dumps(stats.summary()))
        loss_module = TokenLoss(model)
        trainer = parallel.wrap(loss_module, model, t["distributedStrategy"], dist)  # before the optimiser
        fsdp = parallel.sharded(trainer)

        lengths = train_set.lengths  # a store's lengths: the plan is built from indices, the rows stay on disk
        plan_for = lambda epoch: batching.plan(lengths, t["batchSize"], t["packing"], t["maxSeqLength"],  # noqa: E731
                                               t["seed"], epoch, dist.world, dist.rank)
        accum = t["gradientAccumulationSteps"]
        split = cfg.runtime.micro_batch_split
        eval_batch = max(1, t["batchSize"] // split)
        if split > 1:
            log.info("micro-batches are split in %d after an out-of-memory attempt (same steps and gradients)", split)
        total_micro = self._micro_batch_budget(plan_for)
        total_steps = max(1, total_micro // accum)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=t["learningRate"], weight_decay=t["weightDecay"])
        scaler, autocast = self.plan.scaler(dist.device), lambda: self.plan.autocast_context(dist.device)  # noqa: E731
        from transformers import get_scheduler
        warmup = t.get("warmupSteps", math.ceil(total_steps * t.get("warmupRatio", 0.0)))
        scheduler = get_scheduler(t["lrScheduler"], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)

        step, epoch, batch_index, best, best_uri, bad_evals, tokens_seen = 0, 0, 0, None, None, 0, 0
        initial_loss, best_digest = None, None
        resumed = checkpoint.resume_point(s3, cfg)
        if resumed:
            uri, digest = resumed
            trainable, rest, state = checkpoint.load(s3, uri, dist.device, digest)
            parallel.load_trainable_state(trainer, model, trainable)
            parallel.load_optimizer_state(trainer, optimizer, rest["optimizer"])
            scheduler.load_state_dict(rest["scheduler"])
            checkpoint.set_rng_state(rest["rng"])
            step, epoch, batch_index = state["step"], state["epoch"], state["batchIndex"]
            best, best_uri, bad_evals = state.get("best"), state.get("bestUri"), state.get("badEvals", 0)
            best_digest = state.get("bestDigest")
            tokens_seen = state.get("tokensSeen", 0)
            initial_loss = state.get("initialEvalLoss")
            self._report_resumed(s3, uri, digest, state)
            log.info("attempt %d: resumed from %s at step %d", cfg.job.attempt, uri, step)
        elif cfg.job.attempt > 1:
            log.info("attempt %d: no checkpoint of this job yet, starting from step 0", cfg.job.attempt)
        self.reporter.update(phase="training", step=step, totalSteps=total_steps, resumedFrom=resumed and resumed[0])

        def save(at_step: int, metrics: dict | None = None) -> tuple[str | None, str | None]:
            uri = digest = None
            trainable = parallel.trainable_state(trainer, model)  # collective under FSDP: every rank gathers
            optimizer_state = parallel.optimizer_state(trainer, optimizer)
            if dist.main:
                uri, digest = checkpoint.save(
                    s3, cfg.output_uri, at_step, {"epoch": epoch, "batchIndex": batch_index},
                    trainable, optimizer_state, scheduler.state_dict(),
                    {"job": cfg.job.key, "configHash": cfg.config_hash, "best": best, "bestUri": best_uri,
                     "bestDigest": best_digest, "badEvals": bad_evals, "tokensSeen": tokens_seen,
                     "initialEvalLoss": initial_loss, "evalLoss": (metrics or {}).get("eval_loss")})
                self.last_checkpoint = {"step": at_step, "uri": uri, "digest": digest}
                self.reporter.add_checkpoint({**self.last_checkpoint, "evalLoss": (metrics or {}).get("eval_loss"),
                                              "savedAt": _now()})
                checkpoint.prune(s3, cfg.output_uri, t["keepCheckpoints"], protect=best_uri or uri)
                kept = {u for _, u, _ in checkpoint.list_valid(s3, cfg.output_uri)}
                self.reporter.forget_checkpoints(kept)
            dist.barrier()
            return uri, digest

        # --- the loop ---------------------------------------------------------------------------
        es = cfg.early_stopping
        metrics: dict = {}
        if val_set and step == 0:  # the baseline the fine-tune is measured against
            initial_loss = evaluate.eval_loss(loss_module, val_set, eval_batch, tokenizer.pad_token_id,
                                              dist.device)["eval_loss"]
            self.reporter.update(evalLoss=round(initial_loss, 5))
        window_loss = window_steps = window_real = window_samples = 0.0
        window_t0, step_times = time.monotonic(), []
        micro_seen = step * accum
        batches = plan_for(epoch)
        trainer.train()
        stop = False
        while step < total_steps and not stop:
            t_step = time.monotonic()
            step_micro = []
            for _ in range(accum):
                if batch_index >= len(batches):
                    epoch, batch_index = epoch + 1, 0
                    batches = plan_for(epoch)
                for part in batching.split_rows(batches[batch_index], split):
                    step_micro.append(collate(part, train_set, tokenizer.pad_token_id, t["packing"]))
                batch_index += 1
            n_trained = sum(int((b["labels"][:, 1:] != data.IGNORE).sum()) for b in step_micro)
            n_trained = max(1.0, dist.sum(n_trained)) / dist.world  # DDP averages gradients over ranks
            step_loss = 0.0
            try:
                for i, b in enumerate(step_micro):
                    sync = i == len(step_micro) - 1 or dist.world == 1
                    with parallel.gradient_sync(trainer, sync):
                        kwargs = {k: b[k].to(dist.device) for k in ("attention_mask", "position_ids") if k in b}
                        with autocast():
                            loss_sum, _ = trainer(b["input_ids"].to(dist.device), b["labels"].to(dist.device),
                                                  **kwargs)
                        scaler.scale(loss_sum / n_trained).backward()
                    step_loss += float(loss_sum.detach())
                    window_real += b["tokens"]
                    window_samples += b["examples"]
            except torch.OutOfMemoryError as err:
                raise TrainerFailure(ExitCode.OUT_OF_MEMORY, f"out of GPU memory at step {step + 1}: {err}") from None
            if not math.isfinite(step_loss):
                raise TrainerFailure(ExitCode.DIVERGED, f"training diverged: the loss became {step_loss} at step "
                                     f"{step + 1}; lower spec.training.learningRate or check the data")
            scaler.unscale_(optimizer)  # fp16: clip the true gradients; a step with inf gradients is skipped
            clip_gradients(params, t["maxGradNorm"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            micro_seen += accum
            window_loss += step_loss / n_trained
            window_steps += 1
            step_times.append(time.monotonic() - t_step)

            elapsed = time.monotonic() - window_t0
            real_all = dist.sum(window_real)
            tokens_seen += int(real_all)
            eta = (total_steps - step) * (sum(step_times[-20:]) / len(step_times[-20:]))
            self.reporter.update(step=step, epoch=round(epoch + batch_index / max(1, len(batches)), 3),
                                 trainLoss=round(dist.sum(window_loss / window_steps) / dist.world, 5),
                                 learningRate=scheduler.get_last_lr()[0],
                                 tokensPerSecond=round(real_all / max(elapsed, 1e-9), 1),
                                 samplesPerSecond=round(dist.sum(window_samples) / max(elapsed, 1e-9), 2),
                                 etaSeconds=int(eta),
                                 gpuMemoryBytes=torch.cuda.max_memory_allocated(dist.device)
                                 if dist.device.type == "cuda" else None)
            window_loss = window_steps = window_real = window_samples = 0.0
            window_t0 = time.monotonic()

            evaluate_now = val_set and (step % t["evalEverySteps"] == 0 or step == total_steps)
            if evaluate_now:
                metrics = evaluate.eval_loss(loss_module, val_set, eval_batch, tokenizer.pad_token_id, dist.device)
                self.reporter.update(evalLoss=round(metrics["eval_loss"], 5))
                if es:
                    value = metrics[es["metric"]]
                    if best is None or value < best - es["minDelta"]:
                        best, bad_evals = value, 0
                        best_uri, best_digest = save(step, metrics)
                    else:
                        bad_evals += 1
                        stop = bad_evals >= es["patience"]
                        if stop:
                            log.info("early stopping at step %d: %s did not improve for %d evaluations",
                                     step, es["metric"], bad_evals)
            if step % t["checkpointEverySteps"] == 0 and not (es and evaluate_now and best_uri and best_uri.endswith(f"{step:08d}")):
                save(step, metrics)
            if dist.any(self.preempted):
                save(step, metrics)
                raise TrainerFailure(ExitCode.PREEMPTED, f"stopped by SIGTERM at step {step}; checkpoint saved, "
                                     "resume by relaunching the same job", step=step, checkpoint=self.last_checkpoint)
            stop = dist.any(stop)

        # --- the result ---------------------------------------------------------------------------
        # Every rank takes part until the states are gathered (collectives under FSDP); rank 0 writes.
        self.reporter.update(phase="evaluating")
        if es and best_uri:  # read back from the prefix: only if it is still what was written
            trainable, _, _ = checkpoint.load(s3, best_uri, dist.device, best_digest)
            parallel.load_trainable_state(trainer, model, trainable)
            metrics = {}
        if val_set and not metrics:
            metrics = evaluate.eval_loss(loss_module, val_set, eval_batch, tokenizer.pad_token_id, dist.device)
        metrics.update(evaluate.regression_losses(model, loss_module, regression_set, eval_batch,
                                                  tokenizer.pad_token_id, dist.device))
        final_state = parallel.trainable_state(trainer, model)
        result = {}
        if dist.main:
            if val_set and not fsdp:  # generation needs the whole model in one process
                ev = cfg.spec.get("evaluation") or {}
                samples = evaluate.held_out_prompts(val_set, tokenizer, ev.get("samples", 16))
                metrics.update(evaluate.task_checks(model, tokenizer, samples, dist.device,
                                                    cfg.dataset.get("completionJsonSchema"), ev.get("answerRegex"),
                                                    regex_timeout=cfg.runtime.regex_timeout_seconds))
            elif val_set:
                log.info("generation checks are skipped under fsdp (the model is sharded across processes)")
            if initial_loss is not None:
                metrics["initial_eval_loss"] = initial_loss
            self.reporter.update(phase="saving")
            result = self._write_result(s3, model, final_state, tokenizer, model_type, base_digest, stats, metrics,
                                        step, tokens_seen)
            self.reporter.update(phase="done")
        dist.barrier()
        dist.close()
        return result

    def _report_resumed(self, s3, uri: str, digest, state: dict) -> None:
        """The checkpoints kept so far, for /progress: under RECORDED only those whose digest is known."""
        if self.cfg.runtime.resume_policy != resume.RECORDED:
            for _, kept, st in checkpoint.list_valid(s3, self.cfg.output_uri):
                self.reporter.add_checkpoint({"step": st["step"], "uri": kept, "evalLoss": st.get("evalLoss")})
            return
        best_uri, best_digest = state.get("bestUri"), state.get("bestDigest")
        if best_uri and best_uri != uri and resume.is_digest(best_digest):
            self.reporter.add_checkpoint({"step": int(best_uri.rsplit("step-", 1)[-1]), "uri": best_uri,
                                          "digest": best_digest})
        self.reporter.add_checkpoint({"step": state["step"], "uri": uri, "digest": digest,
                                      "evalLoss": state.get("evalLoss")})

    def _micro_batch_budget(self, plan_for) -> int:
        t = self.cfg.training
        if "maxSteps" in t:
            return t["maxSteps"] * t["gradientAccumulationSteps"]
        epochs = t.get("epochs", 1.0)
        full = int(epochs)
        total = sum(len(plan_for(e)) for e in range(full))
        if epochs > full:
            total += int((epochs - full) * len(plan_for(full)))
        return total

    def _write_result(self, s3, model, state, tokenizer, model_type, base_digest, stats, metrics, steps,
                      tokens) -> dict:
        cfg = self.cfg
        out = cfg.output_uri
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "adapter"
            model.save_pretrained(folder, state_dict=state, safe_serialization=True)
            if cfg.method == "full":
                tokenizer.save_pretrained(folder)
            files = manifestmod.file_entries(folder)
            s3mod.upload_folder(folder, s3mod.join(out, manifestmod.ADAPTER_DIR), s3)
        lora = cfg.lora if cfg.method != "full" else {}
        targets = sorted(model.peft_config["default"].target_modules) if hasattr(model, "peft_config") else None
        manifest = manifestmod.build(
            job={"namespace": cfg.job.namespace, "name": cfg.job.name, "uid": cfg.job.uid},
            method=cfg.method, model_type=model_type,
            lora={"r": lora.get("r"), "alpha": lora.get("alpha"), "targetModules": targets} if lora else None,
            files=files,
            base_model={"name": cfg.base_model["name"], "uri": cfg.base_model.get("uri"), "digest": base_digest},
            dataset={"uri": cfg.dataset["uri"], "etag": stats.source_etag,
                     "validationUri": cfg.dataset.get("validationUri"),
                     "sources": datasets.to_docs(cfg.runtime.validated_datasets) or stats.sources},
            dataset_stats=stats.summary(), config_hash=cfg.config_hash, trainer_version=__version__,
            trainer_image=os.environ.get("FTO_TRAINER_IMAGE", ""),
            metrics={k: round(v, 6) for k, v in metrics.items()}, steps=steps, tokens=tokens,
            wall_seconds=round(time.monotonic() - self.t_start, 1), created_at=_now(), precision=self.plan.precision)
        body = manifestmod.encode(manifest)
        manifest_uri = s3mod.join(out, manifestmod.FILE_NAME)
        bucket, key = s3mod.parse_uri(manifest_uri)
        with s3mod.errors(f"writing {manifest_uri}"):
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        return {"adapterUri": manifestmod.adapter_uri(manifest_uri), "manifestUri": manifest_uri,
                "adapterDigest": manifestmod.digest(body), "steps": steps, "metrics": manifest["metrics"]}


def clip_gradients(params, max_norm: float):
    """Clips the gradients' total norm to spec.training.maxGradNorm; 0 disables clipping.

    clip_grad_norm_ with max_norm=0 would scale every gradient to zero (the step would train nothing).
    Returns the total norm before clipping, or None when clipping is off.
    """
    if not max_norm:
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
