"""I-FAS: frozen CLIP vision encoder → Globally Aware Connector (GAC) → causal LLM (I-FAS paper, AAAI 2025, Sec. 3).

Plain ``nn.Module`` (no Lightning). Shapes: B batch, N patches, L vision layers, M learnable queries, Dv vision width,
Dg GAC width, D LLM input width, P prompt length (prefix + M+L visual tokens + suffix), A answer length.

GAC (Sec. 3.2, Eqs. for Q, Q', Q'', X_T):
    G_V = CLS token of each of the L encoder layers (hidden_states[1..L][:, 0]),  X_V = patch tokens of the last layer
    Q   = Concat(Q_P, Q_V),  Q_P = M learnable queries,  Q_V = Linear(G_V)
    Q'  = Q + MSA(LN Q);  Q'' = Q' + MCA(LN Q', LN X_V);  X_T = Q'' + MLP(LN Q'')   (``gac_depth`` such blocks)
    visual tokens = Linear(LN X_T)  -> (B, M+L, D)
The final LayerNorm before the projection is ours (the usual last norm of a pre-LN stack; it keeps the LLM input
scale fixed whatever the CLS magnitudes). ``use_gac=False`` is the "w/o GAC" ablation: Q = M+L learnable queries (no
per-layer CLS tokens), same blocks and projection.

LLM input: [embed(BOS + prompt before <image>)] [M+L visual tokens] [embed(prompt after <image>)] [embed(answer)];
the visual tokens enter through ``inputs_embeds``, so nothing depends on a transformers image-placeholder convention.
Score: one forward over the prompt; P(attack) = 1 − P("Yes" at the first answer position).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from fasvlm.backbones import load_causal_lm, load_tokenizer, load_vision_encoder
from fasvlm.models.layers import Block
from fasvlm.text.prompts import ANSWER_SEPARATOR, NO, QUESTION, YES, AnswerTokens, IFASPrompt, split_judgment

__all__ = ["GlobalAwareConnector", "IFAS", "IFASLMOutput", "LLMMode", "ScoreMode"]

LLMMode = Literal["frozen", "lora", "full"]
ScoreMode = Literal["yes_prob", "yes_no_softmax"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class GlobalAwareConnector(nn.Module):
    """GAC: [M learnable queries ; Linear(per-layer CLS)] → pre-LN (MSA, MCA to patches, MLP) × depth → LN → Linear."""

    def __init__(self, vision_width: int, num_vision_layers: int, out_dim: int, num_queries: int = 32,
                 width: int | None = None, depth: int = 1, num_heads: int = 8, mlp_ratio: float = 4.0,
                 use_global: bool = True):
        super().__init__()
        width = width or vision_width
        self.use_global = use_global
        self.num_tokens = num_queries + num_vision_layers
        # w/o GAC: the L global tokens are replaced by L more learnable queries
        self.queries = nn.Parameter(torch.randn(1, num_queries if use_global else self.num_tokens, width) * 0.02)
        self.global_proj = nn.Linear(vision_width, width) if use_global else None
        self.blocks = nn.ModuleList(Block(width, num_heads, context_dim=vision_width, mlp_ratio=mlp_ratio)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, patches: torch.Tensor, cls_tokens: torch.Tensor) -> torch.Tensor:
        """patches X_V (B, N, Dv), cls_tokens G_V (B, L, Dv) -> visual tokens (B, M+L, D)."""
        q = self.queries.expand(patches.shape[0], -1, -1)  # (B, M, Dg) or (B, M+L, Dg)
        if self.global_proj is not None:
            q = torch.cat([q, self.global_proj(cls_tokens)], dim=1)  # (B, M+L, Dg)
        for block in self.blocks:
            q = block(q, patches)  # (B, M+L, Dg)
        return self.proj(self.norm(q))  # (B, M+L, D)


@dataclass
class IFASLMOutput:
    """Teacher-forced LM output over the answer part of the sequence.

    logits (B, 1+A, V) at positions P-1 .. P+A-1 (logits[:, 0] is the first answer position, i.e. the score
    position); labels and judgment_mask (B, 1+A) aligned with them (column 0 is the last prompt token: -100 / False),
    ready for ``fasvlm.losses`` (which shift inside).
    """

    logits: torch.Tensor
    labels: torch.Tensor
    judgment_mask: torch.Tensor


class IFAS(nn.Module):
    """Frozen CLIP → GAC → causal LM (frozen, LoRA or full); scoring, teacher-forced LM logits and generation."""

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
        question: str = QUESTION,
        score: ScoreMode = "yes_prob",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
        vision_dtype: DType = "auto",
        llm_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        max_answer_tokens: int = 64,
        cache_vision_features: int = 0,
    ):
        super().__init__()
        if llm_mode not in ("frozen", "lora", "full"):
            raise ValueError(f"unknown llm_mode {llm_mode!r}; valid: frozen, lora, full")
        if score not in ("yes_prob", "yes_no_softmax"):
            raise ValueError(f"unknown score {score!r}; valid: yes_prob, yes_no_softmax")
        if vision_dtype != "auto" and vision_dtype not in _DTYPES:
            raise ValueError(f"unknown vision_dtype {vision_dtype!r}; valid: auto, {', '.join(_DTYPES)}")
        if llm_dtype not in _DTYPES:
            raise ValueError(f"unknown llm_dtype {llm_dtype!r}; valid: {', '.join(_DTYPES)}")
        self.llm_mode = llm_mode
        self.score_mode = score
        self.vision_dtype = vision_dtype
        # frozen-encoder feature cache (content-hash -> CPU tensors), at most this many images; 0 = off
        self.cache_vision_features = int(cache_vision_features)
        self._feature_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        # frozen vision encoder: no grad, eval mode for good (see train())
        self.vision = load_vision_encoder(vision).requires_grad_(False).eval()
        vcfg = self.vision.config
        self.tokenizer = load_tokenizer(llm, "causal_lm")
        self.prompt = IFASPrompt(self.tokenizer, question=question, max_answer_tokens=max_answer_tokens)
        self.max_answer_tokens = max_answer_tokens
        self._prompts: dict[str, IFASPrompt] = {}  # per conversation question

        self.llm = load_causal_lm(llm, torch_dtype=_DTYPES[llm_dtype])
        if llm_mode == "frozen":
            self.llm.requires_grad_(False).eval()
        elif llm_mode == "lora":
            from peft import LoraConfig, get_peft_model

            self.llm = get_peft_model(self.llm, LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(lora_target_modules),
                bias="none", task_type="CAUSAL_LM"))  # base frozen, adapters in float32 (autocast_adapter_dtype)
        base = self.llm.get_base_model() if llm_mode == "lora" else self.llm
        self._keep_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        # transformers >= 5.2x names the KV cache argument/output `cache` (was `past_key_values`)
        self._cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        embed_dim = self.llm.get_input_embeddings().embedding_dim

        width = gac_width or vcfg.hidden_size
        heads = gac_heads or (vcfg.num_attention_heads if width == vcfg.hidden_size else max(1, width // 64))
        self.gac = GlobalAwareConnector(vcfg.hidden_size, vcfg.num_hidden_layers, embed_dim, num_queries=num_queries,
                                        width=width, depth=gac_depth, num_heads=heads, mlp_ratio=gac_mlp_ratio,
                                        use_global=use_gac)
        self.register_buffer("prefix_ids", torch.tensor(self.prompt.prefix_ids, dtype=torch.long), persistent=False)
        self.register_buffer("suffix_ids", torch.tensor(self.prompt.suffix_ids, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------------------------------------------
    # modes and dtypes

    def train(self, mode: bool = True):
        """The vision encoder stays in eval mode; so does a frozen LLM (no dropout in frozen parts)."""
        super().train(mode)
        self.vision.eval()
        if self.llm_mode == "frozen":
            self.llm.eval()
        return self

    @property
    def num_visual_tokens(self) -> int:
        return self.gac.num_tokens

    @property
    def prompt_length(self) -> int:
        """P: prefix + visual tokens + suffix; the first answer token sits at position P."""
        return len(self.prompt.prefix_ids) + self.num_visual_tokens + len(self.prompt.suffix_ids)

    def _vision_dtype(self, device: torch.device) -> torch.dtype:
        if self.vision_dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return _DTYPES[self.vision_dtype]

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    # ------------------------------------------------------------------------------------------------------------
    # vision → visual tokens

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> visual tokens (B, M+L, D) in the LLM input width."""
        dtype = self._vision_dtype(pixel_values.device)
        if self.vision.embeddings.patch_embedding.weight.dtype != dtype:
            self.vision.to(dtype)  # once: frozen weights live in vision_dtype (bf16 on GPU by default)
        patches, cls_tokens = self._frozen_features(pixel_values, dtype)  # (B, N, Dv), (B, L, Dv)
        gac_dtype = self.gac.proj.weight.dtype
        return self.gac(patches.to(gac_dtype), cls_tokens.to(gac_dtype))  # (B, M+L, D)

    @torch.no_grad()
    def _encode_frozen(self, pixel_values: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.vision(pixel_values.to(dtype), output_hidden_states=True).hidden_states  # L+1 x (B, 1+N, Dv)
        return hidden[-1][:, 1:], torch.stack([h[:, 0] for h in hidden[1:]], dim=1)  # (B, N, Dv), (B, L, Dv)

    def _frozen_features(self, pixel_values: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch tokens and per-layer CLS tokens of the frozen encoder, from the cache where possible.

        The cache (``cache_vision_features`` > 0) is keyed by a hash of each image's pixels, so it is only useful
        when no augmentation changes them (``data.init_args.augment: false``): the same image then skips the encoder.
        Entries live on the CPU; at most ``cache_vision_features`` images are kept (later ones are computed).
        """
        if not self.cache_vision_features:
            return self._encode_frozen(pixel_values, dtype)
        import hashlib

        keys = [hashlib.blake2b(x.detach().cpu().numpy().tobytes(), digest_size=16).hexdigest() for x in pixel_values]
        missing = [i for i, k in enumerate(keys) if k not in self._feature_cache]
        fresh = self._encode_frozen(pixel_values[missing], dtype) if missing else None
        patches, cls_tokens = [None] * len(keys), [None] * len(keys)
        for j, i in enumerate(missing):
            patches[i], cls_tokens[i] = fresh[0][j], fresh[1][j]
            if len(self._feature_cache) < self.cache_vision_features:
                self._feature_cache[keys[i]] = (fresh[0][j].cpu(), fresh[1][j].cpu())
        device = pixel_values.device
        for i, k in enumerate(keys):
            if patches[i] is None:
                p, c = self._feature_cache[k]
                patches[i], cls_tokens[i] = p.to(device), c.to(device)
        return torch.stack(patches), torch.stack(cls_tokens)

    # ------------------------------------------------------------------------------------------------------------
    # sequences

    def build_inputs(self, visual: torch.Tensor, answers: AnswerTokens | None = None):
        """[prefix][visual][suffix][answer] embeddings, attention mask and full-length labels / judgment mask.

        visual (B, M+L, D) -> inputs_embeds (B, P+A, D), attention_mask (B, P+A); labels (B, P+A) with -100 on prompt,
        image and padding positions, judgment_mask (B, P+A) (both None without answers).
        """
        b, device = visual.shape[0], visual.device
        emb_dtype = self.llm.get_input_embeddings().weight.dtype
        parts = [self._embed(self.prefix_ids).expand(b, -1, -1), visual.to(emb_dtype),
                 self._embed(self.suffix_ids).expand(b, -1, -1)]
        p = self.prompt_length
        if answers is None:
            return torch.cat(parts, 1), torch.ones(b, p, dtype=torch.long, device=device), None, None
        ids, mask = answers.ids.to(device), answers.mask.to(device)
        embeds = torch.cat(parts + [self._embed(ids)], 1)  # (B, P+A, D)
        attention = torch.cat([torch.ones(b, p, dtype=torch.long, device=device), mask.long()], 1)
        ignore = torch.full((b, p), -100, dtype=torch.long, device=device)
        labels = torch.cat([ignore, ids.masked_fill(~mask, -100)], 1)
        judgment = torch.cat([torch.zeros(b, p, dtype=torch.bool, device=device),
                              answers.judgment_mask.to(device) & mask], 1)
        return embeds, attention, labels, judgment

    def llm_logits(self, embeds: torch.Tensor, attention: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last ``keep`` positions (B, keep, V); the LM head runs only there when the LLM allows it."""
        if self._keep_logits:
            return self.llm(inputs_embeds=embeds, attention_mask=attention, logits_to_keep=keep, use_cache=False).logits
        return self.llm(inputs_embeds=embeds, attention_mask=attention, use_cache=False).logits[:, -keep:]

    def lm_forward(self, pixel_values: torch.Tensor, answers: AnswerTokens) -> IFASLMOutput:
        """Teacher-forced forward over prompt + answers; logits only over the answer part (see IFASLMOutput)."""
        embeds, attention, labels, judgment = self.build_inputs(self.encode_image(pixel_values), answers)
        keep = labels.shape[1] - self.prompt_length + 1  # positions P-1 .. P+A-1
        logits = self.llm_logits(embeds, attention, keep)  # (B, 1+A, V)
        return IFASLMOutput(logits=logits, labels=labels[:, -keep:], judgment_mask=judgment[:, -keep:])

    # ------------------------------------------------------------------------------------------------------------
    # conversations (multi-task training: one question per sample)

    def prompt_for(self, question: str) -> IFASPrompt:
        """The token ids of the I-FAS prompt with ``question`` (cached per question)."""
        prompt = self._prompts.get(question)
        if prompt is None:
            prompt = IFASPrompt(self.tokenizer, question=question,
                                max_answer_tokens=self.max_answer_tokens)
            if len(self._prompts) < 10_000:
                self._prompts[question] = prompt
        return prompt

    def conversation_tokens(self, questions: list[str], answers: list[str]) -> list[tuple[list[int], list[int], int]]:
        """Per sample: the prompt tokens after the image (its question + " ASSISTANT:"), the answer tokens (truncated
        to ``max_answer_tokens``, EOS last) and the judgment span length (0 for answers without a judgment).

        A judgment answer is tokenised exactly as the single-task answers (``IFASPrompt.answer_ids``); any other
        answer is " " + its text + EOS.
        """
        out = []
        for i, (question, answer) in enumerate(zip(questions, answers)):
            prompt = self.prompt_for(question)
            judgment, rest = split_judgment(answer)
            if judgment is not None:
                ids, n_judg = prompt.answer_ids(judgment, rest)
                suffix = prompt.suffix_ids
            else:
                shared = len(prompt.encode(ANSWER_SEPARATOR + YES)) - len(prompt.judgment_ids[YES])
                suffix = prompt.suffix_ids[: len(prompt.suffix_ids) - shared]
                eos = [] if prompt.eos_id is None else [prompt.eos_id]
                ids, n_judg = (list(prompt.encode(ANSWER_SEPARATOR + rest)) + eos)[: self.max_answer_tokens], 0
            if not ids:
                raise ValueError(f"conversation sample {i}: answer {answer!r} has no token to supervise")
            out.append((list(suffix), ids, n_judg))
        return out

    def conversation_forward(self, pixel_values: torch.Tensor, questions: list[str], answers: list[str]):
        """Teacher-forced forward of [prefix][visual][question_i ASSISTANT:][answer_i], right-padded per row.

        Returns logits (B, 1+T, V) over the positions from the last visual token on, labels and judgment mask
        (B, 1+T) aligned with them (-100 / False on prompt and padding positions), and which rows hold a judgment.
        """
        model = self
        rows = self.conversation_tokens(questions, answers)
        visual = model.encode_image(pixel_values)  # (B, M+L, D)
        b, device = visual.shape[0], visual.device
        width = max(len(s) + len(a) for s, a, _ in rows)
        pad = model.prompt.pad_id
        ids = torch.full((b, width), pad, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.bool)
        labels = torch.full((b, width), -100, dtype=torch.long)
        judgment = torch.zeros((b, width), dtype=torch.bool)
        for i, (suffix, answer, n_judg) in enumerate(rows):
            n_s, n = len(suffix), len(suffix) + len(answer)
            ids[i, :n] = torch.tensor(suffix + answer)
            mask[i, :n] = True
            labels[i, n_s:n] = torch.tensor(answer)
            judgment[i, n_s:n_s + n_judg] = True
        ids, mask, labels, judgment = (t.to(device) for t in (ids, mask, labels, judgment))
        embed = model.llm.get_input_embeddings()
        prefix = embed(model.prefix_ids).expand(b, -1, -1)
        embeds = torch.cat([prefix, visual.to(prefix.dtype), embed(ids)], 1)  # (B, P0+M+L+T, D)
        attention = torch.cat([torch.ones(b, prefix.shape[1] + visual.shape[1], dtype=torch.long, device=device),
                               mask.long()], 1)
        keep = width + 1  # the last visual position predicts the first tail token
        logits = model.llm_logits(embeds, attention, keep)  # (B, 1+T, V)
        col = torch.full((b, 1), -100, dtype=torch.long, device=device)
        labels = torch.cat([col, labels], 1)
        judgment = torch.cat([torch.zeros((b, 1), dtype=torch.bool, device=device), judgment], 1)
        has_judgment = torch.tensor([n > 0 for _, _, n in rows], device=device)
        return logits, labels, judgment, has_judgment

    # ------------------------------------------------------------------------------------------------------------
    # scoring

    def judgment_probs(self, first_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P(first token of " Yes"), P(first token of " No") at the first answer position; logits (B, V) -> 2 x (B,)."""
        probs = first_logits.float().softmax(-1)
        return probs[:, self.prompt.yes_id], probs[:, self.prompt.no_id]

    def attack_score(self, first_logits: torch.Tensor) -> torch.Tensor:
        """P(attack) from the logits at the first answer position (B, V) -> (B,).

        The one place where the judgment probability becomes P(attack): ``yes_prob``: 1 − softmax over the vocabulary
        at the "Yes" token; ``yes_no_softmax``: 1 − softmax over {Yes, No} at "Yes".
        """
        logits = first_logits.float()
        if self.score_mode == "yes_no_softmax":
            pair = logits[:, [self.prompt.yes_id, self.prompt.no_id]].softmax(-1)  # (B, 2)
            return 1.0 - pair[:, 0]
        return 1.0 - logits.softmax(-1)[:, self.prompt.yes_id]

    def first_answer_logits(self, pixel_values: torch.Tensor, reuse_prefix: bool = True) -> torch.Tensor:
        """One forward over the prompt only: logits at the first answer position (B, V).

        ``reuse_prefix``: the constant text before ``<image>`` (BOS + system prompt + "USER: ") is encoded once per
        call, for one row, and its key/value cache is shared by the batch; only [visual][suffix] run per image. The
        logits equal the full forward's (tests/test_ifas.py). Off while gradients flow (training), where the prefix
        must take part in the graph of LoRA/full fine-tuning.
        """
        visual = self.encode_image(pixel_values)
        if reuse_prefix and not torch.is_grad_enabled():
            return self._first_logits_cached(visual)
        embeds, attention, _, _ = self.build_inputs(visual)
        return self.llm_logits(embeds, attention, 1)[:, -1]

    def _first_logits_cached(self, visual: torch.Tensor) -> torch.Tensor:
        """[prefix] once -> KV cache repeated over the batch -> [visual][suffix] with the cache (B, V)."""
        b, device = visual.shape[0], visual.device
        prefix = self._embed(self.prefix_ids)[None]  # (1, P0, D)
        first = self.llm(inputs_embeds=prefix, attention_mask=torch.ones(1, prefix.shape[1], dtype=torch.long,
                                                                         device=device), use_cache=True)
        cache = first[self._cache_arg]
        cache.batch_repeat_interleave(b)
        emb_dtype = self.llm.get_input_embeddings().weight.dtype
        rest = torch.cat([visual.to(emb_dtype), self._embed(self.suffix_ids).expand(b, -1, -1)], 1)  # (B, M+L+S, D)
        attention = torch.ones(b, prefix.shape[1] + rest.shape[1], dtype=torch.long, device=device)
        kwargs = {"logits_to_keep": 1} if self._keep_logits else {}
        kwargs[self._cache_arg] = cache
        out = self.llm(inputs_embeds=rest, attention_mask=attention, use_cache=True, **kwargs)
        return out.logits[:, -1]

    def prompt_flops(self) -> dict[str, int]:
        """Tokens the LLM runs per image for scoring, without and with the shared prefix (``reuse_prefix``)."""
        full = self.prompt_length
        return {"tokens_per_image_full": full, "tokens_per_image_reused_prefix": full - len(self.prompt.prefix_ids),
                "prefix_tokens": len(self.prompt.prefix_ids)}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Inference: P(attack) (B,) in one forward pass, no generation."""
        return self.attack_score(self.first_answer_logits(pixel_values))

    # ------------------------------------------------------------------------------------------------------------
    # generation

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, judgments: list[str] | None = None, max_new_tokens: int = 48,
                 visual: torch.Tensor | None = None, **generate_kwargs):
        """Greedy batched generation with a KV cache from the prompt (+ a forced judgment span per row).

        With ``judgments`` ("Yes"/"No" per row) the judgment tokens are appended to the prompt and generation continues
        with the interpretation; rows are left-padded to a common length. Returns what ``llm.generate`` returns (new
        tokens only, since the input is given as embeddings).
        """
        visual = self.encode_image(pixel_values) if visual is None else visual
        embeds, attention, _, _ = self.build_inputs(visual)  # (B, P, D)
        if judgments is not None:
            spans = [self.prompt.judgment_ids[j] for j in judgments]
            width = max(len(s) for s in spans)
            pad = self.prompt.pad_id
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in spans], device=embeds.device)  # (B, J) left-padded
            span_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in spans], device=embeds.device)
            # left padding: move each row's pad block before the prompt
            order = torch.cat([torch.ones_like(attention), 2 * span_mask], 1)  # pads 0, prompt 1, judgment 2
            embeds = torch.cat([embeds, self._embed(ids)], 1)
            attention = torch.cat([attention, span_mask], 1)
            perm = order.argsort(dim=1, stable=True)  # (B, P+J)
            embeds = embeds.gather(1, perm[..., None].expand_as(embeds))
            attention = attention.gather(1, perm)
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                      pad_token_id=self.prompt.pad_id)
        if self.prompt.eos_id is not None:
            kwargs["eos_token_id"] = self.prompt.eos_id
        kwargs.update(generate_kwargs)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention, **kwargs)

    @torch.no_grad()
    def explain(self, pixel_values: torch.Tensor, max_new_tokens: int = 48) -> list[dict]:
        """Per image: P(attack), the judgment ("Yes" if P(Yes) ≥ P(No) at the first answer position, else "No") and
        the interpretation generated after that judgment (greedy)."""
        visual = self.encode_image(pixel_values)
        embeds, attention, _, _ = self.build_inputs(visual)
        first = self.llm_logits(embeds, attention, 1)[:, -1]  # (B, V)
        scores = self.attack_score(first)
        p_yes, p_no = self.judgment_probs(first)
        judgments = [YES if y >= n else NO for y, n in zip(p_yes.tolist(), p_no.tolist())]
        new = self.generate(pixel_values, judgments=judgments, max_new_tokens=max_new_tokens, visual=visual)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [{"score": float(s), "judgment": j, "explanation": t.strip().lstrip(".").strip()}
                for s, j, t in zip(scores.tolist(), judgments, texts)]
