"""Hugging Face model wrappers of the ``fasvlm caption`` pipelines, as Lightning predict/train modules.

- :class:`ImageTextModel`: any image(-text)-to-text model (BLIP-2, LLaVA, VisionEncoderDecoder ...): captions in
  ``predict_step``, the captioning LM loss in ``training_step`` (SCF stage 3).
- :class:`CLIPScorer`: CLIP image-text cosine similarity (instruction-data filtering).
- :class:`CausalLMModel`: a causal LM that generates text or judges with P("Yes")/P("No").
- ``build_tiny_*``: tiny random models written with ``save_pretrained`` for tests and the CPU demo.

Every loader goes through :func:`load_hf`: a local ``save_pretrained`` directory or a hub id, with an error that says
what to do offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import Dataset

__all__ = [
    "load_hf",
    "torch_dtype",
    "load_image_text_model",
    "load_image_text_processor",
    "ImageTextCollate",
    "ImageTextModel",
    "CLIPScorer",
    "CausalLMModel",
    "TextItems",
    "build_tiny_blip2",
    "build_tiny_clip",
    "build_tiny_llm",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face image-to-text models


def load_hf(loader, name: str, what: str, **kwargs):
    """``loader(name)`` from a local directory or hub id, with an error that says what to do offline."""
    path = Path(name).expanduser()
    if path.exists():
        return loader(str(path), local_files_only=True, **kwargs)
    if name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{what} directory not found: {name} (expected a save_pretrained directory)")
    try:
        return loader(name, **kwargs)
    except OSError as err:
        raise OSError(f"cannot load {what} {name!r} ({type(err).__name__}: {err}). With no network (HF_HUB_OFFLINE=1) "
                      "download it elsewhere (`huggingface-cli download ID --local-dir DIR`) and pass the local "
                      "directory instead.") from err


def load_image_text_model(name: str, dtype: torch.dtype | None = None):
    """Any Hugging Face image(-text)-to-text model (BLIP-2, LLaVA, VisionEncoderDecoder, ...) by id or directory."""
    from transformers import AutoModelForImageTextToText

    kwargs = {"dtype": dtype} if dtype is not None else {}
    return load_hf(AutoModelForImageTextToText.from_pretrained, name, "image-to-text model", **kwargs)


class _PairProcessor:
    """Image processor + tokenizer for models saved without a processor (VisionEncoderDecoder checkpoints)."""

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer
        self.chat_template = None

    def __call__(self, images=None, text=None, padding=False, return_tensors="pt"):
        out = dict(self.image_processor(images, return_tensors=return_tensors)) if images is not None else {}
        if text is not None:
            out.update(self.tokenizer(text, padding=padding, return_tensors=return_tensors))
        return out

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def load_image_text_processor(name: str):
    """The model's processor (``AutoProcessor``), or its image processor + tokenizer when it has no processor."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    proc = load_hf(AutoProcessor.from_pretrained, name, "processor")
    if hasattr(proc, "image_processor") and hasattr(proc, "tokenizer"):
        return proc
    return _PairProcessor(load_hf(AutoImageProcessor.from_pretrained, name, "image processor"),
                          load_hf(AutoTokenizer.from_pretrained, name, "tokenizer"))


