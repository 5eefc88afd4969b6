"""Backbone loading shared by every method: by Hugging Face id, by local directory, or from named presets.

A *preset* builds the architecture with random initialisation and needs no file:

- ``tiny``: 2 layers, width 32 (tests, CPU quickstart),
- ``small``: about ViT-S for vision, a 125M-parameter OPT, FLAN-T5-small, a 384-wide Q-Former (CPU measurements),
- real-size presets with the published dimensions: ``clip-vit-b16``, ``clip-vit-l14``, ``opt-2.7b``, ``flan-t5-base``,
  ``bert-base`` (throughput can be measured with no weights at hand).

Anything else is a local directory (``save_pretrained`` output) or a hub id. With ``HF_HUB_OFFLINE=1`` or no network a
hub id fails with a message that says to pass a local path. Presets come with a built-in tokenizer (byte-level BPE
trained in memory on the project's own prompt vocabulary), so tiny models need no tokenizer files either.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from fasvlm.data_modules.transforms import CLIP_MEAN, CLIP_STD, ImageSpec

__all__ = [
    "BackboneNotFoundError",
    "ImageSpec",
    "VISION_PRESETS",
    "CAUSAL_LM_PRESETS",
    "T5_PRESETS",
    "QFORMER_PRESETS",
    "CLIP_PRESETS",
    "RESNET_PRESETS",
    "load_vision_encoder",
    "load_resnet",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_clip",
    "save_clip",
    "load_causal_lm",
    "load_t5",
    "qformer_config",
    "load_qformer_weights",
    "load_tokenizer",
    "image_spec",
    "is_preset",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> CLIPVisionConfig kwargs
VISION_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                 patch_size=8, projection_dim=32),
    "small": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6, image_size=224,
                  patch_size=16, projection_dim=384),
    "clip-vit-b16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         image_size=224, patch_size=16, projection_dim=512),
    "clip-vit-l14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         image_size=224, patch_size=14, projection_dim=768),
}
# name -> OPTConfig kwargs (vocab_size None = the built-in tokenizer's size)
CAUSAL_LM_PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=None, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                 word_embed_proj_dim=32, max_position_embeddings=256),
    "small": dict(vocab_size=50272, hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                  word_embed_proj_dim=768, max_position_embeddings=2048),  # OPT-125m
    "opt-2.7b": dict(vocab_size=50272, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
                     word_embed_proj_dim=2560, max_position_embeddings=2048),
}
CAUSAL_LM_PRESETS["opt-125m"] = CAUSAL_LM_PRESETS["small"]
# name -> T5Config kwargs
T5_PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=None, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                 feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "small": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False),  # FLAN-T5-small
    "flan-t5-base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                         num_heads=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
T5_PRESETS["flan-t5-small"] = T5_PRESETS["small"]
# name -> BertConfig kwargs for a Q-Former (layer count is the Q-Former's own argument)
QFORMER_PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=None, hidden_size=32, num_attention_heads=2, intermediate_size=64),
    "small": dict(vocab_size=30522, hidden_size=384, num_attention_heads=6, intermediate_size=1536),
    "bert-base": dict(vocab_size=30522, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}

# name -> a whole CLIP (image and text towers) for contrastive pretraining (fasvlm.systems.clip_pretrain): the vision
# preset, CLIPTextConfig kwargs (vocab from the built-in "clip" tokenizer) and the shared embedding width
CLIP_PRESETS: dict[str, dict] = {
    "tiny": dict(vision="tiny", text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, max_position_embeddings=64), projection_dim=32),
}

# name -> ResNetConfig kwargs (the CNN baselines SSDG and SA-FAS; ImageNet weights come from a local directory
# written by save_pretrained, e.g. microsoft/resnet-18, since torchvision cannot be imported on the CPU path)
RESNET_PRESETS: dict[str, dict] = {
    "tiny": dict(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic",
                 image_size=64),
    "resnet18": dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic",
                     image_size=256),
}

_ALL_PRESETS = {"resnet": RESNET_PRESETS, "vision": VISION_PRESETS, "causal_lm": CAUSAL_LM_PRESETS, "t5": T5_PRESETS, "qformer": QFORMER_PRESETS,
                "clip": CLIP_PRESETS}


class BackboneNotFoundError(OSError):
    """A backbone name is neither a preset, nor a local directory, nor reachable on the hub."""


def is_preset(kind: str, name: str) -> bool:
    return name in _ALL_PRESETS[kind]


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return True
    try:
        from huggingface_hub import is_offline_mode

        return bool(is_offline_mode())
    except ImportError:  # older huggingface_hub
        return False


# directories that project commands write (by base name) -> how to build them, for the not-found error
_BUILD_HINTS = {
    "tiny_clip": "build it with `make tiny-clip` (fasvlm synth --out data/pretrain --preset pretrain, then "
                 "fasvlm fit --config conf/clip/tiny_pretrain.yaml)",
}


def _from_pretrained(kind: str, loader, name: str, **kwargs):
    """Load from a local directory or a hub id with an actionable error (no trust_remote_code)."""
    presets = ", ".join(_ALL_PRESETS[kind])
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BackboneNotFoundError(f"{name}: expected a directory written by save_pretrained (config.json + weights)")
        return loader(str(path), local_files_only=True, **kwargs)
    if path.name in _BUILD_HINTS:  # a directory the project builds itself, not a hub id
        raise BackboneNotFoundError(f"{kind} backbone directory not found: {name}; {_BUILD_HINTS[path.name]}")
    if name.startswith((".", "/", "~")) or os.sep in name and (name.count("/") > 1 or Path(name.split("/")[0]).is_dir()):
        raise BackboneNotFoundError(f"{kind} backbone directory not found: {name}")
    if _offline():
        raise BackboneNotFoundError(
            f"cannot load {kind} backbone {name!r}: Hugging Face hub is offline (HF_HUB_OFFLINE=1). "
            f"Download it elsewhere and pass the local directory instead, or use a preset ({presets})."
        )
    try:
        return loader(name, **kwargs)
    except OSError as err:  # no network, unknown id, gated repo ...
        raise BackboneNotFoundError(
            f"cannot load {kind} backbone {name!r} from the Hugging Face hub ({err.__class__.__name__}: {err}). "
            f"With no network, pass a local directory written by save_pretrained, or use a preset ({presets})."
        ) from err


def _unknown_preset(kind: str, name: str) -> BackboneNotFoundError:
    return BackboneNotFoundError(f"unknown {kind} preset {name!r}; presets: {', '.join(_ALL_PRESETS[kind])}")


# ---------------------------------------------------------------------------------------------------------------------
# vision


def load_vision_encoder(name_or_path: str = "tiny", *, image_size: int | None = None) -> nn.Module:
    """A ``transformers.CLIPVisionModel``: preset (random init), local directory or hub id; or, for ``timm:<name>``,
    a timm encoder that answers the same way (:mod:`fasvlm.backbones_timm`, the ``timm`` extra).

    A full CLIP checkpoint (``CLIPModel``) directory also works: its vision tower is loaded.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if name_or_path.startswith("timm:"):  # the `timm` extra, imported only when asked for
        from .backbones_timm import load_timm_vision_encoder

        return load_timm_vision_encoder(name_or_path, image_size=image_size)
    if name_or_path in VISION_PRESETS:
        cfg = dict(VISION_PRESETS[name_or_path])
        if image_size is not None:
            cfg["image_size"] = image_size
        return CLIPVisionModel(CLIPVisionConfig(**cfg))
    config = Path(name_or_path).expanduser() / "config.json"
    if config.is_file() and _model_type(config) == "clip":
        # a whole local CLIP: load it, keep the image tower (strict: a missing tensor is an error). Loading the
        # directory as a CLIPVisionModel would work too, but prints a report listing every text-tower tensor.
        from transformers import CLIPModel

        clip = _from_pretrained("vision", CLIPModel.from_pretrained, name_or_path)
        vision = CLIPVisionModel(clip.config.vision_config)
        getattr(vision, "vision_model", vision).load_state_dict(clip.vision_model.state_dict())  # 4.x nests it
        return vision.to(clip.dtype)
    return _from_pretrained("vision", CLIPVisionModel.from_pretrained, name_or_path)


