"""Model 2's one fold: train (resumably, one state per epoch), select, evaluate, save.

A training state is written atomically after every completed epoch, so a killed
fold started again with the same inputs resumes from the last completed epoch
and ends bit-identical (on CPU) to an uninterrupted one; a finished fold is not
trained again. Best and last models are safetensors files (:mod:`bench.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.backbone import Backbone
from bench.checkpoint import (
    SCHEMA,
    load_model_file,
    save_model_file,
    save_training_state,
)
from bench.data.imageset import Samples
from bench.device import autocast
from bench.errors import UserError
from bench.protocols.finetune.fold_store import read_result, read_state, write_result
from bench.protocols.finetune.graph_step import GraphedStep
from bench.protocols.finetune.images import ImageBank, carve_validation
from bench.protocols.finetune.optim import (
    build_optimizer,
    derive_seed,
    head_of,
    set_train_mode,
)
from bench.protocols.finetune.settings import FinetuneSettings


@dataclass
class FinetuneFoldResult:
    """What one fold produced: test predictions, training curve, timings, model files."""

    fold: int
    test_index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray  # binary: positive-class probability (N,); multi-class: (N, k)
    history: list[dict[str, Any]]  # per iteration: epoch, iteration, loss, accuracy, lr
    val_history: list[dict[str, Any]]  # per epoch: epoch, val_loss, val_accuracy
    train_s: float
    images_per_s: float
    best_path: Path
    last_path: Path
    selected: str  # "best" (validation) or "last"
    epochs_run: int
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("test_index", "y_true", "y_pred", "score"):
            d[k] = np.asarray(d[k]).tolist()
        d["best_path"], d["last_path"] = str(self.best_path), str(self.last_path)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], folder: Path | None = None) -> FinetuneFoldResult:
        """Decode a stored result; ValueError/KeyError/TypeError when it is malformed.

        Model paths are taken relative to ``folder`` (the fold's folder) when
        given, so a cache that was moved or copied still names its own files.
        """
        d = dict(d)
        d["test_index"] = np.asarray(d["test_index"], dtype=np.int64)
        d["y_true"] = np.asarray(d["y_true"], dtype=np.int64)
        d["y_pred"] = np.asarray(d["y_pred"], dtype=np.int64)
        d["score"] = np.asarray(d["score"], dtype=np.float64)
        n = len(d["test_index"])
        if d["test_index"].ndim != 1 or len(d["y_true"]) != n or len(d["y_pred"]) != n:
            raise ValueError("test_index, y_true and y_pred differ in length")
        if len(d["score"]) != n:
            raise ValueError("score and test_index differ in length")
        for name in ("best_path", "last_path"):
            d[name] = Path(d[name]) if folder is None else folder / Path(d[name]).name
        return cls(**d)


@dataclass
class FoldTrainer:
    samples: Samples
    backbone: Backbone
    settings: FinetuneSettings
    device: torch.device
    bank: ImageBank
    seed: int
    positive_index: int | None
    meta_base: dict[str, Any]

    # -- evaluation --------------------------------------------------------------------
    def _predict(self, model: nn.Module, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """Softmax probabilities (N, k) for sample ``idx`` and the mean CE loss."""
        model.eval()
        labels = self.samples.labels
        probs, loss_sum = [], 0.0
        bs = self.settings.eval_batch_size
        with torch.no_grad():
            for start in range(0, len(idx), bs):
                chunk = idx[start : start + bs]
                x = self._to_device(self.bank.batch(chunk))
                with autocast(self.device, self.settings.amp):
                    logits = model(x)
                logits = logits.float().cpu()
                y = torch.from_numpy(labels[chunk])
                loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                probs.append(torch.softmax(logits, dim=1).numpy())
        p = np.concatenate(probs) if probs else np.empty((0, self.meta_base["num_classes"]))
        return p.astype(np.float64), loss_sum / max(len(idx), 1)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    def _show(
        self,
        bar: Any,
        task: Any,
        pending: list,
        t0: float,
        epoch: int,
        steps: int,
        step: int,
        fold: int,
        n_folds: int,
        loss: torch.Tensor,
    ) -> None:
        """Progress every 20 steps (reading the loss waits for the GPU, so not every step)."""
        if task is None or not (step % 20 == 19 or step == steps - 1):
            return
        elapsed = time.perf_counter() - t0
        done = sum(p[0] for p in pending)
        bar.update(
            task,
            completed=epoch * steps + step + 1,
            description=f"fold {fold + 1}/{n_folds} epoch {epoch + 1}/{self.settings.epochs}",
            loss=float(loss.detach()),
            ips=done / max(elapsed, 1e-9),
        )

    # -- one fold -------------------------------------------------------------------------------
    def run_fold(
        self,
        fold: int,
        n_folds: int,
        train_idx: np.ndarray,
        test_idx: np.ndarray,
        fold_dir: Path,
        key: str,
        bar: Any,
    ) -> FinetuneFoldResult:
        s = self.settings
        result_path = fold_dir / "result.json"
        res = read_result(
            result_path, key, lambda d: FinetuneFoldResult.from_json(d, folder=fold_dir)
        )
        if res is not None:
            res.resumed = True
            return res
        fold_dir.mkdir(parents=True, exist_ok=True)
        best_path, last_path = fold_dir / "best.safetensors", fold_dir / "last.safetensors"
        state_path = fold_dir / "state.pt"
        labels = self.samples.labels
        fit_idx, val_idx = carve_validation(
            train_idx,
            self.samples.groups,
            labels,
            s.val_fraction,
            derive_seed(self.seed, fold, "val"),
        )
        if len(fit_idx) == 0:
            raise UserError(f"finetune: fold {fold} has no training samples")

        torch.manual_seed(derive_seed(self.seed, fold, "init"))
        model = self.backbone.make_finetune(self.meta_base["num_classes"])
        head = head_of(model, self.backbone)
        model.to(self.device)
        if s.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, head, s, self.device)
        n_fit = len(fit_idx)
        drop_last = s.drop_last and n_fit >= s.batch_size
        steps = n_fit // s.batch_size if drop_last else math.ceil(n_fit / s.batch_size)
        total_steps = steps * s.epochs
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
            if s.schedule == "cosine"
            else None
        )
        scaler = (
            torch.amp.GradScaler("cuda") if self.device.type == "cuda" and s.amp == "fp16" else None
        )
        criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)

        st: dict[str, Any] = {
            "epoch": 0,
            "history": [],
            "val_history": [],
            "best_val": None,
            "best_epoch": 0,
            "bad_epochs": 0,
            "stopped": False,
            "train_s": 0.0,
            "images": 0,
        }
        resumed = False
        saved_state = read_state(state_path)
        if saved_state and saved_state.get("key") == key:
            model.load_state_dict(saved_state["model"])
            optimizer.load_state_dict(saved_state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(saved_state["scheduler"])
            if scaler is not None and "scaler" in saved_state:
                scaler.load_state_dict(saved_state["scaler"])
            st = {k: saved_state[k] for k in st}
            st["history"], st["val_history"] = list(st["history"]), list(st["val_history"])
            resumed = True
        task = None
        if bar is not None:
            task = bar.add_task(
                f"fold {fold + 1}/{n_folds}", total=total_steps, loss=float("nan"), ips=0.0
            )
            bar.update(task, completed=st["epoch"] * steps)

        use_graph = s.cuda_graph and self.device.type == "cuda"
        graphed: GraphedStep | None = None
        while st["epoch"] < s.epochs and not st["stopped"]:
            epoch = st["epoch"]
            torch.manual_seed(derive_seed(self.seed, fold, "epoch", epoch))
            gen = torch.Generator().manual_seed(derive_seed(self.seed, fold, "shuffle", epoch))
            order = fit_idx[torch.randperm(n_fit, generator=gen).numpy()]
            transforms = None
            if s.augmentation == "onthefly":
                from bench.data.augment import random_transform

                rng = np.random.default_rng(derive_seed(self.seed, fold, "augment", epoch))
                transforms = [random_transform(rng, scheme=s.aug_scheme) for _ in order]
            set_train_mode(model, head, s)
            t0 = time.perf_counter()
            pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
            for step in range(steps):
                sl = slice(step * s.batch_size, (step + 1) * s.batch_size)
                batch_idx = order[sl]
                x = self._to_device(
                    self.bank.batch(batch_idx, None if transforms is None else transforms[sl])
                )
                y = torch.from_numpy(labels[batch_idx]).to(self.device, non_blocking=True)
                lr = optimizer.param_groups[-1]["lr"]
                if use_graph and len(batch_idx) == s.batch_size:
                    if graphed is None:
                        graphed = GraphedStep(
                            model,
                            criterion,
                            optimizer,
                            x,
                            y,
                            lambda: autocast(self.device, s.amp, cache_enabled=False),
                        )
                    logits, loss = graphed(x, y)
                    logits, loss = logits.detach().clone(), loss.detach().clone()
                    pending.append((len(batch_idx), loss, (logits.argmax(1) == y).sum(), lr))
                    self._show(bar, task, pending, t0, epoch, steps, step, fold, n_folds, loss)
                    continue
                with autocast(self.device, s.amp):
                    logits = model(x)
                    loss = criterion(logits.float(), y)
                # a captured step owns the .grad tensors: zero them in place, never drop them
                optimizer.zero_grad(set_to_none=graphed is None)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                correct = (logits.detach().argmax(1) == y).sum()
                pending.append((len(batch_idx), loss.detach(), correct, lr))
                self._show(bar, task, pending, t0, epoch, steps, step, fold, n_folds, loss)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            epoch_s = time.perf_counter() - t0
            for n, loss_t, correct_t, lr in pending:
                st["history"].append(
                    {
                        "epoch": epoch + 1,
                        "iteration": len(st["history"]) + 1,
                        "loss": float(loss_t),
                        "accuracy": float(correct_t) / n,
                        "lr": lr,
                    }
                )
            st["train_s"] += epoch_s
            st["images"] += sum(p[0] for p in pending)
            if len(val_idx):
                probs, val_loss = self._predict(model, val_idx)
                val_acc = float((probs.argmax(1) == labels[val_idx]).mean())
                st["val_history"].append(
                    {"epoch": epoch + 1, "val_loss": val_loss, "val_accuracy": val_acc}
                )
                if st["best_val"] is None or val_loss < st["best_val"]:
                    st["best_val"], st["best_epoch"], st["bad_epochs"] = val_loss, epoch + 1, 0
                    self._save(best_path, model, fold, epoch + 1, "best", {}, st)
                else:
                    st["bad_epochs"] += 1
                    if s.patience and st["bad_epochs"] >= s.patience:
                        st["stopped"] = True
            st["epoch"] = epoch + 1
            state = {
                "schema": SCHEMA,
                "key": key,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                **({"scheduler": scheduler.state_dict()} if scheduler is not None else {}),
                **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                **st,
            }
            save_training_state(state_path, state)
        if task is not None:
            bar.update(task, completed=total_steps)

        # -- evaluate on the test side ----------------------------------------------
        self._save(last_path, model, fold, st["epoch"], "last", {}, st)
        selected = "last"
        if len(val_idx) and best_path.is_file():
            tensors, _ = load_model_file(best_path)
            model.load_state_dict(tensors)
            selected = "best"
        else:
            best_path = last_path
        probs, _ = self._predict(model, test_idx)
        y_true = labels[test_idx].astype(np.int64)
        y_pred = probs.argmax(1).astype(np.int64) if len(probs) else np.empty(0, np.int64)
        k = self.meta_base["num_classes"]
        if k == 2:
            pos = 1 if self.positive_index is None else self.positive_index
            score = probs[:, pos] if len(probs) else np.empty(0)
        else:
            score = probs
        metrics = _metrics(y_true, y_pred, score, k, self.positive_index)
        final_epoch = st["best_epoch"] if selected == "best" else st["epoch"]
        self._save(best_path, model, fold, final_epoch, selected, metrics, st)
        result = FinetuneFoldResult(
            fold=fold,
            test_index=np.asarray(test_idx, dtype=np.int64),
            y_true=y_true,
            y_pred=y_pred,
            score=np.asarray(score, dtype=np.float64),
            history=st["history"],
            val_history=st["val_history"],
            train_s=st["train_s"],
            images_per_s=st["images"] / max(st["train_s"], 1e-9),
            best_path=best_path,
            last_path=last_path,
            selected=selected,
            epochs_run=st["epoch"],
            metrics=metrics,
            resumed=resumed,
            device=str(self.device),
        )
        write_result(result_path, key, result.to_json())
        state_path.unlink(missing_ok=True)
        return result

    def _save(
        self,
        path: Path,
        model: nn.Module,
        fold: int,
        epoch: int,
        which: str,
        metrics: dict[str, Any],
        st: dict[str, Any],
    ) -> None:
        meta = {
            **self.meta_base,
            "fold": fold,
            "epoch": epoch,
            "which": which,
            "metrics": metrics,
            "best_val_loss": st.get("best_val"),
        }
        save_model_file(path, model.state_dict(), meta)


def _metrics(
    y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray, k: int, positive_index: int | None
) -> dict[str, Any]:
    """:func:`bench.metrics.compute_metrics` as plain JSON values ({} for an empty test side)."""
    if len(y_true) == 0:
        return {}
    from bench.metrics import compute_metrics

    m = compute_metrics(y_true, y_pred, score, n_classes=k, positive_index=positive_index)
    return json.loads(json.dumps(m, default=_plain))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)
