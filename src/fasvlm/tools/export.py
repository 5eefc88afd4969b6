"""``fasvlm export``: trainable weights as safetensors + config JSON; DeepSpeed checkpoint directory -> one file.

Two modes::

    fasvlm export --ckpt runs/x/checkpoints/best.ckpt --out exported/x
        -> exported/x/model.safetensors   the checkpoint's ``state_dict`` (the systems keep only trainable parameters
                                          and their buffers there; frozen backbones are referenced by id/path in
                                          the hyper-parameters and reloaded, never copied)
           exported/x/config.json         class path, hyper-parameters, source checkpoint, tensor summary,
                                          preprocessing (size, mean, std, crop margin), decision threshold
           exported/x/README.md           model card: method, training data and protocol, test metrics, use, limits
           exported/x/model.onnx          with --onnx (LLM-free methods): float32 NCHW normalised input
                                          ``pixel_values`` (dynamic batch) -> ``p_attack`` = P(attack)

    fasvlm export --deepspeed-dir runs/x/checkpoints/last.ckpt --out runs/x/last-fp32.ckpt
        -> a single-file Lightning checkpoint (fp32 ``state_dict`` + Lightning's client state: hyper-parameters, loops,
           callbacks; no optimizer/scheduler state), via
           ``lightning.pytorch.utilities.deepspeed.convert_zero_checkpoint_to_fp32_state_dict``. With the project's
           DeepSpeed configs (``exclude_frozen_parameters: true``) the DeepSpeed checkpoint, and so the file, holds the
           trainable parameters only.

``--ckpt`` also accepts a DeepSpeed checkpoint directory (converted in a temporary directory first). Exported files are
readable by the group and others (0644). ``fasvlm predict --model <export dir | model.onnx>`` scores files with them.

Checkpoints are read with ``torch.load(..., weights_only=True)``: an exported or converted checkpoint may come from
anywhere, and unpickling arbitrary objects would run arbitrary code. :func:`load_exported` rebuilds the
LightningModule from an export directory.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "export_checkpoint", "convert_deepspeed", "load_checkpoint", "load_exported",
           "export_onnx", "checkpoint_threshold", "EXPORT_FORMAT"]

EXPORT_FORMAT = "fasvlm.export/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
_DTYPES = ("keep", "float32", "bfloat16", "float16")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A single-file checkpoint, loaded on CPU with ``weights_only=True`` (no arbitrary unpickling)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (a DeepSpeed checkpoint is a directory: pass it "
                                "to --ckpt or convert it with --deepspeed-dir)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle.UnpicklingError with the offending global in the message
        raise RuntimeError(
            f"{path} cannot be loaded with weights_only=True: {err}\n"
            "It holds an object other than tensors and plain containers. fasvlm does not unpickle arbitrary objects "
            "from checkpoints; re-save it in the process that wrote it with plain types only.") from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a Lightning checkpoint (a dict), got {type(ckpt).__name__}")
    return ckpt


def _jsonable(value: Any, where: str, notes: list[str]) -> Any:
    """Hyper-parameters as JSON: containers kept, paths as strings, scalars as is; anything else as its repr."""
    import torch

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}", notes) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, f"{where}[{i}]", notes) for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor) and value.numel() <= 64:
        return _jsonable(value.tolist(), where, notes)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    notes.append(f"{where}: {type(value).__name__} stored as its repr")
    return repr(value)


def _split_hparams(ckpt: dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(class path, instantiator, hyper-parameters) from what Lightning stored.

    LightningCLI stores the model's class path in ``hyper_parameters["_class_path"]`` and the function that rebuilds
    it in ``"_instantiator"``; a module trained without the CLI has only its ``save_hyperparameters`` arguments.
    """
    hp = dict(ckpt.get("hyper_parameters") or {})
    class_path = hp.pop("_class_path", None)
    instantiator = hp.pop("_instantiator", None)
    return class_path, instantiator, hp


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, *, dtype: str = "keep",
                      class_path: str | None = None, source: str | Path | None = None) -> dict[str, Any]:
    """Write ``model.safetensors`` + ``config.json`` for a single-file checkpoint; returns the config written.

    ``source`` is what config.json names as the origin (default: ``ckpt_path``), e.g. the DeepSpeed directory a
    temporary converted file came from.
    """
    import torch
    from safetensors.torch import save_file

    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r}; valid: {', '.join(_DTYPES)}")
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    ckpt = load_checkpoint(ckpt_path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{ckpt_path} has no 'state_dict' (keys: {sorted(ckpt)}); is it a Lightning checkpoint?")

    notes: list[str] = []
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            notes.append(f"state_dict[{name!r}]: {type(value).__name__}, not a tensor: skipped")
            continue
        t = value.detach().to("cpu")
        if dtype != "keep" and t.is_floating_point():
            t = t.to(getattr(torch, dtype))
        # safetensors refuses tensors that share storage (tied weights): each entry gets its own copy
        tensors[name] = t.clone().contiguous()
    if not tensors:
        raise ValueError(f"{ckpt_path}: the state_dict holds no tensors")

    stored_class_path, instantiator, hp = _split_hparams(ckpt)
    if class_path and stored_class_path and class_path != stored_class_path:
        raise ValueError(f"--class-path {class_path} disagrees with the checkpoint's {stored_class_path}")
    class_path = class_path or stored_class_path
    if class_path is None:
        notes.append("the checkpoint stores no class path (trained without LightningCLI); pass --class-path to "
                     "record it")

    dtypes: dict[str, int] = {}
    for t in tensors.values():
        key = str(t.dtype).removeprefix("torch.")
        dtypes[key] = dtypes.get(key, 0) + t.numel()
    config = {
        "format": EXPORT_FORMAT,
        "class_path": class_path,
        "hparams_name": ckpt.get("hparams_name"),
        "instantiator": instantiator,
        "hyper_parameters": _jsonable(hp, "hyper_parameters", notes),
        "datamodule_hyper_parameters": _jsonable(ckpt.get("datamodule_hyper_parameters"),
                                                 "datamodule_hyper_parameters", notes),
        "source": {
            "checkpoint": str(Path(source or ckpt_path).resolve()),
            "epoch": ckpt.get("epoch"),
            "global_step": ckpt.get("global_step"),
            "lightning_version": ckpt.get("pytorch-lightning_version"),
        },
        "weights": {
            "file": WEIGHTS_FILE,
            "num_tensors": len(tensors),
            "num_elements": sum(t.numel() for t in tensors.values()),
            "elements_by_dtype": dtypes,
            "content": "the checkpoint's state_dict: trainable parameters and their buffers; frozen backbones are "
                       "rebuilt from the hyper-parameters",
        },
        "notes": notes,
    }
    config["preprocessing"] = _preprocessing(ckpt, class_path, hp)
    config["threshold"] = checkpoint_threshold(ckpt)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS_FILE),
              metadata={"format": "pt", "fasvlm_format": EXPORT_FORMAT, "class_path": class_path or ""})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    (out_dir / CARD_FILE).write_text(model_card(config, Path(source or ckpt_path)))
    for name in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE):
        (out_dir / name).chmod(0o644)
    return config


