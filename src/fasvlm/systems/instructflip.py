"""InstructFLIPSystem: the LightningModule that trains and evaluates :class:`fasvlm.models.instructflip.InstructFLIP`.

Training: each sample's style question is drawn (``style_question``) with a seeded generator, the model returns the
unweighted terms, and the loss is ``0.4 content-LM + 0.4 style-LM + 0.15 cls + 0.05 cue`` (published config
``loss_weights: [0.4, 0.4, 0.15, 0.05, 0]``). Evaluation and prediction are LLM-free with fixed questions.

The frozen FLAN-T5 is loaded lazily in ``setup``: for ``fit`` (it gives the LM losses) and for ``predict`` with
``answer_questions=True``; validation, test and plain prediction never load it. It is kept in bf16 on GPU and fp32 on
CPU (``t5_dtype="auto"``), gets no gradient, stays in eval mode, has no optimizer state, is hidden from DDP, and is
left out of checkpoints: ``state_dict`` drops ``model.t5.*`` and the checkpoint's hyperparameters name the T5 (``t5``)
so it is reloaded from there. ``strict_loading = False`` only lets Lightning accept the absent T5 tensors:
:meth:`load_state_dict` still raises on any other missing or unexpected key.

A batch in which no sample has a label for a question contributes ``0 * (a term that touches t5_proj and the
queries)`` for that question, so the loss stays a valid graph over the same parameters on every rank (DDP without
``find_unused_parameters``).
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from fasvlm.backbones import ImageSpec, image_spec
from fasvlm.models.instructflip import InstructFLIP, StyleQuestionMode, draw_style_questions
from fasvlm.systems.common import SchedulerName, configure_adamw, eval_output, from_pretrained, save_pretrained

__all__ = ["InstructFLIPSystem"]

_TERMS = ("content", "style", "cls", "cue")
_T5_PREFIX = "model.t5."


class InstructFLIPSystem(L.LightningModule):
    """InstructFLIP (ACM MM 2025). Model arguments are documented on :class:`~fasvlm.models.instructflip.InstructFLIP`.

    Args:
        t5_dtype: dtype of the frozen T5: ``auto`` = bf16 on GPU, fp32 on CPU.
        llm_free: never load the T5 (evaluation/prediction of a trained model without its weights at hand; the
            ``t5_proj`` layer is still built so checkpoints load). Training with the LM losses then fails loudly.
        style_question: which style question a training sample gets: ``random`` (default; label-independent),
            ``scene_or_quality`` (attacks: illumination/environment, live: camera quality; the project's reading of
            which labels exist, not from the paper; ``paper`` is its deprecated old name), ``published`` (the code:
            attacks any, live camera quality) or one fixed question. ``scene_or_quality``/``published`` let the
            question reveal the label to the fusion classifier during training while evaluation asks a fixed one.
        classifier_norm / dagger: see :class:`~fasvlm.models.instructflip.InstructFLIP`.
        style_seed: seed of the style-question generator (offset by the global rank; saved in checkpoints).
        loss_weights: (content-LM, style-LM, cls, cue) weights.
        answer_questions: in ``predict``, also answer the content and style questions (T5 greedy decoding, or the
            dagger heads) and return the strings.
        lr / weight_decay / scheduler / warmup_frac: AdamW with per-step OneCycle peak 5e-6, wd 1e-6 (the paper).
    """

    def __init__(
        self,
        vision: str = "clip-vit-b16",
        image_size: int | None = None,
        qformer: str = "bert-base",
        qformer_layers: int = 2,
        qformer_heads: int = 16,
        cross_attention_freq: int = 2,
        num_query_tokens: int = 32,
        qformer_query_ffn_from_text: bool = False,
        t5: str | None = "flan-t5-base",
        t5_dtype: Literal["auto", "float32", "bfloat16"] = "auto",
        llm_free: bool = False,
        heads: Literal["llm", "classifier"] = "llm",
        use_content: bool = True,
        use_style: bool = True,
        use_cue: bool = True,
        num_style_questions: int = 3,
        style_question: StyleQuestionMode = "random",
        eval_style_question: Literal["illumination", "environment", "camera_quality"] = "illumination",
        style_seed: int = 0,
        loss_weights: tuple[float, float, float, float] = (0.4, 0.4, 0.15, 0.05),
        cue_noise: float = 0.5,
        cue_beta: float = 0.01,
        fusion_heads: int = 16,
        fusion_dim_head: int = 64,
        fusion_ffn_dim: int = 2048,
        fusion_layers: int = 1,
        fusion_causal: bool = True,
        fusion_dropout: float = 0.1,
        max_answer_tokens: int = 16,
        answer_questions: bool = False,
        classifier_norm: Literal["rewrite", "functional"] = "rewrite",
        dagger: Literal["project", "official"] = "project",
        lr: float = 5e-6,
        weight_decay: float = 1e-6,
        scheduler: SchedulerName = "onecycle",
        warmup_frac: float = 0.1,
    ):
        super().__init__()
        self.save_hyperparameters()
        if len(loss_weights) != 4:
            raise ValueError(f"loss_weights needs 4 values (content, style, cls, cue), got {list(loss_weights)}")
        if t5_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"t5_dtype must be auto, float32 or bfloat16, got {t5_dtype!r}")
        self.model = InstructFLIP(
            vision=vision, image_size=image_size, qformer=qformer, qformer_layers=qformer_layers,
            qformer_heads=qformer_heads, cross_attention_freq=cross_attention_freq, num_query_tokens=num_query_tokens,
            qformer_query_ffn_from_text=qformer_query_ffn_from_text, t5=t5, heads=heads, use_content=use_content,
            use_style=use_style, use_cue=use_cue, num_style_questions=num_style_questions,
            eval_style_question=eval_style_question, fusion_heads=fusion_heads, fusion_dim_head=fusion_dim_head,
            fusion_ffn_dim=fusion_ffn_dim, fusion_layers=fusion_layers, fusion_causal=fusion_causal,
            fusion_dropout=fusion_dropout, cue_noise=cue_noise, cue_beta=cue_beta, max_answer_tokens=max_answer_tokens,
            classifier_norm=classifier_norm, dagger=dagger,
        )
        for line in self.model.load_messages():  # what was mapped from the checkpoint and what starts random
            rank_zero_info(line)
        # validate the draw mode now, not at the first training step
        draw_style_questions(torch.zeros(1, dtype=torch.long), style_question, self.model.style_kinds)
        self.image_spec: ImageSpec = image_spec(vision, image_size=image_size)
        self.loss_weights = dict(zip(_TERMS, loss_weights, strict=True))
        self.style_question, self.style_seed = style_question, style_seed
        self.style_generator = torch.Generator().manual_seed(style_seed)
        self.t5_dtype, self.llm_free, self.answer_questions = t5_dtype, llm_free, answer_questions
        self.lr, self.weight_decay, self.scheduler, self.warmup_frac = lr, weight_decay, scheduler, warmup_frac
        self.strict_loading = False  # the frozen T5 is absent from checkpoints; load_state_dict checks the rest

    # -- T5 lifecycle -------------------------------------------------------------------------------------------------

    def _t5_torch_dtype(self) -> torch.dtype:
        if self.t5_dtype == "auto":
            on_gpu = self._trainer is not None and self.trainer.strategy.root_device.type == "cuda"
            return torch.bfloat16 if on_gpu else torch.float32
        return getattr(torch, self.t5_dtype)

    def load_t5(self) -> None:
        """Load the frozen T5 now (idempotent) and hide it from DDP's parameter broadcast."""
        if self.llm_free:
            raise RuntimeError("llm_free=True: the T5 is not loaded; set llm_free=False (and give `t5`) to train "
                               "with the LM losses or answer questions with the LLM")
        self.model.load_t5(self._t5_torch_dtype())
        self._ddp_params_and_buffers_to_ignore = [f"{_T5_PREFIX}{n}" for n, _ in self.model.t5.named_parameters()] + [
            f"{_T5_PREFIX}{n}" for n, _ in self.model.t5.named_buffers()]

    def setup(self, stage: str) -> None:
        self.style_generator.manual_seed(self.style_seed + self.global_rank)
        if self.model.needs_t5 and (stage == "fit" or (stage == "predict" and self.answer_questions)):
            self.load_t5()

    # -- steps --------------------------------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """LLM-free inference: ``{"score": P(attack) (B,), "logits": (B, 2), "cue_map": (B, 3, g, g)}``."""
        return self.model(pixel_values)

    def _shared_step(self, batch: dict, stage: str) -> dict[str, Any]:
        if stage == "train":
            kinds = draw_style_questions(batch["label"], self.style_question, self.model.style_kinds,
                                         self.style_generator) if self.model.style_qformer is not None else None
            terms = self.model.losses(batch, kinds)
            logits = terms.pop("logits")
            loss = sum(self.loss_weights[k] * v for k, v in terms.items())
            return {"loss": loss, "terms": terms, "logits": logits}
        out = self.model(batch["pixel_values"])
        return {"scores": out["score"], "logits": out["logits"], "out": out}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        res = self._shared_step(batch, "train")
        b = batch["label"].shape[0]
        self.log("train/loss", res["loss"], prog_bar=True, batch_size=b)
        for k, v in res["terms"].items():
            self.log(f"train/{k}", v, batch_size=b)
        acc = (res["logits"].argmax(dim=-1) == batch["label"]).float().mean()
        self.log("train/acc", acc, batch_size=b)
        return res["loss"]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        res = self._shared_step(batch, "val")
        if dataloader_idx == 0:  # the source validation set (FASDataModule puts it first)
            loss = F.cross_entropy(res["logits"].float(), batch["label"])
            self.log("val/loss", loss, batch_size=batch["label"].shape[0], add_dataloader_idx=False, sync_dist=True)
        return eval_output(res["scores"], batch)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return eval_output(self._shared_step(batch, "test")["scores"], batch)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"scores", "cue_map"?, "sample_id"?, "answers"?}``; answers only with ``answer_questions=True``."""
        res = self._shared_step(batch, "predict")
        pred: dict[str, Any] = {"scores": res["scores"].detach().float()}
        if "cue_map" in res["out"]:
            pred["cue_map"] = res["out"]["cue_map"].detach().float()
        if "sample_id" in batch:
            pred["sample_id"] = batch["sample_id"]
        if self.answer_questions:
            pred["answers"] = self.model.answer(batch["pixel_values"])
        return pred


    def save_pretrained(self, directory, *, threshold: float | None = None):
        """Hugging Face style directory: model.safetensors + config.json (``fasvlm.systems.common.save_pretrained``)."""
        return save_pretrained(self, directory, threshold=threshold)

    @classmethod
    def from_pretrained(cls, directory):
        """The system saved by :meth:`save_pretrained` or ``fasvlm export`` (``fasvlm.systems.common.from_pretrained``)."""
        return from_pretrained(directory, expected=cls)

    def configure_optimizers(self):
        return configure_adamw(self, self.lr, self.weight_decay, self.scheduler, self.warmup_frac)

    # -- checkpoints --------------------------------------------------------------------------------------------------

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Trainable state only: the frozen T5 (``model.t5.*``) is reloaded from ``hparams.t5``, never saved."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + _T5_PREFIX)]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load everything but the T5; any other missing or unexpected key is an error (a config mismatch, e.g. an
        ablation switch that differs from the checkpoint's)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(_T5_PREFIX)]
        unexpected = [k for k in result.unexpected_keys if not k.startswith(_T5_PREFIX)]
        if missing or unexpected:
            raise RuntimeError(
                f"InstructFLIP checkpoint does not match this model: missing {missing[:8]}"
                f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                f"{' ...' if len(unexpected) > 8 else ''}; build the system with the checkpoint's hyperparameters"
            )
        return result

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["style_generator"] = self.style_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "style_generator" in checkpoint:
            # rank 0's stream continues exactly; other ranks (the checkpoint holds rank 0's state only) re-derive theirs
            self.style_generator.set_state(checkpoint["style_generator"])
            if self.global_rank:
                step = int(checkpoint.get("global_step", 0))
                self.style_generator.manual_seed(self.style_seed + self.global_rank + 7919 * step)
