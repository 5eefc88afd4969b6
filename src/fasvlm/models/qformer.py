"""Instruction-aware Q-Former (BLIP-2 §3.1, InstructBLIP §2.2), written with ``scaled_dot_product_attention``.

Learnable query tokens and the instruction's tokens form one sequence ``[queries; instruction]``. Each layer is a
BERT post-LN layer: self-attention over the whole sequence (the instruction shapes the queries); every
``cross_attention_freq``-th layer (layer index % freq == 0, as LAVIS) lets the *query* positions cross-attend to the
image features; the query positions and the text positions have separate feed-forward networks
(``intermediate_query``/``output_query`` vs ``intermediate``/``output``). Only the query outputs leave the module.

Parameter names are LAVIS's, which are BERT's (``embeddings.word_embeddings``, ``encoder.layer.{i}.attention.self.query``
..., plus ``crossattention`` and the ``_query`` FFN), so :func:`map_qformer_state_dict` can map a BERT checkpoint, a LAVIS
BLIP-2/InstructBLIP checkpoint or a Hugging Face ``Blip2QFormerModel``/``InstructBlipQFormerModel`` checkpoint in.

Two choices that change no query output: the text FFN of the *last* layer is not built (its output is discarded, and
an unused parameter would break DDP without ``find_unused_parameters``), and the last layer's self-attention computes
only the query rows. Token-type embeddings and the pooler of BERT are not used (LAVIS has none).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fasvlm.backbones import BackboneNotFoundError, load_qformer_weights, qformer_config

__all__ = ["QFormer", "QFormerLoadReport", "qformer_bert_config", "map_qformer_state_dict", "qformer_tokenizer_path",
           "resolve_checkpoint_dir"]

log = logging.getLogger(__name__)

_BERT_KEYS = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "hidden_act",
              "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "initializer_range",
              "layer_norm_eps", "pad_token_id")


def resolve_checkpoint_dir(name_or_path: str) -> Path:
    """A local directory for a checkpoint given as a directory or a hub id (offline: only from the local cache)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path.startswith((".", "/", "~")):
        raise BackboneNotFoundError(f"Q-Former checkpoint directory not found: {name_or_path}")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(name_or_path, local_files_only=offline,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as err:  # offline and not cached, no network, unknown id
        raise BackboneNotFoundError(
            f"cannot fetch Q-Former checkpoint {name_or_path!r} ({err.__class__.__name__}: {err}). With no network, "
            "pass a local directory written by save_pretrained (BERT, BLIP-2 or InstructBLIP), or a preset "
            "(tiny, small, bert-base)."
        ) from err


def qformer_tokenizer_path(name_or_path: str) -> str:
    """Where the Q-Former's (BERT) tokenizer of a checkpoint lives.

    An InstructBLIP checkpoint keeps it in ``qformer_tokenizer/`` (its root tokenizer is the LLM's); a BERT
    checkpoint at its root. A BLIP-2 checkpoint has none (its Q-Former reads no text) and is refused rather than
    tokenised with the LLM's vocabulary.
    """
    path = resolve_checkpoint_dir(name_or_path)
    sub = path / "qformer_tokenizer"
    if sub.is_dir():
        return str(sub)
    raw = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    if "qformer_config" in raw:
        raise BackboneNotFoundError(
            f"{name_or_path}: a {raw.get('model_type', 'BLIP-2')} checkpoint without qformer_tokenizer/; its root "
            "tokenizer belongs to the LLM, not to the Q-Former. Save a BERT tokenizer there (e.g. "
            "AutoTokenizer.from_pretrained('bert-base-uncased').save_pretrained(<dir>/qformer_tokenizer)) or use "
            "an InstructBLIP checkpoint"
        )
    return str(path)


def qformer_bert_config(name_or_path: str = "bert-base", *, num_hidden_layers: int = 2, encoder_width: int | None = None,
                        cross_attention_freq: int = 2, num_attention_heads: int | None = None,
                        layer_norm_eps: float | None = None):
    """``BertConfig`` of a Q-Former: a preset, a BERT directory/id, or a BLIP-2/InstructBLIP directory (its
    nested ``qformer_config``). ``encoder_width`` is the width of the features the cross-attention reads."""
    from transformers import BertConfig

    path = Path(name_or_path).expanduser()
    raw = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    qraw = raw.get("qformer_config") or (raw if str(raw.get("model_type", "")).endswith("qformer") else None)
    if qraw is not None:  # a BLIP-2 / InstructBLIP checkpoint, or its Q-Former alone
        config = BertConfig(**{k: v for k, v in qraw.items() if k in _BERT_KEYS})
        config.num_hidden_layers = num_hidden_layers
        config.encoder_width = encoder_width or config.hidden_size
        config.cross_attention_freq = cross_attention_freq
    else:
        config = qformer_config(name_or_path, num_hidden_layers=num_hidden_layers, encoder_width=encoder_width,
                                cross_attention_freq=cross_attention_freq)
    if num_attention_heads is not None:
        config.num_attention_heads = num_attention_heads
    if layer_norm_eps is not None:
        config.layer_norm_eps = layer_norm_eps
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"Q-Former width {config.hidden_size} is not divisible by {config.num_attention_heads} heads")
    if cross_attention_freq < 1:
        raise ValueError(f"cross_attention_freq must be >= 1, got {cross_attention_freq}")
    return config


