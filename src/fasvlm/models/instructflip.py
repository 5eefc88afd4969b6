"""InstructFLIP (Lin et al., ACM MM 2025): instruction-tuned content/style Q-Formers, query fusion, LLM-free inference.

Plain ``nn.Module`` (no Lightning). Follows the published code (``kunkunlin1221/InstructFLIP``,
``src/models/instruct_flip/instruct_flip.py``; reference notes §1), without its bugs:

* Vision: a CLIP ViT (B/16 by default), fine-tuned, CLIP normalisation. Content feature ``f_c`` = post-LayerNorm of
  all 1+N tokens; style feature ``f_s`` = token mean and (unbiased) std of the residual stream after every block,
  stacked ``(mean_1, std_1, mean_2, ...)`` -> (B, 2L, d) (paper §3.2, code ``_forward_image_embeds``).
* Two instruction-aware Q-Formers (:mod:`fasvlm.models.qformer`): the content one reads ``f_c``, the style one ``f_s``.
* Instruction tuning (paper §3.3): the query outputs go through one shared ``t5_proj`` (as the code; one Linear for both
  branches) to the frozen FLAN-T5's width, followed by the instruction's T5 embeddings, into the T5 encoder; T5 cross
  entropy on the option string. Samples without a label for their question are left out of that loss.
* Query fusion (code ``FusionModule``): content tokens -> MPT-style self-attention (fused Wqkv, q/k LayerNorm, no
  pre-LN, *causal* as the code's default) -> cross-attention to the concatenated queries (pre-LN, LN on the context,
  a learned null key/value, Linear+LN out) -> FFN (LN, Linear, GELU, Linear, Dropout) with no residual around it.
* Heads: classifier (Linear with column-L2-normalised weight) on the fused CLS token -> 2 logits, P(attack) =
  softmax[:, 1]; cue generator conv3x3 -> ReLU -> conv3x3 on the sqrt(N) x sqrt(N) patch grid -> 3-channel cue map,
  SmoothL1(beta) to an all-0 (live) / all-1 (attack) map. In training, Gaussian noise (sigma ``cue_noise``) is added
  to the fused *patch* tokens of attack samples only, after fusion; the classifier input is noise-free.
* Loss (code ``loss_weights: [0.4, 0.4, 0.15, 0.05]``): 0.4 content-LM + 0.4 style-LM + 0.15 cls + 0.05 cue.

Differences from the code, on purpose: CLIP (not ImageNet) normalisation; fixed evaluation questions (the code draws
the style question at random at test time);
the T5 runs in bf16 (GPU) or fp32 (CPU) rather than 4-bit; T5's ``dense_act_fn`` is kept as the checkpoint says.
The classifier's weight normalisation is the code's update rule (:class:`NormLinear`, ``classifier_norm``).

Variants: ``heads="classifier"`` is InstructFLIP-dagger (classification heads on the queries instead of the LLM, no T5).
Its default reading (``dagger="project"``) departs from the published no-LLM ablation
(``src/models/instruct_flip/ablation/instruct_flip_no_llm.py``) in three ways: it pools the *mean* of the 32 queries
(the code: query 0), its heads are plain ``Linear`` (the code: the weight-normalised ``Classifier``), and it has one
head per style question (the code: one ``style_head`` over all style options, 5+3+3 = 11 outputs there; here the
active questions' options, 4+2+3). ``dagger="official"`` gives the code's reading (query 0, normalised heads, one
style head over the concatenated style options, argmax within the asked question's options when answering). The
published ablation cannot be constructed as released (its ``_build_model`` signature does not match the parent's
call, reference notes §1.11) and its data side defines no ``style_label``, so the 11-way head's classes are not
recoverable. Both readings feed the Q-Formers the instructions, as that code does (``batch['content_input']``,
``batch['style_input']``).
``use_content`` / ``use_style`` / ``use_cue`` / ``num_style_questions`` remove a loss term and its parameters; with
neither branch the classifier and cue generator read ``f_c`` directly (the paper's CLIP baseline row).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fasvlm.backbones import T5_PRESETS, BackboneNotFoundError, is_preset, load_t5, load_tokenizer, load_vision_encoder
from fasvlm.models.qformer import QFormer, QFormerLoadReport, qformer_bert_config, qformer_tokenizer_path
from fasvlm.text.instructions import OPTIONS, QUESTION_KINDS, STYLE_KINDS, instruction

__all__ = ["InstructFLIP", "FusionBlock", "CueGenerator", "NormLinear", "StyleQuestionMode", "draw_style_questions",
           "kind_id"]

StyleQuestionMode = Literal["scene_or_quality", "published", "random", "illumination", "environment",
                            "camera_quality", "paper"]
_DEPRECATED_MODES = {"paper": "scene_or_quality"}  # old name -> new name
StyleKindName = Literal["illumination", "environment", "camera_quality"]


def kind_id(kind: str) -> int:
    """Global question id: 0 content, 1 illumination, 2 environment, 3 camera_quality (``QUESTION_KINDS`` order)."""
    return QUESTION_KINDS.index(kind)


_ANSWER_OFFSET = [0]
for _k in QUESTION_KINDS[:-1]:
    _ANSWER_OFFSET.append(_ANSWER_OFFSET[-1] + len(OPTIONS[_k]))
_ALL_ANSWERS = [opt for k in QUESTION_KINDS for opt in OPTIONS[k]]


def draw_style_questions(label: torch.Tensor, mode: str, kinds: tuple[str, ...],
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Which style question each training sample gets -> global question ids (B,) on CPU.

    ``scene_or_quality``: attacks get illumination or environment at random, live faces camera quality (they have no
    illumination/environment label); the project's rule, not the paper's (the paper does not say how questions are
    drawn); ``paper`` is its deprecated old name. ``published``: attacks draw among all style questions, live faces camera quality
    (the code's ``choice(style_keys) if is_fake else 'camera quality'``). ``random``: every sample draws among all
    active style questions, independent of its label. A question name: every sample gets that one. Only ``kinds``
    (the active style questions) are drawn; a sample whose rule leaves none draws among all active ones. Note that
    ``scene_or_quality``/``published`` make the question depend on the label, which the fusion classifier can read.
    """
    if mode in _DEPRECATED_MODES:
        warnings.warn(f"style_question {mode!r} is deprecated (the rule is not from the paper): use "
                      f"{_DEPRECATED_MODES[mode]!r}", DeprecationWarning, stacklevel=2)
        mode = _DEPRECATED_MODES[mode]
    label = label.detach().cpu()
    b = label.shape[0]
    if mode in STYLE_KINDS:
        if mode not in kinds:
            raise ValueError(f"style question {mode!r} is not active (active: {', '.join(kinds)})")
        return torch.full((b,), kind_id(mode), dtype=torch.long)
    if mode == "random":
        attack_set, live_set = kinds, kinds
    elif mode == "scene_or_quality":
        attack_set = tuple(k for k in ("illumination", "environment") if k in kinds) or kinds
        live_set = ("camera_quality",) if "camera_quality" in kinds else kinds
    elif mode == "published":
        attack_set = kinds
        live_set = ("camera_quality",) if "camera_quality" in kinds else kinds
    else:
        raise ValueError(f"unknown style_question {mode!r}; valid: scene_or_quality, published, random, "
                         f"{', '.join(STYLE_KINDS)} (deprecated: paper)")
    u = torch.rand(b, generator=generator)  # (B,)

    def pick(options: tuple[str, ...]) -> torch.Tensor:
        ids = torch.tensor([kind_id(k) for k in options], dtype=torch.long)
        return ids[(u * len(options)).long().clamp_max(len(options) - 1)]

    return torch.where(label.bool(), pick(attack_set), pick(live_set))


