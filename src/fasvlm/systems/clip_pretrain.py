"""Contrastive image-text pretraining of a (tiny) CLIP on captioned face images, exported with ``save_pretrained``.

Why it exists: I-FAS keeps its CLIP encoder frozen and relies on what pretraining put into it. A real CLIP has seen
web-scale image-text pairs (prints, screens, masks among them); a ``tiny`` preset is random, and a frozen random
encoder is a poor feature extractor (a linear probe on it reaches 0.81 AUC on the synthetic source domain). This system
gives the tiny I-FAS configs a *pretrained* tiny CLIP, trained on a synthetic domain of its own (``synth_pretrain``:
identities disjoint from every evaluation domain), with template captions (:func:`~fasvlm.text.prompts.compose_caption`)
or a captions table. It works unchanged on real data and on a real CLIP directory (continued pretraining).

Note what this is: the captions name the presentation attack, so the encoder learns spoof cues from labelled pairs
(of other subjects), as a real CLIP learns them from web captions. Results of models that use such an encoder say so.

Loss: the symmetric CLIP cross entropy of ``CLIPModel`` (its ``logits_per_image`` and learnable temperature), with one
change written here by hand: captions repeat within a batch (a live face "captured indoors under normal light" is
common), so the targets spread each row over every pair with the same caption instead of the diagonal alone
(``CLIPModel(return_loss=True)`` has no such option).

Validation/test score the images zero-shot, P(attack) = 1 - softmax over the 11 CelebA-Spoof classes' prompts of the
live prompt's probability, so the metrics callbacks report how well the encoder separates live from attack.

Usage (see ``conf/clip/tiny_pretrain.yaml``)::

    fasvlm synth --out data/pretrain --preset pretrain
    fasvlm fit --config conf/clip/tiny_pretrain.yaml        # writes data/tiny_clip (CLIPModel + tokenizer + processor)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from fasvlm.backbones import ImageSpec, load_clip, save_clip
from fasvlm.data_modules.taxonomy import CELEBA_SPOOF_TYPES
from fasvlm.systems.common import ImageScoringSystem, SchedulerName, eval_output, from_pretrained, save_pretrained
from fasvlm.text.prompts import batch_captions, compose_caption, load_captions

__all__ = ["CLIPPretrainSystem", "multi_positive_clip_loss"]

log = logging.getLogger(__name__)


def multi_positive_clip_loss(logits_per_image: torch.Tensor, groups: list[str]) -> torch.Tensor:
    """Symmetric CLIP cross entropy where every pair with the same caption is a positive.

    logits_per_image (B, B) scaled similarities (image i, text j); ``groups`` the B captions. Each row's target is
    uniform over the columns whose caption equals row i's (the diagonal alone when captions are unique: CLIP's loss).
    """
    ids = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    g = torch.tensor([ids[x] for x in groups], device=logits_per_image.device)
    same = (g[:, None] == g[None, :]).float()  # (B, B), symmetric
    targets = same / same.sum(1, keepdim=True)
    logits = logits_per_image.float()
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


class CLIPPretrainSystem(ImageScoringSystem):
    """CLIP contrastive pretraining on FAS images and their captions.

    Args:
        clip: CLIP preset (``tiny``), local ``CLIPModel`` directory or hub id.
        vision: another vision preset for the image tower of a CLIP preset (e.g. ``small``).
        image_size: input size of a preset's image tower (default: the vision preset's).
        captions: captions table (``sample_id``, ``caption``; parquet/csv/jsonl/json, e.g. from ``fasvlm caption
            scf``). Samples missing from it, or every sample when None, get the template caption of their attack type
            and capture conditions.
        max_text_tokens: captions are truncated to this many tokens.
        export_dir: where the trained CLIP is written with ``save_pretrained`` at the end of ``fit`` (rank 0), the
            directory ``IFASSystem(vision=...)`` and ``BaselineSystem(vision=...)`` load. None: not exported.
        lr, weight_decay, scheduler, warmup_frac: AdamW and its per-step schedule.
    """

    def __init__(self, clip: str = "tiny", vision: str | None = None, image_size: int | None = None,
                 captions: str | None = None, max_text_tokens: int = 64, export_dir: str | None = None,
                 lr: float = 2e-3, weight_decay: float = 0.05, scheduler: SchedulerName = "cosine",
                 warmup_frac: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model, self.tokenizer = load_clip(clip, vision=vision, image_size=image_size)
        vcfg = self.model.config.vision_config
        self.image_spec = ImageSpec(size=vcfg.image_size)
        self.class_prompts = [compose_caption(a) for a in CELEBA_SPOOF_TYPES]  # index 0: live
        self._captions: dict[str, str] | None = None
        self._class_embeds: torch.Tensor | None = None

    # -- text -----------------------------------------------------------------------------------------------------

    def captions_for(self, batch: dict) -> list[str]:
        if self.hparams.captions is not None and self._captions is None:
            self._captions = load_captions(self.hparams.captions)
        return batch_captions(batch, self._captions)[0]

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.hparams.max_text_tokens,
                             return_tensors="pt")
        if (enc["input_ids"] == self.tokenizer.eos_token_id).sum(1).min() == 0:  # truncated: keep the pooled token
            enc["input_ids"][:, -1] = torch.where(enc["attention_mask"][:, -1].bool(), self.tokenizer.eos_token_id,
                                                  enc["input_ids"][:, -1])
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    # -- scoring --------------------------------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Zero-shot P(attack) for each image, (B,): 1 - P(live prompt) among the 11 class prompts."""
        if self._class_embeds is None or self.training:
            text = self.model.get_text_features(**self._tokens(self.class_prompts))
            self._class_embeds = F.normalize(getattr(text, "pooler_output", text).float(), dim=-1)
        image = self.model.get_image_features(pixel_values=pixel_values)
        image = F.normalize(getattr(image, "pooler_output", image).float(), dim=-1)
        logits = self.model.logit_scale.exp().float() * image @ self._class_embeds.t()  # (B, 11)
        return 1.0 - logits.softmax(-1)[:, 0]

    def contrastive_loss(self, batch: dict) -> torch.Tensor:
        texts = self.captions_for(batch)
        out = self.model(pixel_values=batch["pixel_values"], **self._tokens(texts))
        return multi_positive_clip_loss(out.logits_per_image, texts)

    # -- Lightning hooks ------------------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.contrastive_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        self.log("train/temperature", 1.0 / self.model.logit_scale.exp().detach(), batch_size=len(batch["label"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._class_embeds = None  # the text tower changed since the last evaluation

    on_test_epoch_start = on_predict_epoch_start = on_validation_epoch_start

    def eval_step(self, batch: dict, stage: str, dataloader_idx: int) -> dict:
        if dataloader_idx == 0 and len(batch["label"]) > 1:  # the source loader: held-out contrastive loss
            self.log(f"{stage}/loss", self.contrastive_loss(batch), batch_size=len(batch["label"]),
                     add_dataloader_idx=False, sync_dist=True)
        return eval_output(self(batch["pixel_values"]), batch)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            path = self.export(self.hparams.export_dir)
            log.info("pretrained CLIP written to %s", path)
            print(f"pretrained CLIP (final weights) written to {path}", flush=True)
        self.trainer.strategy.barrier("clip_export")

    def export(self, out: str | Path) -> Path:
        """Write the CLIP as it is now (``save_pretrained`` + tokenizer + image processor) to ``out``."""
        return save_clip(self.model, self.tokenizer, self.image_spec.size, out)


    def save_pretrained(self, directory, *, threshold: float | None = None):
        """Hugging Face style directory: model.safetensors + config.json (``fasvlm.systems.common.save_pretrained``)."""
        return save_pretrained(self, directory, threshold=threshold)

    @classmethod
    def from_pretrained(cls, directory):
        """The system saved by :meth:`save_pretrained` or ``fasvlm export`` (``fasvlm.systems.common.from_pretrained``)."""
        return from_pretrained(directory, expected=cls)