# ---------------------------------------------------------------------------------------------------------------------
# modules (BERT names)


class _SelfAttention(nn.Module):
    """Multi-head attention projections (``query``/``key``/``value``) and SDPA."""

    def __init__(self, hidden: int, kv_width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, h = x.shape
        m = context.shape[1]
        d = h // self.heads
        q = self.query(x).view(b, n, self.heads, d).transpose(1, 2)  # (B, heads, n, d)
        k = self.key(context).view(b, m, self.heads, d).transpose(1, 2)  # (B, heads, m, d)
        v = self.value(context).view(b, m, self.heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, h)  # (B, n, H)


class _AddNorm(nn.Module):
    """BERT ``*Output``: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int, act: str):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)
        self.act = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda t: F.gelu(t, approximate="tanh")}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Attention(nn.Module):
    """BERT ``BertAttention``: ``self`` (projections + SDPA) and ``output`` (post-LN residual)."""

    def __init__(self, config, kv_width: int):
        super().__init__()
        h = config.hidden_size
        self.self = _SelfAttention(h, kv_width, config.num_attention_heads, config.attention_probs_dropout_prob)
        self.output = _AddNorm(h, h, config.hidden_dropout_prob, config.layer_norm_eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, context, mask), x)


class QFormerLayer(nn.Module):
    """One LAVIS Q-Former layer: joint self-attention, query-only cross-attention, split FFNs."""

    def __init__(self, config, *, cross_attention: bool, text_ffn: bool):
        super().__init__()
        h, inner, p, eps = config.hidden_size, config.intermediate_size, config.hidden_dropout_prob, config.layer_norm_eps
        self.has_cross_attention, self.has_text_ffn = cross_attention, text_ffn
        self.attention = _Attention(config, h)
        if cross_attention:
            self.crossattention = _Attention(config, config.encoder_width)
        if text_ffn:
            self.intermediate = _Intermediate(h, inner, config.hidden_act)
            self.output = _AddNorm(inner, h, p, eps)
        self.intermediate_query = _Intermediate(h, inner, config.hidden_act)
        self.output_query = _AddNorm(inner, h, p, eps)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, image: torch.Tensor,
                image_mask: torch.Tensor | None, num_query: int) -> torch.Tensor:
        # hidden (B, M+T, H) -> (B, M+T, H), or (B, M, H) in a layer without text FFN (the last one)
        rows = hidden if self.has_text_ffn else hidden[:, :num_query]
        attn = self.attention.output(self.attention.self(rows, hidden, mask), rows)
        query = attn[:, :num_query]  # (B, M, H)
        if self.has_cross_attention:
            query = self.crossattention(query, image, image_mask)  # reads (B, Lv, Dv)
        query = self.output_query(self.intermediate_query(query), query)
        if not self.has_text_ffn:
            return query
        text = attn[:, num_query:]  # (B, T, H)
        text = self.output(self.intermediate(text), text)
        return torch.cat([query, text], dim=1)


class _Embeddings(nn.Module):
    """Instruction token embeddings + absolute positions (text only), then LayerNorm over [queries; text]."""

    def __init__(self, config):
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, query_embeds: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        text = self.word_embeddings(input_ids) + self.position_embeddings(pos)  # (B, T, H)
        x = torch.cat([query_embeds.to(text.dtype), text], dim=1)  # (B, M+T, H)
        return self.dropout(self.LayerNorm(x))


class _Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        n, freq = config.num_hidden_layers, config.cross_attention_freq
        self.layer = nn.ModuleList(
            QFormerLayer(config, cross_attention=i % freq == 0, text_ffn=i < n - 1) for i in range(n)
        )


class QFormer(nn.Module):
    """Instruction-aware Q-Former: ``forward(input_ids, attention_mask, image) -> (B, M, H)`` query outputs.

    Args:
        config: a ``BertConfig`` with ``encoder_width`` and ``cross_attention_freq`` (see :func:`qformer_bert_config`).
        num_query_tokens: M learnable queries (32 in BLIP-2/InstructBLIP/InstructFLIP).
    """

    def __init__(self, config, num_query_tokens: int = 32):
        super().__init__()
        if config.num_hidden_layers < 1:
            raise ValueError("a Q-Former needs at least one layer")
        self.config, self.num_query_tokens = config, num_query_tokens
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, config.hidden_size))
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT initialisation: N(0, initializer_range) weights and queries, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
                if m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.query_tokens, std=std)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor,
                image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids/attention_mask (B, T) instruction tokens; image (B, Lv, Dv); image_mask (B, Lv) or None."""
        b, m = input_ids.shape[0], self.num_query_tokens
        x = self.embeddings(input_ids, self.query_tokens.expand(b, -1, -1))  # (B, M+T, H)
        keep = torch.cat([attention_mask.new_ones(b, m), attention_mask], dim=1).bool()  # (B, M+T)
        mask = keep[:, None, None, :]  # (B, 1, 1, M+T): True = attend
        img_mask = None if image_mask is None else image_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, mask, image, img_mask, m)
        return x[:, :m]  # (B, M, H)

    # -- weights ------------------------------------------------------------------------------------------------------

    def load_pretrained(self, source: str | dict[str, torch.Tensor], *,
                        copy_text_ffn_to_query: bool = False) -> QFormerLoadReport:
        """Load a BERT / BLIP-2 / InstructBLIP checkpoint (directory, hub id or state dict) through
        :func:`map_qformer_state_dict`; tensors whose shape differs (e.g. cross-attention keys of a ViT-g Q-Former
        read by a CLIP-B/16 one) are skipped and reported, never silently reshaped."""
        label = source if isinstance(source, str) else ""
        if isinstance(source, str):
            source = load_qformer_weights(str(resolve_checkpoint_dir(source)))
        mapped = map_qformer_state_dict(source, copy_text_ffn_to_query=copy_text_ffn_to_query)
        own = self.state_dict()
        report = QFormerLoadReport(source=label)
        usable = {}
        for k, v in mapped.items():
            if k not in own:
                report.unexpected.append(k)
            elif own[k].shape != v.shape:
                report.skipped.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
            else:
                usable[k] = v.to(own[k].dtype)
        self.load_state_dict(usable, strict=False)
        report.loaded = sorted(usable)
        report.missing = sorted(set(own) - set(usable))
        return report