def load_resnet(name_or_path: str = "tiny") -> nn.Module:
    """A ``transformers.ResNetModel``: preset (``tiny``, ``resnet18``; random init), local directory or hub id (e.g.
    ``microsoft/resnet-18`` saved with ``save_pretrained``: ImageNet weights)."""
    from transformers import ResNetConfig, ResNetModel

    if name_or_path in RESNET_PRESETS:
        cfg = {k: v for k, v in RESNET_PRESETS[name_or_path].items() if k != "image_size"}
        return ResNetModel(ResNetConfig(**cfg))
    return _from_pretrained("resnet", ResNetModel.from_pretrained, name_or_path)


def _model_type(config_json: Path) -> str | None:
    import json

    try:
        return json.loads(config_json.read_text()).get("model_type")
    except (OSError, ValueError) as err:
        raise BackboneNotFoundError(f"{config_json}: unreadable config ({err}); expected save_pretrained's JSON") from err


def load_clip(name_or_path: str = "tiny", *, vision: str | None = None, image_size: int | None = None):
    """A whole ``transformers.CLIPModel`` and its tokenizer: preset (random init; ``vision`` swaps in another vision
    preset), local directory or hub id (then ``vision``/``image_size`` must be None)."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    if name_or_path in CLIP_PRESETS:
        preset = CLIP_PRESETS[name_or_path]
        vision = vision or preset["vision"]
        if vision not in VISION_PRESETS:
            raise _unknown_preset("vision", vision)
        tok = _builtin_tokenizer("clip")
        vcfg = dict(VISION_PRESETS[vision], projection_dim=preset["projection_dim"])
        if image_size is not None:
            vcfg["image_size"] = image_size
        tcfg = dict(preset["text"], vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, projection_dim=preset["projection_dim"])
        config = CLIPConfig(text_config=tcfg, vision_config=vcfg, projection_dim=preset["projection_dim"])
        return CLIPModel(config), tok
    if vision is not None or image_size is not None:
        raise ValueError(f"vision/image_size only apply to CLIP presets ({', '.join(CLIP_PRESETS)}), "
                         f"not to the checkpoint {name_or_path!r}")
    model = _from_pretrained("clip", CLIPModel.from_pretrained, name_or_path)
    return model, _from_pretrained("clip", AutoTokenizer.from_pretrained, name_or_path)


def save_clip(model, tokenizer, image_size: int, out: str | Path) -> Path:
    """``save_pretrained`` of the CLIP, its tokenizer and a CLIP image processor into ``out``, replaced atomically
    (written beside it, then renamed), so a reader never sees half a model."""
    try:
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor  # no torchvision needed
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor

    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
                       ).save_pretrained(tmp)
    old = out.with_name(out.name + f".old{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def image_spec(name_or_path: str = "tiny", *, image_size: int | None = None) -> ImageSpec:
    """Input size and normalisation of a vision backbone (CLIP mean/std unless the checkpoint says otherwise)."""
    if name_or_path.startswith("timm:"):
        from .backbones_timm import timm_image_spec_args

        return ImageSpec(**timm_image_spec_args(name_or_path, image_size=image_size))
    if name_or_path in VISION_PRESETS:
        return ImageSpec(size=image_size or VISION_PRESETS[name_or_path]["image_size"])
    path = Path(name_or_path)
    if path.is_dir() and (path / "preprocessor_config.json").is_file():
        import json

        cfg = json.loads((path / "preprocessor_config.json").read_text())
        size = cfg.get("crop_size") or cfg.get("size") or {}
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge")
        return ImageSpec(size=int(image_size or size), mean=tuple(cfg.get("image_mean", CLIP_MEAN)),
                         std=tuple(cfg.get("image_std", CLIP_STD)))
    if path.is_dir() and (path / "config.json").is_file():
        import json

        cfg = json.loads((path / "config.json").read_text())
        cfg = cfg.get("vision_config", cfg)
        return ImageSpec(size=int(image_size or cfg.get("image_size", 224)))
    return ImageSpec(size=image_size or 224)


# ---------------------------------------------------------------------------------------------------------------------
# language models


def load_causal_lm(name_or_path: str = "tiny", *, torch_dtype: torch.dtype | None = None) -> nn.Module:
    """Any Hugging Face causal LM; presets are OPT architectures (OPT-2.7B by default in I-FAS)."""
    from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

    if name_or_path in CAUSAL_LM_PRESETS:
        cfg = dict(CAUSAL_LM_PRESETS[name_or_path])
        tok = load_tokenizer(name_or_path, "causal_lm")
        cfg["vocab_size"] = cfg["vocab_size"] or len(tok)
        model = OPTForCausalLM(OPTConfig(**cfg, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                         eos_token_id=tok.eos_token_id))
        return model.to(torch_dtype) if torch_dtype is not None else model
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    return _from_pretrained("causal_lm", AutoModelForCausalLM.from_pretrained, name_or_path, **kwargs)


def load_t5(name_or_path: str = "tiny", *, torch_dtype: torch.dtype | None = None) -> nn.Module:
    """A ``T5ForConditionalGeneration`` (FLAN-T5-base by default in InstructFLIP)."""
    from transformers import T5Config, T5ForConditionalGeneration

    if name_or_path in T5_PRESETS:
        cfg = dict(T5_PRESETS[name_or_path])
        tok = load_tokenizer(name_or_path, "t5")
        cfg["vocab_size"] = cfg["vocab_size"] or len(tok)
        model = T5ForConditionalGeneration(T5Config(**cfg, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                                    decoder_start_token_id=tok.pad_token_id))
        return model.to(torch_dtype) if torch_dtype is not None else model
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    return _from_pretrained("t5", T5ForConditionalGeneration.from_pretrained, name_or_path, **kwargs)


def qformer_config(name_or_path: str = "tiny", *, num_hidden_layers: int = 2, encoder_width: int | None = None,
                   cross_attention_freq: int = 2):
    """A ``BertConfig`` for a Q-Former: preset dimensions, or read from a BERT / Q-Former checkpoint directory."""
    from transformers import BertConfig

    if name_or_path in QFORMER_PRESETS:
        cfg = dict(QFORMER_PRESETS[name_or_path])
        cfg["vocab_size"] = cfg["vocab_size"] or len(load_tokenizer(name_or_path, "bert"))
        config = BertConfig(**cfg, num_hidden_layers=num_hidden_layers)
    else:
        config = _from_pretrained("qformer", BertConfig.from_pretrained, name_or_path)
        config.num_hidden_layers = num_hidden_layers
    config.encoder_width = encoder_width or config.hidden_size
    config.cross_attention_freq = cross_attention_freq
    return config


def load_qformer_weights(name_or_path: str) -> dict[str, torch.Tensor]:
    """State dict of a BERT-base or InstructBLIP/BLIP-2 Q-Former checkpoint directory (safetensors or .bin).

    Non-safetensors files are read with ``weights_only=True``: they were not produced by this run.
    """
    path = Path(name_or_path)
    if not path.is_dir():
        raise BackboneNotFoundError(f"Q-Former weights: {name_or_path} is not a directory written by save_pretrained")
    files = sorted(path.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors.torch import load_file

        for f in files:
            state.update(load_file(str(f)))
    else:
        bins = sorted(path.glob("*.bin"))
        if not bins:
            raise BackboneNotFoundError(f"{path}: no *.safetensors or *.bin weight file")
        for f in bins:
            state.update(torch.load(f, map_location="cpu", weights_only=True))
    return state


# ---------------------------------------------------------------------------------------------------------------------
# tokenizers

TokenizerFamily = Literal["causal_lm", "t5", "bert", "clip"]

# The built-in tokenizer learns its merges from this text (every prompt, option and template the project uses, plus
# plain English), so tiny presets tokenise the real prompts into few tokens. It is byte-level: any text encodes.
_CORPUS = """
A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and
polite answers to the user's questions. USER: <image> Is this photo of a real person? ASSISTANT: Yes. No. This is
a real face of a person. This is a photo printed on paper. This is a poster. This is an A4 paper print. This is a 2D
face mask. This is a 2D upper-body mask. This is a 2D region mask with the eye and mouth regions cut out. This is a
replay attack on a PC screen. Pad screen. Phone screen. This is a 3D mask with a smooth plastic surface.
What is the presentation attack type of this face? Choose from the options. (1) Real face (2) Photo (3) Poster
(4) A4-paper (5) 2D face mask (6) 2D upper-body mask (7) 2D region mask (8) PC screen (9) Pad screen (10) Phone screen
(11) 3D mask. What is the illumination condition of this image? (1) Normal (2) Strong (3) Back (4) Dark. What is the
environment of this image? (1) Indoor (2) Outdoor. What is the camera quality of this image? (1) Low (2) Medium
(3) High. moire pattern, screen bezel, glare, reflection, halftone dots, paper texture, paper edges, cut edges, holes
for the eyes and mouth, specular highlights, no skin pores, blur, noise, lighting, shadow, indoor, outdoor, dark, bright.
the a an of and in on with is are was this that photo face person man woman young old smiling hair glasses background
"""


@functools.cache
def _builtin_tokenizer(family: TokenizerFamily):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if family == "t5":
        specials = ["<pad>", "</s>", "<unk>"]
    elif family == "clip":  # end-of-text id 3: CLIP's text tower pools at the first end-of-text token (id 2 is legacy)
        specials = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]
    elif family == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    else:  # OPT-like: <s>=0 <pad>=1 </s>=2 <unk>=3; every sequence starts with </s> as OPT's does
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token=next(t for t in specials if "unk" in t.lower())))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if family == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    if family == "clip":
        bos_id, eos_id = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
        tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                           special_tokens=[("<|startoftext|>", bos_id),
                                                                           ("<|endoftext|>", eos_id)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                       bos_token="<|startoftext|>", eos_token="<|endoftext|>")
    if family == "bert":
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                           special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", bos_token="[DEC]")
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A $B", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="right")


_FAMILY_KIND = {"causal_lm": "causal_lm", "t5": "t5", "bert": "qformer", "clip": "vision"}


def load_tokenizer(name_or_path: str, family: TokenizerFamily):
    """The tokenizer that goes with a backbone: built in for presets, else ``AutoTokenizer`` from the path or id."""
    if family not in _FAMILY_KIND:
        raise ValueError(f"unknown tokenizer family {family!r}; valid: {', '.join(_FAMILY_KIND)}")
    if name_or_path in _ALL_PRESETS[_FAMILY_KIND[family]]:
        return _builtin_tokenizer(family)
    from transformers import AutoTokenizer

    return _from_pretrained(_FAMILY_KIND[family], AutoTokenizer.from_pretrained, name_or_path)