def _format_prompt(processor, prompt: str) -> str:
    """A chat MLLM's processor template around the prompt (with one image slot); the raw prompt otherwise (BLIP-2)."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    return prompt


class ImageTextCollate:
    """Processor call for a batch of :class:`ImageItems` samples (picklable: runs in dataloader workers).

    ``generate``: image + prompt (``item["prompt"]`` or the default), left-padded. ``train``: image + prompt + target
    text (``item[target_key]``) + EOS, right-padded, with ``labels`` = -100 on image, prompt and padding positions
    (decoder-only models, BLIP-2 style), or target-token labels for encoder-decoder models.
    """

    def __init__(self, processor, prompt: str = "", mode: Literal["generate", "train"] = "generate",
                 target_key: str = "caption", encoder_decoder: bool = False, image_token_id: int | None = None):
        self.processor, self.prompt, self.mode = processor, prompt, mode
        self.target_key, self.encoder_decoder, self.image_token_id = target_key, encoder_decoder, image_token_id

    def _texts(self, items: list[dict]) -> list[str]:
        return [_format_prompt(self.processor, it.get("prompt", self.prompt)) for it in items]

    def __call__(self, samples: list[dict]) -> dict:
        ok = [s for s in samples if s["image"] is not None]
        failed = [{**s["item"], "error": s["error"]} for s in samples if s["image"] is None]
        batch: dict[str, Any] = {"items": [s["item"] for s in ok], "failed": failed, "inputs": {}}
        if not ok:
            return batch
        images = [s["image"] for s in ok]
        tok = self.processor.tokenizer
        if self.encoder_decoder:
            if any(t for t in self._texts(batch["items"])):
                raise ValueError("prompts are not supported for encoder-decoder captioners; set the prompt to ''")
            inputs = dict(self.processor(images=images, return_tensors="pt"))
            inputs.pop("input_ids", None)
            inputs.pop("attention_mask", None)
            if self.mode == "train":
                eos = tok.eos_token or ""
                tok.padding_side = "right"
                # no BOS: the decoder starts from decoder_start_token_id; EOS teaches it to stop
                enc = tok([str(it[self.target_key]) + eos for it in batch["items"]], padding=True,
                          add_special_tokens=False, return_tensors="pt")
                inputs["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            batch["inputs"] = inputs
            return batch
        prompts = self._texts(batch["items"])
        if self.mode == "generate":
            tok.padding_side = "left"
            batch["inputs"] = dict(self.processor(images=images, text=prompts, padding=True, return_tensors="pt"))
            return batch
        # train: prompt + target + EOS; loss on the target tokens only
        eos = tok.eos_token or ""
        full = [_join(p, str(it[self.target_key])) + eos for p, it in zip(prompts, batch["items"])]
        tok.padding_side = "right"
        inputs = dict(self.processor(images=images, text=full, padding=True, return_tensors="pt"))
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        labels = ids.masked_fill(mask == 0, -100)
        if self.image_token_id is not None:
            labels = labels.masked_fill(ids == self.image_token_id, -100)
        # the prompt part of each row is what the processor makes of the prompt alone (image placeholders, chat
        # template, BOS): mask the longest common prefix (BPE may merge across the prompt/target boundary)
        alone = self.processor(images=images, text=prompts, padding=True, return_tensors="pt")
        for i in range(len(full)):
            p_ids = alone["input_ids"][i][alone["attention_mask"][i].bool()]
            n = 0
            while n < min(len(p_ids), ids.shape[1]) and p_ids[n] == ids[i, n]:
                n += 1
            labels[i, :n] = -100
        inputs["labels"] = labels
        batch["inputs"] = inputs
        return batch


def _join(prompt: str, text: str) -> str:
    if not prompt:
        return text
    return prompt + ("" if prompt.endswith((" ", "\n")) else " ") + text


class ImageTextModel(L.LightningModule):
    """A Hugging Face image-to-text model in Lightning: greedy/beam generation in ``predict_step`` (one row per item:
    its metadata + ``output_key``), captioning LM loss in ``training_step``.

    Checkpoints hold the trainable parameters only (``trainable`` prefixes, e.g. BLIP-2's Q-Former); the rest is
    reloaded from ``model``.
    """

    def __init__(self, model: str, output_key: str = "caption", max_new_tokens: int = 30, num_beams: int = 1,
                 dtype: str = "float32", trainable: list[str] | None = None, lr: float = 1e-5,
                 weight_decay: float = 0.05, scheduler: str = "cosine", warmup_frac: float = 0.1,
                 generate_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = load_image_text_model(model, _DTYPES[dtype])
        self.processor = load_image_text_processor(model)
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        if trainable is not None:
            self.model.requires_grad_(False)
            hits = 0
            for name, param in self.model.named_parameters():
                if any(name == p or f".{p}." in f".{name}." for p in trainable):
                    param.requires_grad_(True)
                    hits += 1
            if not hits:
                top = sorted({n.split(".")[0] for n, _ in self.model.named_parameters()})
                raise ValueError(f"finetune.trainable {trainable} matches no parameter of {model}; top-level modules: "
                                 f"{top} (null trains everything)")
        self.strict_loading = False

    @property
    def image_token_id(self) -> int | None:
        cfg = self.model.config
        return getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)

    def collate(self, prompt: str = "", mode: Literal["generate", "train"] = "generate",
                target_key: str = "caption") -> ImageTextCollate:
        return ImageTextCollate(self.processor, prompt=prompt, mode=mode, target_key=target_key,
                                encoder_decoder=self.encoder_decoder, image_token_id=self.image_token_id)

    def _inputs(self, batch: dict) -> dict:
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(dtype) if torch.is_floating_point(v) else v) for k, v in batch["inputs"].items()}

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        rows = [{**it, self.hparams.output_key: None} for it in batch["failed"]]
        if not batch["items"]:
            return rows
        inputs = self._inputs(batch)
        kwargs = dict(max_new_tokens=self.hparams.max_new_tokens, num_beams=self.hparams.num_beams, do_sample=False)
        kwargs.update(self.hparams.generate_kwargs or {})
        out = self.model.generate(**inputs, **kwargs)
        prompt = inputs.get("input_ids")
        if prompt is not None and out.shape[1] >= prompt.shape[1] and torch.equal(out[:, : prompt.shape[1]], prompt):
            out = out[:, prompt.shape[1]:]  # decoder-only models return the prompt too
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        rows += [{**it, self.hparams.output_key: t.strip()} for it, t in zip(batch["items"], texts)]
        return rows

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if not batch["items"]:
            raise RuntimeError(f"a training batch has no readable image ({len(batch['failed'])} failed)")
        loss = self.model(**self._inputs(batch)).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["items"]))
        return loss

    def configure_optimizers(self):
        from fasvlm.systems.common import configure_adamw

        return configure_adamw(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.scheduler,
                               self.hparams.warmup_frac)

    def state_dict(self, *args, **kwargs):
        """Trainable tensors only (frozen weights are reloaded from ``model``)."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        trainable = {prefix + n for n, p in self.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trainable]:
            del state[key]
        return state

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return path


def build_tiny_blip2(path: str | Path, image_size: int = 32, num_query_tokens: int = 4, seed: int = 0) -> Path:
    """A tiny random BLIP-2 (2-layer ViT width 32, 2-layer Q-Former, 2-layer OPT) + its processor, written with
    ``save_pretrained``: the project's built-in byte-level BPE tokenizer with BLIP-2's ``<image>`` placeholder token
    (transformers >= 4.47 expects ``num_query_tokens`` of them in ``input_ids``) and a small BLIP image processor."""
    import copy

    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
    )

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor as ImageProcessor

    from fasvlm.backbones import load_tokenizer

    tok = copy.deepcopy(load_tokenizer("tiny", "causal_lm"))  # the built-in one is shared (cached): never mutate it
    processor = Blip2Processor(ImageProcessor(size={"height": image_size, "width": image_size}), tok,
                               num_query_tokens=num_query_tokens)  # adds the "<image>" token to the tokenizer
    image_token = tok.convert_tokens_to_ids("<image>")
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=image_size, patch_size=8)
    qformer = Blip2QFormerConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, cross_attention_frequency=1)
    text = OPTConfig(vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                     word_embed_proj_dim=32, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                         num_query_tokens=num_query_tokens, image_token_index=image_token)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path