@dataclass
class QFormerLoadReport:
    """What :meth:`QFormer.load_pretrained` did: ``missing`` keys keep their initialisation (from a BERT checkpoint:
    the cross-attention, the query FFNs unless copied, and the query tokens)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    source: str = ""

    def summary(self, name: str = "Q-Former", show: int = 4) -> str:
        """One line for the user: how many tensors came from the checkpoint and which start from initialisation."""

        def some(keys: list[str]) -> str:
            return ", ".join(keys[:show]) + (f", ... (+{len(keys) - show})" if len(keys) > show else "")

        parts = [f"{name}: {len(self.loaded)} tensors loaded from {self.source or 'a state dict'}"]
        if self.missing:
            parts.append(f"{len(self.missing)} keep their initialisation ({some(self.missing)})")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped for a shape mismatch ({some(self.skipped)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} checkpoint tensors unused ({some(self.unexpected)})")
        return "; ".join(parts)


_PREFIXES = ("Qformer.bert.", "Qformer.", "qformer.bert.", "qformer.", "bert.", "module.")


def map_qformer_state_dict(state: dict[str, torch.Tensor], *,
                           copy_text_ffn_to_query: bool = False) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's Q-Former tensors to :class:`QFormer`'s names.

    Accepts BERT (``BertModel`` / ``BertForMaskedLM``, incl. old ``LayerNorm.gamma/beta``), LAVIS
    (``Qformer.bert.*``, ``query_tokens``) and Hugging Face BLIP-2/InstructBLIP (``qformer.*``, ``attention.attention``,
    ``embeddings.layernorm`` or BLIP-2's top-level ``layernorm``) layouts. Tensors outside the Q-Former (vision tower,
    LLM, BERT's token-type embeddings, pooler and MLM head) are dropped. ``copy_text_ffn_to_query`` initialises the
    query FFN from the text FFN where the checkpoint has none (BLIP-2 stage 1 does this; InstructFLIP does not).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "query_tokens" or key.endswith(".query_tokens"):
            out["query_tokens"] = value
            continue
        k = key
        for prefix in _PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        k = k.replace(".attention.attention.", ".attention.self.").replace(".crossattention.attention.",
                                                                             ".crossattention.self.")
        k = k.replace("embeddings.layernorm.", "embeddings.LayerNorm.")
        if k.startswith("layernorm."):  # HF Blip2QFormerModel normalises the query embeddings at the top level
            k = "embeddings.LayerNorm." + k[len("layernorm."):]
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.startswith("embeddings.") and "token_type" in k or k.endswith("position_ids"):
            continue
        if k.startswith(("embeddings.", "encoder.layer.")):
            out[k] = value
    if copy_text_ffn_to_query:
        for k in list(out):
            for src, dst in ((".intermediate.", ".intermediate_query."), (".output.dense", ".output_query.dense"),
                             (".output.LayerNorm", ".output_query.LayerNorm")):
                if src in k and ".attention." not in k and ".crossattention." not in k:
                    out.setdefault(k.replace(src, dst), out[k])
    return out
