"""``fasvlm caption``: spoof-aware captioning (SCF) and instruction data.

Subcommands (each takes ``--config FILE`` (repeatable, later files win), ``--print_config`` and dotted overrides)::

    fasvlm caption scf --config conf/caption/scf.yaml --out runs/scf
        SCF stages caption -> filter -> finetune -> final (I-FAS Algorithm 1); writes <out>/captions.parquet, the
        table IFASSystem(captions=...) reads. Rerun the same command to resume an interrupted run.
        Multi-GPU: add --config conf/strategy/ddp.yaml (same Trainer settings as training).
    fasvlm caption instruct --config conf/caption/instruct.yaml --out runs/instruct
        QA generation for description / coarse / fine / reasoning / localisation, CLIP filter, LLM augmentation
        and judge; writes <out>/conversations.json (LLaVA format) for ConversationDataModule.
    fasvlm caption export-review --conversations runs/instruct/conversations.json --out review.csv
    fasvlm caption import-review --review review.csv --out runs/instruct/conversations.reviewed.json
    fasvlm caption tiny-models --out data/tiny_models
        tiny random BLIP-2, CLIP and OPT written with save_pretrained (CPU demo configs: conf/caption/*_tiny.yaml)
"""

from __future__ import annotations

import sys
from pathlib import Path

from fasvlm.captioning.instruct import (
    AugmentSettings,
    ClipSettings,
    FilterSettings,
    JudgeSettings,
    MLLMSettings,
    TaskSpec,
)
from fasvlm.captioning.scf import SCF_STAGES, CaptionerSettings, FinetuneSettings
from fasvlm.captioning.stages import DataSettings, TrainerSettings

__all__ = ["main", "build_parser", "scf", "instruct", "export_review", "import_review", "tiny_models"]


def scf(out: str, data: DataSettings = DataSettings(), trainer: TrainerSettings = TrainerSettings(),
        captioner: CaptionerSettings = CaptionerSettings(), keywords: str | dict | None = None,
        finetune: FinetuneSettings = FinetuneSettings(), stages: tuple[str, ...] = SCF_STAGES,
        shard_size: int = 256) -> int:
    """Spoof-aware captioning and filtering (I-FAS Algorithm 1) -> <out>/captions.parquet.

    Args:
        out: output directory (one sub-directory per stage, stats.json, captions.parquet).
        data: images to caption, selected as in training (DomainSpec list), crop margin, batch size, workers.
        trainer: Lightning Trainer settings (accelerator, devices, num_nodes, precision, strategy).
        captioner: the general captioner (Hugging Face image-to-text model id or save_pretrained directory).
        keywords: keyword dictionary (YAML path or inline {families, attacks}); null = the built-in defaults
            (the same as conf/caption/keywords.yaml).
        finetune: stage-3 fine-tuning settings.
        stages: stages to run (each skipped when already done): caption, filter, finetune, final.
        shard_size: rows per parquet shard of a predict stage (what an interruption can lose).
    """
    from fasvlm.captioning.scf import run_scf

    run_scf(out, data, trainer, captioner, keywords, finetune, stages=stages, shard_size=shard_size)
    return 0


def instruct(out: str, tasks: dict[str, TaskSpec], data: DataSettings = DataSettings(),
             trainer: TrainerSettings = TrainerSettings(), mllm: MLLMSettings = MLLMSettings(),
             clip: ClipSettings = ClipSettings(), augment: AugmentSettings = AugmentSettings(),
             judge: JudgeSettings = JudgeSettings(), filters: FilterSettings = FilterSettings(),
             captions: str | None = None, review: str | None = "review.csv", seed: int = 0,
             shard_size: int = 256) -> int:
    """Instruction data (LLaVA conversations) for multi-task FAS training -> <out>/conversations.json.

    Args:
        out: output directory (images/, one sub-directory per predict stage, conversations.json, dropped.jsonl,
            stats.json, the review file).
        tasks: per task (description, coarse, fine, reasoning, localisation): question templates, MLLM prompt,
            answer template (conf/caption/instruct.yaml).
        data: images, selected as in training (DomainSpec list), crop margin, workers.
        trainer: Lightning Trainer settings for the predict loops.
        mllm: the multimodal LLM that answers.
        clip: CLIP image-text filter (model, threshold, tasks).
        augment: LLM augmentation (n_new new pairs per pair, JSON).
        judge: LLM judge of question/answer/label agreement.
        filters: refusal and hedging phrases.
        captions: SCF captions table used as the attack description (null: attack/style templates).
        review: name of the review file written next to the conversations (.csv or .jsonl; null: none).
        seed: seed of the question-template choice.
        shard_size: rows per parquet shard of a predict stage.
    """
    from fasvlm.captioning.instruct import build_instructions

    build_instructions(out, data, trainer, tasks, mllm, clip, augment, judge, filters, captions=captions,
                       review=review, seed=seed, shard_size=shard_size)
    return 0