def _preprocessing(ckpt: dict[str, Any], class_path: str | None, hp: dict[str, Any]) -> dict[str, Any]:
    """What a caller must do to an image before the model: the system's image spec and the training crop margin."""
    from fasvlm.backbones import IMAGENET_MEAN, IMAGENET_STD, ImageSpec, image_spec

    backbone = hp.get("vision", hp.get("clip"))  # I-FAS, InstructFLIP, baseline, ViTAF: vision; FLIP, CFPL: clip
    if backbone is not None:
        spec = image_spec(str(backbone), image_size=hp.get("image_size"))
    elif "resnet" in hp and hp.get("image_size"):  # SSDG, SA-FAS: transformers' ResNet at image_size, ImageNet stats
        spec = ImageSpec(size=int(hp["image_size"]), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    else:
        raise ValueError(f"cannot tell the input size and normalisation of {class_path}: its hyper-parameters name no "
                         "`vision`, `clip` or `resnet` backbone")
    margin = (ckpt.get("FASDataModule") or {}).get("margin", 0.2)
    return {"size": int(spec.size), "mean": [float(v) for v in spec.mean], "std": [float(v) for v in spec.std],
            "margin": float(margin), "layout": "float32 NCHW RGB, (pixel / 255 - mean) / std",
            "crop": "square of side max(w, h) * (1 + margin) centred on the face box (black padding outside the "
                    "image), resized to size x size (bicubic)"}


def checkpoint_threshold(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The honest decision threshold chosen on the source validation set (FASMetricsCallback's checkpointed state)."""
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "FASMetricsCallback" in str(key) and isinstance(state, dict) and state.get("val_threshold") is not None:
            return {"value": float(state["val_threshold"]),
                    "source": f"source validation, epoch {state.get('val_threshold_epoch')}",
                    "rule": "score = P(attack) >= value -> attack"}
    return {"value": None, "source": None, "rule": "score = P(attack) >= value -> attack"}


def model_card(config: dict[str, Any], source: Path) -> str:
    """The export's README.md: method, training data and protocol, test metrics, intended use and limits.

    Data and metrics come from the run directory the checkpoint sits in (``<run>/config.yaml``,
    ``<run>/test_metrics.json``) when they are there; what is unknown is said to be unknown.
    """
    run = source.resolve().parent.parent if source.parent.name == "checkpoints" else source.resolve().parent
    method = str(config.get("class_path") or "unknown").rsplit(".", 1)[-1]
    lines = [f"# fasvlm export: {method}", "", "Face anti-spoofing (presentation attack detection) model exported by "
             "`fasvlm export`. Score = P(attack); label 1 = attack.", "", "## Method", "",
             f"- class: `{config.get('class_path')}`",
             f"- source checkpoint: `{config['source']['checkpoint']}` (epoch {config['source']['epoch']}, step "
             f"{config['source']['global_step']})"]
    hp = config.get("hyper_parameters") or {}
    for key in ("vision", "llm", "llm_mode", "t5"):
        if key in hp:
            lines.append(f"- {key}: `{hp[key]}`")
    lines += ["", "## Training data and protocol", ""]
    cfg_file = run / "config.yaml"
    if cfg_file.is_file():
        import yaml

        data = (yaml.safe_load(cfg_file.read_text()) or {}).get("data") or {}
        args = data.get("init_args") or {}
        for role in ("sources", "val_sources", "targets"):
            for d in args.get(role) or []:
                where = d.get("manifest") or d.get("root")
                lines.append(f"- {role}: {d.get('name')} ({d.get('dataset') or 'manifest'} {where}, split "
                             f"{d.get('split')}{', protocol ' + str(d['protocol']) if d.get('protocol') else ''})")
    else:
        lines.append(f"unknown ({cfg_file} not found)")
    thr = config.get("threshold") or {}
    pre = config.get("preprocessing") or {}
    lines += ["", "## Decision threshold and preprocessing", "",
              f"- threshold: {thr['value']} ({thr['source']}): score >= threshold -> attack"
              if thr.get("value") is not None else "- threshold: none stored: choose one on your own validation data",
              f"- input: {pre.get('layout')}, size {pre.get('size')}, mean {pre.get('mean')}, std {pre.get('std')}",
              f"- crop: {pre.get('crop')}, margin {pre.get('margin')}", "", "## Test metrics", ""]
    metrics = run / "test_metrics.json"
    if metrics.is_file():
        report = json.loads(metrics.read_text())
        lines += ["| domain | n | AUC | HTER (paper) | HTER (honest) | APCER | BPCER |", "|---|---|---|---|---|---|---|"]

        def pct(v):
            return "-" if v is None else f"{100 * float(v):.2f}"

        for name, entry in (report.get("domains") or {}).items():
            paper, honest = entry.get("paper", {}), entry.get("honest", {})
            lines.append(f"| {name} | {paper.get('n', '')} | {pct(paper.get('auc'))} | {pct(paper.get('hter'))} | "
                         f"{pct(honest.get('hter'))} | {pct(honest.get('apcer'))} | {pct(honest.get('bpcer'))} |")
        lines.append("")
        lines.append("Paper mode: threshold at each domain's own EER point (the field's shared code); honest mode: the "
                     "source-validation threshold above, unchanged on every domain (ISO/IEC 30107-3 APCER/BPCER).")
    else:
        lines.append(f"unknown ({metrics} not found: run `fasvlm test` before exporting to include them)")
    lines += ["", "## Intended use and limits", "",
              "- Research on face presentation attack detection: scoring face images or video frames for the attack "
              "types and capture conditions of the training data.",
              "- Not a certified biometric security component. Scores do not transfer to unseen attack types, "
              "cameras or populations without validation; re-choose the threshold on data of the deployment.",
              "- Inputs must be face crops made as described above (`fasvlm predict` does it).", ""]
    return "\n".join(lines)


def export_onnx(out_dir: str | Path, *, opset: int = 17) -> Path:
    """``model.onnx`` of an export directory's LLM-free path: ``pixel_values`` float32 (B, 3, S, S) normalised as its
    preprocessing says -> ``p_attack`` (B,). Dynamic batch. I-FAS has no LLM-free path: an error."""
    import torch

    out_dir = Path(out_dir)
    config = json.loads((out_dir / CONFIG_FILE).read_text())
    system = load_exported(out_dir)
    if "IFAS" in type(system).__name__:
        raise ValueError("ONNX export covers the LLM-free methods (InstructFLIP, the baselines); I-FAS scores with "
                         "its LLM")

    class _Score(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            out = self.inner(pixel_values)
            return out["score"] if isinstance(out, dict) else out

    size = int(config["preprocessing"]["size"])
    dummy = torch.zeros(2, 3, size, size)
    path = out_dir / ONNX_FILE
    torch.onnx.export(_Score(system).eval(), (dummy,), str(path), input_names=["pixel_values"],
                      output_names=["p_attack"], dynamic_axes={"pixel_values": {0: "batch"}, "p_attack": {0: "batch"}},
                      opset_version=opset, dynamo=False)
    path.chmod(0o644)
    return path


def convert_deepspeed(ds_dir: str | Path, out_file: str | Path, *, tag: str | None = None) -> dict[str, Any]:
    """DeepSpeed ZeRO checkpoint directory -> single-file fp32 Lightning checkpoint (no optimizer state).

    Returns a summary (number of tensors, global step) rather than the checkpoint itself.
    """
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    ds_dir, out_file = Path(ds_dir), Path(out_file)
    if not ds_dir.is_dir():
        raise FileNotFoundError(f"{ds_dir} is not a directory; a DeepSpeed checkpoint (e.g. checkpoints/last.ckpt "
                                "written by DeepSpeedStrategy) is a directory holding 'latest' and 'checkpoint/'")
    if not (ds_dir / "latest").is_file() and tag is None:
        raise FileNotFoundError(f"{ds_dir} has no 'latest' file; pass --tag (the sub-directory holding the "
                                "*_model_states.pt files)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    client_state = convert_zero_checkpoint_to_fp32_state_dict(ds_dir, out_file, tag=tag)
    state = client_state.get("state_dict", {})
    return {"file": str(out_file), "num_tensors": len(state),
            "num_elements": int(sum(v.numel() for v in state.values() if hasattr(v, "numel"))),
            "global_step": client_state.get("global_step"), "epoch": client_state.get("epoch")}


def load_exported(directory: str | Path, *, class_path: str | None = None):
    """Rebuild the LightningModule of an export directory: ``Class(**hyper_parameters)`` + the exported weights
    (:func:`fasvlm.systems.common.from_pretrained`: the class comes from the systems registry)."""
    from fasvlm.systems.common import from_pretrained

    return from_pretrained(directory, class_path=class_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasvlm export", allow_abbrev=False,
        description="Export trainable weights (safetensors + config.json), or convert a DeepSpeed checkpoint "
                    "directory into the project's single-file checkpoint.",
        epilog="examples:\n"
               "  fasvlm export --ckpt runs/quickstart/checkpoints/best.ckpt --out exported/quickstart\n"
               "  fasvlm export --deepspeed-dir runs/ifas/checkpoints/last.ckpt --out runs/ifas/last-fp32.ckpt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", type=Path, help="a checkpoint file (or a DeepSpeed checkpoint directory) to export "
                                               "as --out/model.safetensors + --out/config.json")
    src.add_argument("--deepspeed-dir", type=Path, help="a DeepSpeed checkpoint directory to convert into the "
                                                        "single-file checkpoint --out")
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory (--ckpt) or output checkpoint file (--deepspeed-dir)")
    parser.add_argument("--dtype", choices=_DTYPES, default="keep",
                        help="cast floating-point tensors of the export (default: keep the stored dtype)")
    parser.add_argument("--class-path", default=None,
                        help="LightningModule class to record when the checkpoint stores none")
    parser.add_argument("--tag", default=None, help="DeepSpeed tag (default: the directory's 'latest' file)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write --out/model.onnx (LLM-free methods: InstructFLIP, baselines)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.deepspeed_dir is not None:
            if args.out.is_dir():
                raise ValueError(f"--out {args.out} is a directory; with --deepspeed-dir it names the output file")
            summary = convert_deepspeed(args.deepspeed_dir, args.out, tag=args.tag)
            print(f"wrote {summary['file']}: {summary['num_tensors']} tensors, {summary['num_elements']:,} values, "
                  f"global_step {summary['global_step']}")
            return 0
        ckpt = args.ckpt
        with tempfile.TemporaryDirectory(prefix="fasvlm-export-") as tmp:
            if ckpt.is_dir():
                converted = Path(tmp) / "converted.ckpt"
                convert_deepspeed(ckpt, converted, tag=args.tag)
                ckpt = converted
            config = export_checkpoint(ckpt, args.out, dtype=args.dtype, class_path=args.class_path,
                                       source=args.ckpt)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"fasvlm export: error: {err}", file=sys.stderr)
        return 1
    if args.onnx:
        try:
            print(f"wrote {export_onnx(args.out)}")
        except (ValueError, RuntimeError) as err:
            print(f"fasvlm export: error: {err}", file=sys.stderr)
            return 1
    w = config["weights"]
    print(f"wrote {args.out / WEIGHTS_FILE} ({w['num_tensors']} tensors, {w['num_elements']:,} values) and "
          f"{args.out / CONFIG_FILE} (class {config['class_path']})")
    for note in config["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