# ---------------------------------------------------------------------------------------------------------------------
# fusion and heads (published FusionModule / Classifier / CueGenerator)


class _SelfAttention(nn.Module):
    """MPT ``MultiHeadAttention``: fused Wqkv, LayerNorm on q and k over the full width, no pre-LN, SDPA."""

    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion width {dim} is not divisible by {heads} heads")
        self.heads, self.causal = heads, causal
        self.Wqkv = nn.Linear(dim, 3 * dim)
        self.q_ln = nn.LayerNorm(dim)
        self.k_ln = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.Wqkv(x).chunk(3, dim=-1)  # (B, n, d) each
        q, k = self.q_ln(q).to(v.dtype), self.k_ln(k).to(v.dtype)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, n, dh)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _CrossAttention(nn.Module):
    """DALLE2-prior ``CrossAttention``: pre-LN on x, LN on the context, learned null key/value, Linear+LN out."""

    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.null_kv = nn.Parameter(torch.randn(2, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        m, h, dh = context.shape[1], self.heads, self.dim_head
        q = self.to_q(self.norm(x)).view(b, n, h, dh).transpose(1, 2)  # (B, h, n, dh)
        k, v = self.to_kv(self.norm_context(context)).chunk(2, dim=-1)
        k, v = (t.view(b, m, h, dh).transpose(1, 2) for t in (k, v))  # (B, h, m, dh)
        nk, nv = (t.to(k.dtype).expand(b, h, 1, dh) for t in self.null_kv.unbind(0))
        k, v = torch.cat([nk, k], dim=2), torch.cat([nv, v], dim=2)  # (B, h, 1+m, dh)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * dh))


class FusionBlock(nn.Module):
    """content = content + SA(content); content = content + CA(content, queries); out = FFN(content) (no residual)."""

    def __init__(self, dim: int, context_dim: int, heads: int = 16, dim_head: int = 64, ffn_dim: int = 2048,
                 dropout: float = 0.1, causal: bool = True):
        super().__init__()
        self.mha = _SelfAttention(dim, heads, causal)
        self.ca = _CrossAttention(dim, context_dim, heads, dim_head)
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, content: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        content = content + self.mha(content)  # (B, 1+N, d)
        content = content + self.ca(content, queries)  # reads (B, Q, H)
        return self.ffn(content)  # (B, 1+N, d)


class NormLinear(nn.Linear):
    """Linear on unit-norm weight columns: the SSDG/FLIP/InstructFLIP classifier (code ``Classifier``, ``norm_flag``).

    ``norm="rewrite"`` (default) is the published update rule: before a forward the weight *parameter* is rewritten to
    unit-norm columns (the code's ``self.layer.weight.data = normalize(self.layer.weight, 2, axis=0)``), then a plain
    linear runs; the gradient is the plain linear's and the optimiser moves the unit-norm weight, which the next
    forward renormalises. The rewrite is skipped while the weight is unchanged since the last one (tracked by the
    tensor's version counter: an optimiser step or ``load_state_dict`` bumps it), so two forwards in one step do not
    modify a tensor autograd saved. ``norm="functional"`` normalises inside the graph (``F.normalize`` in forward):
    the same forward function, but the gradient passes through the normalisation and the raw weight (columns of norm
    ~0.03 at PyTorch's init) moves instead; under AdamW the head then turns 30-40x faster than the code's
    (tests/test_instructflip.py trains both). In eval mode the output is computed without the rewrite (the same
    values; no parameter is modified during inference or export). With ZeRO-3/FSDP sharded parameters the rewrite
    only touches the gathered copy: use ``functional`` there.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 norm: Literal["rewrite", "functional"] = "rewrite", **kwargs):
        if norm not in ("rewrite", "functional"):
            raise ValueError(f"classifier norm must be 'rewrite' (published update rule) or 'functional', got {norm!r}")
        super().__init__(in_features, out_features, bias, **kwargs)
        self.norm = norm
        self._normalised_version = -1  # weight version right after the last rewrite

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "functional" or not self.training:
            # eval: the same output without touching the parameter (inference_mode, tracing and ONNX export)
            return F.linear(x, F.normalize(self.weight, dim=0), self.bias)
        w = self.weight
        if w._version != self._normalised_version:
            with torch.no_grad():
                w.copy_(F.normalize(w, dim=0))  # (out, in): every input column to unit L2 norm over the outputs
            self._normalised_version = w._version
        return F.linear(x, w, self.bias)


class CueGenerator(nn.Module):
    """conv3x3(d -> 32) -> ReLU -> conv3x3(32 -> 3) on the patch grid."""

    def __init__(self, dim: int, hidden: int = 32, out_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, 3, 1, 1)
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


# ---------------------------------------------------------------------------------------------------------------------
# the model


def _t5_width(name: str) -> int:
    """d_model of a T5 without loading its weights: preset, local config.json, or the hub's config."""
    if name in T5_PRESETS:
        return T5_PRESETS[name]["d_model"]
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return int(json.loads((path / "config.json").read_text())["d_model"])
    try:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(name).d_model)
    except OSError as err:
        raise BackboneNotFoundError(
            f"cannot read the config of T5 {name!r} ({err}); with no network pass a local directory written by "
            f"save_pretrained, or a preset ({', '.join(T5_PRESETS)})"
        ) from err


class InstructFLIP(nn.Module):
    """InstructFLIP model. ``forward(pixel_values)`` is LLM-free inference; :meth:`losses` is the training objective.

    The frozen T5 is not loaded by the constructor (only its width is read): call :meth:`load_t5` before
    :meth:`losses` with ``heads="llm"`` or before :meth:`answer` (the Lightning system does this in ``setup``).

    Args:
        vision: CLIP vision tower: preset (tiny, small, clip-vit-b16, clip-vit-l14), local directory or hub id.
        image_size: input size for a preset (None: the preset's).
        qformer: Q-Former dimensions and initial weights: preset (random init) or a BERT / BLIP-2 / InstructBLIP
            directory or hub id whose weights are mapped in (cross-attention and query FFN stay random from BERT).
        qformer_layers / qformer_heads / cross_attention_freq / num_query_tokens: 2 / 16 / 2 / 32 as the code.
        qformer_query_ffn_from_text: copy the text FFN into the query FFN when loading (BLIP-2 stage 1; the code
            does not).
        t5: frozen FLAN-T5 (preset, directory or hub id); None = no LM losses and no ``t5_proj``.
        heads: ``"llm"`` (instruction tuning through T5) or ``"classifier"`` (InstructFLIP-dagger; ``t5`` ignored).
        use_content / use_style / use_cue: ablation switches; each removes its loss term and its parameters.
        num_style_questions: active style questions, the first k of (illumination, environment, camera_quality).
        eval_style_question: the fixed style question used by ``forward`` (evaluation, prediction).
        fusion_*: the fusion block (16 heads, 64-d cross-attention heads, FFN 2048, 1 block, causal self-attention
            and dropout 0.1 as the code).
        cue_noise: sigma of the training noise on attack samples' patch tokens (0.5 in the code's config).
        cue_beta: SmoothL1 beta of the cue loss (0.01 as the code).
        max_answer_tokens: T5 target length (16 as the code).
        classifier_norm: :class:`NormLinear` mode of the live/attack classifier: "rewrite" (the code's update rule)
            or "functional" (normalisation inside the graph; same forward, different training dynamics).
        dagger: with ``heads="classifier"``: "project" (mean query, plain heads, one head per style question) or
            "official" (the published no-LLM code's reading; module docstring).
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
        heads: Literal["llm", "classifier"] = "llm",
        use_content: bool = True,
        use_style: bool = True,
        use_cue: bool = True,
        num_style_questions: int = 3,
        eval_style_question: StyleKindName = "illumination",
        fusion_heads: int = 16,
        fusion_dim_head: int = 64,
        fusion_ffn_dim: int = 2048,
        fusion_layers: int = 1,
        fusion_causal: bool = True,
        fusion_dropout: float = 0.1,
        cue_noise: float = 0.5,
        cue_beta: float = 0.01,
        max_answer_tokens: int = 16,
        classifier_norm: Literal["rewrite", "functional"] = "rewrite",
        dagger: Literal["project", "official"] = "project",
    ):
        super().__init__()
        if dagger not in ("project", "official"):
            raise ValueError(f"dagger must be 'project' or 'official' (the published no-LLM ablation), got {dagger!r}")
        self.dagger = dagger
        if heads not in ("llm", "classifier"):
            raise ValueError(f"heads must be 'llm' or 'classifier', got {heads!r}")
        if not 1 <= num_style_questions <= len(STYLE_KINDS):
            raise ValueError(f"num_style_questions must be 1..{len(STYLE_KINDS)}, got {num_style_questions}")
        self.style_kinds: tuple[str, ...] = STYLE_KINDS[:num_style_questions]
        if use_style and eval_style_question not in self.style_kinds:
            raise ValueError(f"eval_style_question {eval_style_question!r} is not among the active style questions "
                             f"{self.style_kinds}; raise num_style_questions or pick one of them")
        self.heads, self.use_content, self.use_style, self.use_cue = heads, use_content, use_style, use_cue
        self.eval_style_question, self.cue_noise, self.cue_beta = eval_style_question, cue_noise, cue_beta
        self.t5_name = t5 if heads == "llm" and (use_content or use_style) else None
        self.max_answer_tokens = max_answer_tokens

        # vision: (B, 3, S, S) -> f_c (B, 1+N, d), f_s (B, 2L, d)
        self.vision = load_vision_encoder(vision, image_size=image_size)
        vcfg = self.vision.config
        d = vcfg.hidden_size
        self.grid = vcfg.image_size // vcfg.patch_size

        # instruction-aware Q-Formers
        self.qformer_tokenizer = None
        self.qformer_reports: dict[str, QFormerLoadReport] = {}
        if use_content or use_style:
            # an InstructBLIP directory keeps the Q-Former's tokenizer in qformer_tokenizer/ (root = the LLM's)
            self.qformer_tokenizer = load_tokenizer(
                qformer if is_preset("qformer", qformer) else qformer_tokenizer_path(qformer), "bert")
            cfg = qformer_bert_config(qformer, num_hidden_layers=qformer_layers, encoder_width=d,
                                      cross_attention_freq=cross_attention_freq, num_attention_heads=qformer_heads,
                                      layer_norm_eps=1e-7)  # the code sets 1e-7
            self.content_qformer = QFormer(cfg, num_query_tokens) if use_content else None
            self.style_qformer = QFormer(cfg, num_query_tokens) if use_style else None
            if not is_preset("qformer", qformer):
                for name, qf in (("content", self.content_qformer), ("style", self.style_qformer)):
                    if qf is not None:
                        self.qformer_reports[name] = qf.load_pretrained(
                            qformer, copy_text_ffn_to_query=qformer_query_ffn_from_text)
            h = cfg.hidden_size
            self._register_instruction_tokens()
        else:
            self.content_qformer = self.style_qformer = None
            h = d

        # LLM side (weights loaded lazily) or classification heads (dagger)
        self.t5: nn.Module | None = None
        self.t5_tokenizer = None
        self.t5_proj = nn.Linear(h, _t5_width(self.t5_name)) if self.t5_name is not None else None
        dagger_on = heads == "classifier"
        official = dagger == "official"
        head_cls = (lambda i, o: NormLinear(i, o, norm=classifier_norm)) if official else nn.Linear
        self.content_head = head_cls(h, len(OPTIONS["content"])) if dagger_on and use_content else None
        # project: one plain head per style question; official: one normalised head over all style options
        self._style_offset = {}
        offset = 0
        for k in self.style_kinds:
            self._style_offset[k] = offset
            offset += len(OPTIONS[k])
        if dagger_on and use_style and official:
            self.style_heads = None
            self.style_head = head_cls(h, offset)
        else:
            self.style_head = None
            self.style_heads = (nn.ModuleDict({k: nn.Linear(h, len(OPTIONS[k])) for k in self.style_kinds})
                                if dagger_on and use_style else None)

        # fusion and heads
        self.fusion = (nn.ModuleList(FusionBlock(d, h, fusion_heads, fusion_dim_head, fusion_ffn_dim, fusion_dropout,
                                                 fusion_causal) for _ in range(fusion_layers))
                       if use_content or use_style else None)
        self.classifier = NormLinear(d, 2, norm=classifier_norm)
        self.cue_generator = CueGenerator(d) if use_cue else None

    def load_messages(self) -> list[str]:
        """One line per Q-Former loaded from a checkpoint: tensors loaded, left at initialisation, skipped, unused
        (the system logs them once, on rank 0)."""
        return [report.summary(f"{name} Q-Former") for name, report in self.qformer_reports.items()]

    # -- instructions -------------------------------------------------------------------------------------------------

    def _register_instruction_tokens(self) -> None:
        """Tokenise the four fixed instructions once for the Q-Former (non-persistent buffers, padded)."""
        tok = self.qformer_tokenizer
        enc = [tok(instruction(k))["input_ids"] for k in QUESTION_KINDS]
        ids, mask = _pad(enc, tok.pad_token_id)
        self.register_buffer("_qf_ids", ids, persistent=False)  # (4, T)
        self.register_buffer("_qf_mask", mask, persistent=False)
        self._qf_len = [len(e) for e in enc]

    def _qformer_text(self, kinds: torch.Tensor | int, allowed: tuple[int, ...],
                      batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Instruction tokens for global question ids (B,) or one id for the whole batch -> ids, mask (B, T),
        T = longest allowed question."""
        t = max(self._qf_len[i] for i in allowed)
        if isinstance(kinds, int):  # fixed question: no host-to-device copy
            return self._qf_ids[kinds, :t].expand(batch, -1), self._qf_mask[kinds, :t].expand(batch, -1)
        kinds = kinds.to(self._qf_ids.device)
        return self._qf_ids[kinds, :t], self._qf_mask[kinds, :t]

    # -- T5 -----------------------------------------------------------------------------------------------------------

    @property
    def needs_t5(self) -> bool:
        return self.t5_name is not None

    def load_t5(self, dtype: torch.dtype | None = None) -> None:
        """Load the frozen T5 (no grad, eval mode) and tokenise the instructions and answers for it. Idempotent."""
        if self.t5_name is None:
            raise RuntimeError("this InstructFLIP has no T5 (t5=None, heads='classifier', or no branch)")
        if self.t5 is not None:
            if dtype is not None:
                self.t5.to(dtype)
            return
        t5 = load_t5(self.t5_name, torch_dtype=dtype).requires_grad_(False).eval()
        if t5.config.d_model != self.t5_proj.out_features:
            raise ValueError(f"T5 {self.t5_name} has width {t5.config.d_model}, t5_proj expects "
                             f"{self.t5_proj.out_features}")
        device = self.t5_proj.weight.device
        self.t5 = t5.to(device)
        self.t5_tokenizer = load_tokenizer(self.t5_name, "t5")
        tok = self.t5_tokenizer
        q_ids, q_mask = _pad([tok(instruction(k))["input_ids"] for k in QUESTION_KINDS], tok.pad_token_id)
        a_enc = [tok(a, truncation=True, max_length=self.max_answer_tokens)["input_ids"] for a in _ALL_ANSWERS]
        a_ids, a_mask = _pad(a_enc, tok.pad_token_id)
        self.register_buffer("_t5_q_ids", q_ids.to(device), persistent=False)  # (4, Tq)
        self.register_buffer("_t5_q_mask", q_mask.to(device), persistent=False)
        self.register_buffer("_t5_a_ids", a_ids.to(device), persistent=False)  # (20, Ta)
        self.register_buffer("_t5_a_mask", a_mask.to(device), persistent=False)
        self.register_buffer("_t5_a_offset", torch.tensor(_ANSWER_OFFSET, device=device), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.t5 is not None:
            self.t5.eval()  # frozen: no dropout, whatever the rest does
        return self

    def _t5_encoder_inputs(self, queries: torch.Tensor, kinds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[t5_proj(queries); instruction embeddings] -> inputs_embeds (b, M+Tq, D_t5), attention mask."""
        kinds = kinds.to(queries.device)
        ids, mask = self._t5_q_ids[kinds], self._t5_q_mask[kinds]  # (b, Tq)
        text = self.t5.get_input_embeddings()(ids)  # (b, Tq, D)
        proj = self.t5_proj(queries)  # (b, M, H) -> (b, M, D)
        embeds = torch.cat([proj.to(text.dtype), text], dim=1)
        return embeds, torch.cat([mask.new_ones(proj.shape[:2]), mask], dim=1)

    def _lm_loss(self, queries: torch.Tensor, kinds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """T5 cross entropy on the option strings of the labelled rows (targets >= 0); mean over answer tokens."""
        keep = (targets >= 0).nonzero().squeeze(1)
        if keep.numel() == 0:  # no label in this batch: a zero that still touches t5_proj and the queries (DDP)
            return 0.0 * self.t5_proj(queries[:1]).float().sum()
        if keep.numel() < targets.numel():
            queries, kinds, targets = queries[keep], kinds[keep], targets[keep]
        embeds, mask = self._t5_encoder_inputs(queries, kinds)
        rows = self._answer_rows(kinds, targets)
        labels = self._t5_a_ids[rows].masked_fill(self._t5_a_mask[rows] == 0, -100)  # (b, Ta)
        logits = self.t5(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=self.t5._shift_right(labels),
                         decoder_attention_mask=self._t5_a_mask[rows]).logits  # (b, Ta, V)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def _answer_rows(self, kinds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._t5_a_offset[kinds.to(targets.device)] + targets  # row of the option in _ALL_ANSWERS

    # -- classifier heads (dagger) ------------------------------------------------------------------------------------

    def _branch_loss(self, queries: torch.Tensor, kinds: torch.Tensor, targets: torch.Tensor,
                     names: tuple[str, ...]) -> torch.Tensor:
        """The content or style term: T5 LM loss, or the dagger heads' cross entropy over questions ``names``."""
        if self.heads == "classifier":
            if self.style_head is not None and names != ("content",):  # official: one head over all style options
                return self._official_style_loss(queries, kinds, targets)
            heads = {n: self.content_head if n == "content" else self.style_heads[n] for n in names}
            return self._head_loss(queries, kinds, targets, heads)
        return self._lm_loss(queries, kinds, targets)

    def _pool(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, M, H) -> (B, H): the mean query (project) or query 0 (the published no-LLM code)."""
        return queries[:, 0] if self.dagger == "official" else queries.mean(dim=1)

    def _official_style_loss(self, queries: torch.Tensor, kinds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross entropy of the one style head over the concatenated style options (labelled rows only)."""
        offsets = torch.tensor([0] + [self._style_offset[k] for k in STYLE_KINDS if k in self._style_offset],
                               device=targets.device)
        kinds = kinds.to(targets.device)
        logits = self.style_head(self._pool(queries)).float()  # (B, sum of style options)
        rows = targets >= 0
        if not bool(rows.any()):
            return 0.0 * logits.sum()
        return F.cross_entropy(logits[rows], offsets[kinds[rows]] + targets[rows])

    def _head_loss(self, queries: torch.Tensor, kinds: torch.Tensor, targets: torch.Tensor,
                   heads: dict[str, nn.Module]) -> torch.Tensor:
        """Cross entropy of the linear head of each row's question on the mean query; unlabelled rows left out.
        Every head enters the graph (x0 when it has no row) so DDP sees all parameters used."""
        pooled = self._pool(queries)  # (B, M, H) -> (B, H)
        kinds = kinds.to(targets.device)
        total, count = pooled.new_zeros((), dtype=torch.float32), 0
        for name, head in heads.items():
            logits = head(pooled).float()  # (B, n_options)
            rows = (kinds == kind_id(name)) & (targets >= 0)
            n = int(rows.sum())
            if n:
                total = total + F.cross_entropy(logits[rows], targets[rows], reduction="sum")
                count += n
            else:
                total = total + 0.0 * logits.sum()
        return total / max(count, 1)

    # -- forward pieces -----------------------------------------------------------------------------------------------

    def image_features(self, pixel_values: torch.Tensor, style: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, S, S) -> f_c (B, 1+N, d) = post-LN of all tokens, f_s (B, 2L, d) = per-block token mean/std."""
        vm = getattr(self.vision, "vision_model", self.vision)
        x = vm.pre_layrnorm(vm.embeddings(pixel_values))  # (B, 1+N, d)
        stats = []
        for layer in vm.encoder.layers:
            x = layer(x, None)
            if style:
                xf = x.float()
                stats += [xf.mean(dim=1), xf.std(dim=1)]  # (B, d) each; unbiased std as torch.std
        f_c = vm.post_layernorm(x)
        return f_c, (torch.stack(stats, dim=1) if style else None)  # (B, 2L, d)

    def queries(self, f_c: torch.Tensor, f_s: torch.Tensor | None,
                style_kinds: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Content and style Q-Former outputs (B, M, H) each (None when the branch is off)."""
        b = f_c.shape[0]
        content_q = style_q = None
        if self.content_qformer is not None:
            ids, mask = self._qformer_text(0, (0,), b)
            content_q = self.content_qformer(ids, mask, f_c)
        if self.style_qformer is not None:
            kinds = kind_id(self.eval_style_question) if style_kinds is None else style_kinds
            ids, mask = self._qformer_text(kinds, tuple(kind_id(k) for k in self.style_kinds), b)
            style_q = self.style_qformer(ids, mask, f_s)
        return content_q, style_q

    def fuse(self, f_c: torch.Tensor, content_q: torch.Tensor | None, style_q: torch.Tensor | None) -> torch.Tensor:
        """(B, 1+N, d) content tokens x (B, Q, H) queries -> (B, 1+N, d) fused tokens."""
        if self.fusion is None:
            return f_c
        qs = torch.cat([q for q in (content_q, style_q) if q is not None], dim=1)  # (B, 64, H)
        x = f_c
        for block in self.fusion:
            x = block(x, qs)
        return x

    def heads_out(self, fused: torch.Tensor, noise_label: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fused tokens -> logits (B, 2) from CLS, cue map (B, 3, g, g) from the patches (+ training noise)."""
        logits = self.classifier(fused[:, 0])
        if self.cue_generator is None:
            return logits, None
        patches = fused[:, 1:]  # (B, N, d)
        if noise_label is not None and self.cue_noise > 0:
            patches = patches + torch.randn_like(patches) * self.cue_noise * noise_label.to(patches.dtype)[:, None, None]
        b, n, d = patches.shape
        g = math.isqrt(n)
        if g * g != n:
            raise ValueError(f"{n} patch tokens do not form a square grid")
        return logits, self.cue_generator(patches.transpose(1, 2).reshape(b, d, g, g))  # (B, 3, g, g)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """LLM-free inference with the fixed evaluation questions: score = P(attack) (B,), logits, cue_map."""
        f_c, f_s = self.image_features(pixel_values, style=self.style_qformer is not None)
        content_q, style_q = self.queries(f_c, f_s, None)
        logits, cue = self.heads_out(self.fuse(f_c, content_q, style_q))
        out = {"score": logits.float().softmax(dim=-1)[:, 1], "logits": logits}
        if cue is not None:
            out["cue_map"] = cue
        return out

    def losses(self, batch: dict, style_kinds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training objective on a batch (the batch contract of data_modules/datamodule.py). ``style_kinds`` (B,)
        global question ids of each sample's style question (None: the evaluation question). Returns each active term,
        unweighted (``content``, ``style``, ``cls``, ``cue``; the system weighs them), plus ``logits`` (B, 2)."""
        label = batch["label"]
        b = label.shape[0]
        if style_kinds is None:
            style_kinds = torch.full((b,), kind_id(self.eval_style_question), dtype=torch.long)
        f_c, f_s = self.image_features(batch["pixel_values"], style=self.style_qformer is not None)
        content_q, style_q = self.queries(f_c, f_s, style_kinds)
        noise = label if self.training else None
        logits, cue = self.heads_out(self.fuse(f_c, content_q, style_q), noise)

        terms: dict[str, torch.Tensor] = {}
        if self.heads == "classifier" or self.t5_name is not None:
            if self.heads == "llm" and self.t5 is None:
                raise RuntimeError("InstructFLIP.losses needs the frozen T5: call model.load_t5() first")
            if content_q is not None:
                zeros = torch.zeros(b, dtype=torch.long, device=label.device)
                terms["content"] = self._branch_loss(content_q, zeros, batch["content"], ("content",))
            if style_q is not None:
                kinds = style_kinds.to(label.device)
                targets = torch.stack([batch[k] for k in STYLE_KINDS], dim=0)  # (3, B)
                targets = targets.gather(0, (kinds - 1)[None]).squeeze(0)  # (B,) option of each row's question
                terms["style"] = self._branch_loss(style_q, kinds, targets, self.style_kinds)
        terms["cls"] = F.cross_entropy(logits.float(), label)
        if cue is not None:
            target = label.to(torch.float32)[:, None, None, None].expand_as(cue)
            terms["cue"] = F.smooth_l1_loss(cue.float(), target, beta=self.cue_beta)
        return terms | {"logits": logits}

    # -- answers ------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def answer(self, pixel_values: torch.Tensor) -> dict[str, list[str]]:
        """Answer the content question and every active style question (greedy T5 decoding, or the dagger heads'
        argmax). Returns ``{question kind: [answer per image]}``."""
        if self.heads == "llm" and self.t5 is None:
            raise RuntimeError("answering with the LLM needs the frozen T5: call model.load_t5() first")
        b = pixel_values.shape[0]
        f_c, f_s = self.image_features(pixel_values, style=self.style_qformer is not None)
        out: dict[str, list[str]] = {}
        kinds = (["content"] if self.content_qformer is not None else []) + (
            list(self.style_kinds) if self.style_qformer is not None else [])
        for kind in kinds:
            ids = torch.full((b,), kind_id(kind), dtype=torch.long)
            content_q, style_q = self.queries(f_c, f_s, ids)
            q = content_q if kind == "content" else style_q
            if self.heads == "classifier":
                if kind != "content" and self.style_head is not None:
                    lo = self._style_offset[kind]
                    logits = self.style_head(self._pool(q))[:, lo: lo + len(OPTIONS[kind])]
                else:
                    head = self.content_head if kind == "content" else self.style_heads[kind]
                    logits = head(self._pool(q))
                out[kind] = [OPTIONS[kind][i] for i in logits.argmax(dim=-1).tolist()]
                continue
            embeds, mask = self._t5_encoder_inputs(q, ids)
            gen = self.t5.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=self.max_answer_tokens,
                                   do_sample=False, num_beams=1)
            out[kind] = self.t5_tokenizer.batch_decode(gen, skip_special_tokens=True)
        return out


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