# ---------------------------------------------------------------------------------------------------------------------
# models (Lightning predict modules)


def torch_dtype(name: str) -> torch.dtype:
    """A torch dtype from its name; "auto" is bfloat16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class _ClipCollate:
    def __init__(self, image_processor, tokenizer, max_length: int):
        self.image_processor, self.tokenizer, self.max_length = image_processor, tokenizer, max_length

    def __call__(self, samples: list[dict]) -> dict:
        ok = [s for s in samples if s["image"] is not None]
        batch = {"items": [s["item"] for s in ok], "failed": [{**s["item"], "error": s["error"]}
                                                             for s in samples if s["image"] is None], "inputs": {}}
        if ok:
            pixels = self.image_processor([s["image"] for s in ok], return_tensors="pt")["pixel_values"]
            self.tokenizer.padding_side = "right"
            text = self.tokenizer([s["item"]["text"] for s in ok], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
            batch["inputs"] = {"pixel_values": pixels, "input_ids": text["input_ids"],
                               "attention_mask": text["attention_mask"]}
        return batch


def _pooled(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class CLIPScorer(L.LightningModule):
    """CLIP image-text cosine similarity per item (``item["path"]`` image, ``item["text"]``) -> ``clip_score``."""

    def __init__(self, model: str, dtype: str = "auto"):
        super().__init__()
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.model = load_hf(CLIPModel.from_pretrained, model, "CLIP model", dtype=torch_dtype(dtype)).eval()
        self.image_processor = load_hf(AutoImageProcessor.from_pretrained, model, "CLIP image processor")
        self.tokenizer = load_hf(AutoTokenizer.from_pretrained, model, "CLIP tokenizer")
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    def collate(self) -> _ClipCollate:
        return _ClipCollate(self.image_processor, self.tokenizer, self.max_length)

    @torch.no_grad()
    def similarity(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of matching rows (B,)."""
        dtype = next(self.model.parameters()).dtype
        img = _pooled(self.model.get_image_features(pixel_values=pixel_values.to(dtype))).float()
        txt = _pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)).float()
        return torch.nn.functional.cosine_similarity(img, txt, dim=-1)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        rows = [{"key": it["key"], "clip_score": float("nan")} for it in batch["failed"]]
        if batch["items"]:
            sims = self.similarity(**batch["inputs"]).tolist()
            rows += [{"key": it["key"], "clip_score": s} for it, s in zip(batch["items"], sims)]
        return rows


