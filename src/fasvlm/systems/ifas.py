"""I-FAS LightningModule: answers from labels and captions, Lopsided LM loss, P(attack) scoring, explanations.

The typed ``__init__`` is the config schema (``model.init_args`` in ``conf/ifas/*.yaml``). Model maths live in
``fasvlm.models.ifas.IFAS``; this file owns the answers (judgment from the label, interpretation from the captions
table or the templates of ``fasvlm.text.prompts``), the loss, optimisation, logging and trainable-only checkpoints.

- ``training_step``: Lopsided LM loss (α = 0.7) or the standard LM loss; logs ``train/loss``, ``train/judgment``,
  ``train/interpretation``. Conversation batches (``questions`` + ``answers``, from
  ``fasvlm.data_modules.conversations.ConversationDataModule``) train multi-task: each sample gets its own question in the
  chat template; answers that start with a judgment ("Yes"/"No") take the Lopsided LM loss (judgment span exactly as
  in the single-task answers), the others the standard LM loss over their answer tokens; the batch loss is the
  sample-weighted mean of the two groups (``conversation_loss``), and logs ``train/judgment_fraction`` and
  ``train/other``.
- ``validation_step``: P(attack) for every loader; on loader 0 (the source validation set) also the loss → ``val/loss``
  from the same forward pass (the logits at the first answer position depend on the prompt only).
- ``test_step``: P(attack) in one forward pass, no generation.
- ``predict_step``: per image ``sample_id``, ``score`` (P(attack)), ``judgment``, ``explanation`` (greedy generation);
  ``fasvlm.callbacks.predictions.PredictionsWriter`` writes them as JSONL.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from fasvlm.backbones import ImageSpec, image_spec
from fasvlm.losses import lm_loss_terms, lopsided
from fasvlm.models.ifas import IFAS, DType, LLMMode, ScoreMode
from fasvlm.systems.common import SchedulerName, configure_adamw, eval_output, from_pretrained, save_pretrained
from fasvlm.text.prompts import (
    QUESTION,
    batch_captions,
    interpretation_for,
    judgment_for,
    load_captions,
    split_judgment,
)

__all__ = ["IFASSystem", "write_explanations", "split_judgment"]

class IFASSystem(L.LightningModule):
    """I-FAS (frozen CLIP → GAC → LLM) trained as VQA with the Lopsided LM loss.

    Args:
        vision: CLIP vision backbone: preset (tiny, small, clip-vit-b16, clip-vit-l14), local directory or hub id.
        llm: causal LM: preset (tiny, small, opt-2.7b), local directory or hub id.
        llm_mode: frozen | lora (peft adapters on ``lora_target_modules``) | full fine-tuning.
        num_queries: M learnable GAC queries (the L per-layer CLS tokens are added to them).
        gac_depth / gac_width / gac_heads / gac_mlp_ratio: GAC blocks; width and heads default to the vision encoder's.
        use_gac: False = "w/o GAC" ablation (M+L learnable queries, no per-layer CLS tokens).
        use_scf: False = judgment-only answers ("Yes."/"No."), no interpretation text.
        caption_source: ``scf`` (default): the interpretations come from the SCF captions table (``captions``, else
            the data config's ``captions``); a missing table is an error naming ``fasvlm caption scf``.
            ``templates``: captions composed from the attack type and style labels (tiny/CPU configs, ablations).
        captions: captions table (parquet/CSV/JSONL, columns sample_id, caption) from the SCF pipeline; None = the
            data config's (``data.init_args.captions``). Samples the table lacks (target domains) get the
            attack/style template of ``fasvlm.text.prompts.compose_caption`` (warned once).
        loss: lopsided (α·judgment + (1−α)·interpretation) | standard (mean CE over all answer tokens).
        alpha: α of the Lopsided LM loss.
        score: yes_prob (P("Yes") over the vocabulary) | yes_no_softmax (softmax over {Yes, No}); P(attack) = 1 − it.
        vision_dtype: dtype of the frozen vision encoder; auto = bfloat16 on CUDA, float32 on CPU.
        cache_vision_features: cache the frozen encoder's features of up to this many images (0 = off); useful only
            when no augmentation touches the images (``data.init_args.augment: false``).
        llm_dtype: dtype the LLM is loaded in (LoRA adapters stay float32); use float32 for full fine-tuning.
        max_answer_tokens: answers are truncated to this many tokens (judgment + interpretation + EOS).
        max_new_tokens: generation length of explanations (predict).
        lr, weight_decay, scheduler, warmup_frac: AdamW and its per-step schedule (paper: 1e-5, 1e-2).
    """

    def __init__(
        self,
        vision: str = "clip-vit-l14",
        llm: str = "opt-2.7b",
        llm_mode: LLMMode = "lora",
        num_queries: int = 32,
        gac_depth: int = 1,
        gac_width: int | None = None,
        gac_heads: int | None = None,
        gac_mlp_ratio: float = 4.0,
        use_gac: bool = True,
        use_scf: bool = True,
        captions: str | None = None,
        caption_source: Literal["scf", "templates"] = "scf",
        question: str = QUESTION,
        loss: Literal["lopsided", "standard"] = "lopsided",
        alpha: float = 0.7,
        score: ScoreMode = "yes_prob",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
        vision_dtype: DType = "auto",
        llm_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        max_answer_tokens: int = 64,
        max_new_tokens: int = 48,
        cache_vision_features: int = 0,
        lr: float = 1e-5,
        weight_decay: float = 1e-2,
        scheduler: SchedulerName = "cosine",
        warmup_frac: float = 0.1,
    ):
        super().__init__()
        if loss not in ("lopsided", "standard"):
            raise ValueError(f"unknown loss {loss!r}; valid: lopsided, standard")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if caption_source not in ("scf", "templates"):
            raise ValueError(f"caption_source must be 'scf' (the captions table of `fasvlm caption scf`) or "
                             f"'templates' (captions composed from the labels), got {caption_source!r}")
        self.save_hyperparameters()
        self.model = IFAS(vision=vision, llm=llm, llm_mode=llm_mode, num_queries=num_queries, gac_depth=gac_depth,
                          gac_width=gac_width, gac_heads=gac_heads, gac_mlp_ratio=gac_mlp_ratio, use_gac=use_gac,
                          question=question, score=score, lora_r=lora_r, lora_alpha=lora_alpha,
                          lora_dropout=lora_dropout, lora_target_modules=tuple(lora_target_modules),
                          vision_dtype=vision_dtype, llm_dtype=llm_dtype, max_answer_tokens=max_answer_tokens,
                          cache_vision_features=cache_vision_features)
        self.image_spec: ImageSpec = image_spec(vision)
        self.strict_loading = False  # checkpoints hold trainable weights only (state_dict below)
        self._captions: dict[str, str] | None = None
        self._missing_captions_warned = False

    # ------------------------------------------------------------------------------------------------------------
    # answers

    def captions_path(self) -> str | None:
        """The SCF captions table: ``captions``, else the data config's (``data.init_args.captions``)."""
        if self.hparams.captions is not None:
            return self.hparams.captions
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, "captions", None)

    def _caption_table(self) -> dict[str, str] | None:
        if self.hparams.caption_source == "templates" or not self.hparams.use_scf:
            return None
        if self._captions is None:
            path = self.captions_path()
            if path is None or not Path(path).is_file():
                where = f"{path} does not exist" if path is not None else "no captions table is named"
                raise FileNotFoundError(
                    f"I-FAS trains on SCF captions, but {where}. Write the table first: `fasvlm caption scf --config "
                    "conf/caption/scf.yaml --config conf/caption/scf_<protocol>.yaml --out runs/scf/<protocol>` writes <out>/captions.parquet; name "
                    "it in the data config (data.init_args.captions) or with --model.init_args.captions. Template "
                    "captions from the attack labels only when asked: --model.init_args.caption_source templates")
            self._captions = load_captions(path)
        return self._captions

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._caption_table()  # fail before the first step when the SCF table is missing

    def interpretations(self, batch: dict) -> list[str]:
        """Interpretation text per sample: ". This is {caption}" (captions table, else templates) or "." (no SCF)."""
        n = len(batch["label"])
        if not self.hparams.use_scf:
            return [interpretation_for(None)] * n
        captions, missing = batch_captions(batch, self._caption_table())
        out = [interpretation_for(c) for c in captions]
        if missing and not self._missing_captions_warned:
            self._missing_captions_warned = True
            warnings.warn(f"captions table {self.hparams.captions}: {missing} of {n} samples in a batch have no "
                          "caption; using the attack/style template for them (warned once)", stacklevel=2)
        return out

    def answers(self, batch: dict):
        """Tokenised answers of a batch (judgment from the label: 1 = attack → "No")."""
        judgments = [judgment_for(int(y)) for y in batch["label"].tolist()]
        return self.model.prompt.encode_answers(judgments, self.interpretations(batch))

    # ------------------------------------------------------------------------------------------------------------
    # conversations (multi-task)

    def conversation_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Multi-task loss: Lopsided (or standard, per ``loss``) over the judgment rows, standard LM loss over the
        other rows, weighted by their numbers of samples."""
        logits, labels, judgment, has_j = self.model.conversation_forward(batch["pixel_values"], list(batch["questions"]),
                                                                    list(batch["answers"]))
        b = len(has_j)
        zero = logits.sum() * 0.0
        terms = {"judgment": zero, "interpretation": zero, "other": zero,
                 "judgment_fraction": has_j.float().mean()}
        loss = zero
        if has_j.any():
            t = lm_loss_terms(logits[has_j], labels[has_j], judgment[has_j])
            group = lopsided(t, self.hparams.alpha) if self.hparams.loss == "lopsided" else t["all"]
            terms["judgment"], terms["interpretation"] = t["judgment"], t["interpretation"]
            loss = loss + group * has_j.sum() / b
        if (~has_j).any():
            other = lm_loss_terms(logits[~has_j], labels[~has_j], judgment[~has_j])["all"]
            terms["other"] = other
            loss = loss + other * (~has_j).sum() / b
        terms["loss"] = loss
        return terms

    # ------------------------------------------------------------------------------------------------------------
    # steps

    def _shared_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Loss terms and P(attack) from one teacher-forced forward pass (conversation batches: the multi-task loss;
        the score then comes from a separate pass with the I-FAS question)."""
        if "answers" in batch:
            terms = self.conversation_loss(batch)
            with torch.no_grad():
                scores = self.model(batch["pixel_values"])
            return terms, scores
        out = self.model.lm_forward(batch["pixel_values"], self.answers(batch))
        terms = lm_loss_terms(out.logits, out.labels, out.judgment_mask)
        terms["loss"] = lopsided(terms, self.hparams.alpha) if self.hparams.loss == "lopsided" else terms["all"]
        return terms, self.model.attack_score(out.logits[:, 0])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(attack) (B,)."""
        return self.model(pixel_values)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        b = len(batch["label"])
        terms = self.conversation_loss(batch) if "answers" in batch else self._shared_step(batch)[0]
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=b)
        self.log("train/judgment", terms["judgment"], batch_size=b)
        self.log("train/interpretation", terms["interpretation"], batch_size=b)
        if "answers" in batch:
            self.log("train/other", terms["other"], batch_size=b)
            self.log("train/judgment_fraction", terms["judgment_fraction"], batch_size=b)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        if dataloader_idx == 0:
            terms, scores = self._shared_step(batch)
            self.log("val/loss", terms["loss"], batch_size=len(batch["label"]), add_dataloader_idx=False,
                     sync_dist=True)
        else:
            scores = self.model(batch["pixel_values"])
        return eval_output(scores, batch)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return eval_output(self.model(batch["pixel_values"]), batch)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image: sample_id, domain, score = P(attack), judgment ("Yes"/"No"), explanation (generated)."""
        rows = self.model.explain(batch["pixel_values"], max_new_tokens=self.hparams.max_new_tokens)
        n = len(rows)
        ids = batch.get("sample_id") or [None] * n
        domains = batch.get("domain") or [None] * n
        return [{"sample_id": s, "domain": d, **r} for s, d, r in zip(ids, domains, rows)]

    # ------------------------------------------------------------------------------------------------------------
    # optimisation and checkpoints


    def save_pretrained(self, directory, *, threshold: float | None = None):
        """Hugging Face style directory: model.safetensors + config.json (``fasvlm.systems.common.save_pretrained``)."""
        return save_pretrained(self, directory, threshold=threshold)

    @classmethod
    def from_pretrained(cls, directory):
        """The system saved by :meth:`save_pretrained` or ``fasvlm export`` (``fasvlm.systems.common.from_pretrained``)."""
        return from_pretrained(directory, expected=cls)

    def configure_optimizers(self):
        return configure_adamw(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.scheduler,
                               self.hparams.warmup_frac)

    def state_dict(self, *args, **kwargs):
        """Trainable tensors only: GAC, projection, LoRA adapters or the fully tuned LLM.

        The frozen vision encoder and frozen LLM weights are reloaded from ``vision``/``llm`` (hyper-parameters) and
        never copied into checkpoints. Keys are deleted in place, so this also holds when a wrapper (DDP) calls it.
        """
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        trainable = {prefix + name for name, p in self.named_parameters() if p.requires_grad}
        frozen_roots = (prefix + "model.vision.", prefix + "model.llm.")
        for key in [k for k in state if k.startswith(frozen_roots) and k not in trainable]:
            del state[key]
        return state


def write_explanations(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write predict_step rows as JSONL (sample_id, domain, score, judgment, explanation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path