def export_review(conversations: str, out: str) -> int:
    """Write a conversations file as a review table (.csv or .jsonl) with editable question/answer and keep columns.

    Args:
        conversations: LLaVA conversations file (from `fasvlm caption instruct`).
        out: review file (.csv or .jsonl).
    """
    from fasvlm.captioning.instruct import export_review as run

    print(f"review table: {run(conversations, out)}")
    return 0


def import_review(review: str, out: str, filters: FilterSettings = FilterSettings()) -> int:
    """Turn a reviewed table back into a LLaVA conversations file (rows with keep=0 dropped, edits re-validated).

    Args:
        review: the reviewed .csv/.jsonl file.
        out: the conversations file to write (.json).
        filters: refusal and hedging phrases checked again on edited answers.
    """
    from fasvlm.captioning.instruct import import_review as run

    run(review, out, filters)
    return 0


def tiny_models(out: str = "data/tiny_models", seed: int = 0, teach_root: str | None = None,
                teach_dataset: str = "celeba_spoof", teach_steps: int = 60) -> int:
    """Write tiny random models with save_pretrained: <out>/blip2 (captioner/MLLM), <out>/clip, <out>/llm (OPT).

    Args:
        out: output directory.
        seed: initialisation seed.
        teach_root: a dataset root (e.g. data/synthetic/celeba_spoof): the tiny BLIP-2 is then fine-tuned on the
            template captions of its training split, so that it writes words the SCF keyword filter can match.
        teach_dataset: adapter of teach_root.
        teach_steps: fine-tuning steps on the templates.
    """
    from fasvlm.captioning.hf import build_tiny_blip2, build_tiny_clip, build_tiny_llm
    from fasvlm.captioning.scf import teach_captioner
    from fasvlm.data_modules.datamodule import DomainSpec, select_records

    root = Path(out)
    for name, build in (("blip2", build_tiny_blip2), ("clip", build_tiny_clip), ("llm", build_tiny_llm)):
        print(f"{name}: {build(root / name, seed=seed)}")
    if teach_root:
        records = select_records([DomainSpec(name=teach_dataset, dataset=teach_dataset, root=teach_root)])
        trainer = TrainerSettings(accelerator="cpu", devices=1, precision="32-true")
        path = teach_captioner(root / "blip2", records, root / "blip2", trainer, steps=teach_steps)
        print(f"blip2 taught the template captions of {len(records)} images: {path}")
    return 0


_COMMANDS = {"scf": scf, "instruct": instruct, "export-review": export_review, "import-review": import_review,
             "tiny-models": tiny_models}


def build_parser():
    """jsonargparse parser with one subcommand per function above (typed signatures = the config schema)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="fasvlm caption", description=(__doc__ or "").split("\n\n")[0],
                            env_prefix="FASVLM_CAPTION", default_env=False)
    sub = parser.add_subcommands(dest="command")
    for name, func in _COMMANDS.items():
        p = ArgumentParser(prog=f"fasvlm caption {name}", description=(func.__doc__ or "").split("\n\n")[0])
        p.add_argument("--config", action=ActionConfigFile, help="YAML config file(s); later files win")
        p.add_function_arguments(func, fail_untyped=True)
        sub.add_subcommand(name, p, help=(func.__doc__ or "").split("\n")[0])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = parser.parse_args(argv)
    name = cfg.command
    init = parser.instantiate(cfg)[name]
    kwargs = {k: v for k, v in vars(init).items() if k != "config"}
    return int(_COMMANDS[name](**kwargs) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