class TextItems(Dataset):
    def __init__(self, items: Sequence[dict]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class _TextCollate:
    """Chat template (when the tokenizer has one), left padding, prompts cut from the left to ``max_length``."""

    def __init__(self, tokenizer, max_length: int | None = None):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[dict]) -> dict:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template([{"role": "user", "content": it["prompt"]}], tokenize=False,
                                             add_generation_prompt=True) for it in items]
        else:
            texts = [it["prompt"] for it in items]
        tok.padding_side, tok.truncation_side = "left", "left"
        enc = tok(texts, padding=True, return_tensors="pt", truncation=self.max_length is not None,
                  max_length=self.max_length)
        return {"items": items, "inputs": {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}}


class CausalLMModel(L.LightningModule):
    """A causal LM (preset, directory or hub id) for ``generate`` (text -> ``text``) or ``judge`` (P("Yes") and
    P("No") as the next token -> ``p_yes``, ``p_no``), batched with left padding."""

    def __init__(self, model: str, mode: Literal["generate", "judge"] = "generate", max_new_tokens: int = 256,
                 dtype: str = "auto"):
        super().__init__()
        from fasvlm.backbones import load_causal_lm, load_tokenizer

        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.model = load_causal_lm(model, torch_dtype=torch_dtype(dtype)).eval()
        self.tokenizer = load_tokenizer(model, "causal_lm")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.yes_ids = self._first_tokens(("Yes", " Yes", "yes", " yes"))
        self.no_ids = self._first_tokens(("No", " No", "no", " no"))
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"tokenizer of {model}: 'Yes' and 'No' start with the same token; cannot judge")

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        ids = {self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words}
        return sorted(ids)

    def collate(self) -> _TextCollate:
        """Prompts longer than the model's context (minus the generated tokens) lose their beginning."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        room = None if context is None else context - (self.max_new_tokens if self.mode == "generate" else 0)
        return _TextCollate(self.tokenizer, room)

    @torch.no_grad()
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        inputs = batch["inputs"]
        if self.mode == "judge":
            logits = self.model(**inputs).logits[:, -1].float()  # left padding: the last position is the reply slot
            probs = logits.softmax(-1)
            p_yes = probs[:, self.yes_ids].sum(-1).tolist()
            p_no = probs[:, self.no_ids].sum(-1).tolist()
            return [{"key": it["key"], "p_yes": y, "p_no": n} for it, y, n in zip(batch["items"], p_yes, p_no)]
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [{"key": it["key"], "text": t.strip()} for it, t in zip(batch["items"], texts)]


# ---------------------------------------------------------------------------------------------------------------------
# tiny models for tests and the CPU demo


def build_tiny_clip(path: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` (2 layers, width 32) + CLIP image processor + the built-in BPE tokenizer,
    written with ``save_pretrained``."""
    from transformers import CLIPConfig, CLIPModel

    from fasvlm.backbones import load_tokenizer, save_clip

    tok = load_tokenizer("tiny", "causal_lm")
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=len(tok), max_position_embeddings=77, pad_token_id=tok.pad_token_id,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **common),
                        vision_config=dict(image_size=image_size, patch_size=8, **common), projection_dim=32)
    torch.manual_seed(seed)
    return save_clip(CLIPModel(config), tok, image_size, path)


def build_tiny_llm(path: str | Path, seed: int = 0) -> Path:
    """The ``tiny`` OPT preset + the built-in tokenizer, written with ``save_pretrained`` (a stand-in LLM)."""
    from fasvlm.backbones import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    path = Path(path)
    load_causal_lm("tiny").save_pretrained(path)
    load_tokenizer("tiny", "causal_lm").save_pretrained(path)
    return path
