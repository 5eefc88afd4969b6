"""Spoof-aware Captioning and Filtering (SCF): I-FAS paper, Sec. 3.3 and Algorithm 1.

The captions table that ``IFASSystem(captions=...)`` reads is built in four resumable stages (``fasvlm caption scf``)::

    1 caption   a general captioner C_G (any Hugging Face image-to-text model; BLIP-2 OPT-2.7B by default) captions
                every attack image
    2 filter    keep the captions whose words match the keyword dictionary of the sample's spoof family
                (conf/caption/keywords.yaml; :class:`KeywordFilter`)
    3 finetune  fine-tune C_G on the kept (image, caption) pairs with Lightning (same strategies and precision as
                training) -> the spoof-aware captioner C_S, written with ``save_pretrained``
    4 final     real images are captioned by C_G, attack images by C_S -> ``<out>/captions.parquet``
                (``sample_id, caption`` + provenance columns) and the same table as a ``datasets`` folder
                ``<out>/captions.hf`` (:func:`~fasvlm.data_modules.hf_datasets.caption_features`, with stage 2's
                keyword decisions; readable wherever captions.parquet is)

Every inference stage is a Lightning predict loop (:class:`ImageTextModel` wraps the Hugging Face model) run by
:func:`run_predict_stage`: each rank writes its rows as parquet shards as batches finish
(``<stage>/shards/part-a<attempt>-r<rank>-<seq>.parquet``); at the end rank 0 merges all shards into
``<stage>/data.parquet`` (readable with ``datasets.Dataset.from_parquet``) and writes ``<stage>/DONE.json`` last. An
interrupted stage, rerun with the same command, skips the sample ids its shards already hold and runs the rest under a
new attempt number, so the merged table has each id once and equals an uninterrupted run's. Stage 3 resumes from its
``last.ckpt``. Statistics per stage (kept/dropped per family, counts, timings) go to ``<out>/stats.json`` and the log.

Images are selected with the training data's :class:`~fasvlm.data_modules.DomainSpec` (dataset + root, or manifest;
split / protocol / attacks) and cropped around the face box with the training margin, as ``FASDataset`` does; the
captioner's own processor then resizes and normalises them. Keep the domain names of the training config: sample ids
(``<domain>/<video>/<frame>``) use them.

Multi-process runs: every rank runs the same program; stage results are computed identically on every rank, files are
written by rank 0 only (atomically), and predict shards are written per rank. Under DDP the predict loops split the
remaining items into contiguous, unpadded shards per rank (no sample is captioned twice).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from fasvlm.captioning.hf import ImageTextModel
from fasvlm.captioning.stages import (
    DONE,
    DataSettings,
    ImageItems,
    TrainerSettings,
    barrier,
    make_trainer,
    rank,
    read_stage,
    resolve_dtype,
    run_predict_stage,
    say,
    write_json,
    write_parquet,
)
from fasvlm.data_modules.datamodule import select_records
from fasvlm.data_modules.hf_datasets import write_captions
from fasvlm.data_modules.record import SampleRecord
from fasvlm.data_modules.taxonomy import attack_family
from fasvlm.text.prompts import compose_caption

__all__ = [
    "SCF_STAGES",
    "DEFAULT_CAPTIONER",
    "DEFAULT_KEYWORDS",
    "CaptionerSettings",
    "FinetuneSettings",
    "KeywordFilter",
    "finetune_captioner",
    "run_scf",
    "teach_captioner",
]

log = logging.getLogger(__name__)

SCF_STAGES = ("caption", "filter", "finetune", "final")

# The keyword dictionary of stage 2 (conf/caption/keywords.yaml holds the same; tests check that they agree).
# Families are those of taxonomy.attack_family. "photo", "photograph" and "video" alone are left out on purpose:
# general captioners start most captions, live ones included, with "a photo of" / "a photograph of" / "a video of";
# only phrases that say the face is a reproduction count. "cut" alone is left out ("cut" hair, "a cut on the lip").
DEFAULT_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "families": {
        "print": ["print*", "paper", "poster*", "a4", "halftone", "magazine", "sheet of paper",
                  "picture of a picture", "photo of a photo", "photograph of a photograph", "photo of a picture",
                  "picture of a photo", "printed photo*", "photo print*"],
        "paper_mask": ["paper", "mask*", "cut out", "cutout*", "cut-out*", "cardboard", "eye hole*", "holes",
                       "print*"],
        "replay": ["screen*", "monitor*", "display*", "phone*", "smartphone*", "cellphone*", "tablet*", "ipad*",
                   "laptop*", "computer*", "tv", "television", "moire", "bezel", "replay*", "video replay*",
                   "playing a video", "video on a", "pixel*", "pixelated"],
        "mask": ["mask*", "silicone", "latex", "resin", "plaster", "rubber", "plastic", "3d", "prosthetic*",
                 "costume"],
        "mannequin": ["mannequin*", "dummy", "dummies", "doll*", "statue*", "sculpture*", "bust", "wax", "plastic",
                      "fake head"],
    },
    "attacks": {
        "makeup": ["makeup", "make up", "cosmetic*", "painted", "face paint"],
        "tattoo": ["tattoo*"],
        "glasses": ["glasses", "eyeglasses", "sunglasses", "goggles"],
        "funny_eye": ["glasses", "eyeglasses", "goggles", "cartoon eyes"],
        "paper_glasses": ["glasses", "eyeglasses"],
        "wig": ["wig*", "hairpiece"],
    },
}
DEFAULT_CAPTIONER = "Salesforce/blip2-opt-2.7b"


# ---------------------------------------------------------------------------------------------------------------------
# settings (the typed schema of `fasvlm caption scf`; conf/caption/scf.yaml)


@dataclass
class CaptionerSettings:
    """The general captioner C_G: a Hugging Face image-to-text model id or ``save_pretrained`` directory."""

    model: str = DEFAULT_CAPTIONER
    prompt: str = ""  # BLIP-2 captions with no prompt; "a photo of" conditions it
    max_new_tokens: int = 30
    num_beams: int = 1
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    generate_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneSettings:
    """Stage 3: fine-tuning C_G on the kept captions (LAVIS BLIP-2 caption fine-tuning: Q-Former trained, ViT and LLM
    frozen)."""

    trainable: list[str] | None = field(default_factory=lambda: ["qformer", "query_tokens", "language_projection"])
    lr: float = 1e-5
    weight_decay: float = 0.05
    scheduler: Literal["constant", "cosine", "onecycle"] = "cosine"
    warmup_frac: float = 0.1
    max_epochs: int = 5
    max_steps: int = -1
    batch_size: int = 16
    accumulate_grad_batches: int = 1
    min_kept: int = 1  # fewer kept captions than this is an error (nothing to learn the spoof-aware style from)
    seed: int = 0


def teach_captioner(model: str | Path, records: Sequence[SampleRecord], out: str | Path, trainer: TrainerSettings,
                    steps: int = 60, lr: float = 3e-3, margin: float = 0.2, batch_size: int = 8) -> Path:
    """Fine-tune a (tiny) captioner on the attack/style template captions of ``records`` and save it to ``out``.

    A random tiny BLIP-2 writes byte noise that no keyword matches; after a few dozen steps on the templates it
    writes template words, so the SCF keyword filter has something to keep (CPU demo and tests). Not for real data.
    """
    items = [{**_item(r), "caption": compose_caption(r.attack, r.illumination, r.environment, r.camera_quality)}
             for r in records]
    work = Path(out).with_name(Path(out).name + ".teach")
    done = finetune_captioner(work, items, records, CaptionerSettings(model=str(model)),
                              FinetuneSettings(trainable=None, lr=lr, scheduler="constant", max_steps=steps,
                                               max_epochs=10_000, batch_size=batch_size, min_kept=1),
                              trainer, DataSettings(margin=margin, num_workers=0))
    if rank() == 0:
        import shutil

        if Path(out).exists():
            shutil.rmtree(out)
        shutil.copytree(done, out)
        shutil.rmtree(work)
    barrier()
    return Path(out)


# ---------------------------------------------------------------------------------------------------------------------
# stage 2: keyword filter


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


@dataclass
class KeywordFilter:
    """Keep a caption when its words match a keyword of the sample's spoof family (SCF stage 2).

    ``families`` maps a family of :func:`~fasvlm.data_modules.taxonomy.attack_family` (print, paper_mask, replay,
    mask, mannequin) to keywords; ``attacks`` adds keywords for single taxonomy names. Matching is on lower-cased
    words (letters and digits; "cut-out" is "cut out"): a keyword matches when its words occur consecutively in the
    caption, whole words only. A trailing ``*`` adds inflections of the last word, not any continuation: the stem
    followed by one of :data:`STEM_SUFFIXES` (with the final consonant doubled before -ed/-er/-ing), so "print*"
    matches "prints", "printed", "printing", "printer", "printout", while "cut*" would not match "cute" and "wig*"
    not "wiggle". A family with no keywords keeps nothing.
    """

    families: dict[str, list[str]] = field(default_factory=dict)
    attacks: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> KeywordFilter:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"keyword dictionary {path} not found (conf/caption/keywords.yaml is the default)")
        data = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "keywords") -> KeywordFilter:
        unknown = set(data) - {"families", "attacks"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected 'families' and optionally 'attacks'")
        families = {str(k): [str(w) for w in (v or [])] for k, v in (data.get("families") or {}).items()}
        valid = {"print", "paper_mask", "replay", "mask", "mannequin"}
        bad = set(families) - valid
        if bad:
            raise ValueError(f"{where}: unknown spoof famil(ies) {sorted(bad)}; valid: {', '.join(sorted(valid))}")
        attacks = {str(k): [str(w) for w in (v or [])] for k, v in (data.get("attacks") or {}).items()}
        for name in attacks:
            attack_family(name)  # unknown taxonomy names raise with the valid list
        return cls(families=families, attacks=attacks)

    @classmethod
    def load(cls, value: str | dict | None) -> KeywordFilter:
        """From a YAML path, an inline dict, or None (the defaults, :data:`DEFAULT_KEYWORDS`)."""
        if value is None:
            return cls.from_dict(DEFAULT_KEYWORDS, "DEFAULT_KEYWORDS")
        return cls.from_dict(value) if isinstance(value, dict) else cls.from_yaml(value)

    def keywords(self, attack: str) -> list[str]:
        return list(self.families.get(attack_family(attack), [])) + list(self.attacks.get(attack, []))

    def matches(self, caption: str | None, attack: str) -> list[str]:
        """The keywords of ``attack``'s family (and the attack itself) found in ``caption``."""
        if caption is None:
            return []
        words = _words(caption)
        found = []
        for keyword in self.keywords(attack):
            if _phrase_in(keyword, words):
                found.append(keyword)
        return found

    def apply(self, table):
        """Split a captions table (``sample_id, caption, attack``) into kept and dropped rows (+ ``keywords``) and
        per-family / per-attack statistics."""
        table = table.copy()
        table["family"] = [attack_family(a) for a in table["attack"]]
        table["keywords"] = [", ".join(self.matches(c, a)) for c, a in zip(table["caption"], table["attack"])]
        no_caption = table["caption"].isna() | (table["caption"].astype(str).str.strip() == "")
        keep = (table["keywords"] != "") & ~no_caption
        kept, dropped = table[keep].reset_index(drop=True), table[~keep].reset_index(drop=True)
        stats: dict[str, Any] = {"captioned": int(len(table)), "kept": int(len(kept)), "dropped": int(len(dropped)),
                                 "no_caption": int(no_caption.sum()), "per_family": {}, "per_attack": {}}
        for col, key in (("family", "per_family"), ("attack", "per_attack")):
            for name, group in table.groupby(col):
                k = int(keep[group.index].sum())
                stats[key][str(name)] = {"kept": k, "dropped": int(len(group) - k)}
        return kept, dropped, stats


STEM_SUFFIXES = ("", "s", "es", "d", "ed", "er", "ers", "ing", "ings", "out", "outs")
_DOUBLING_SUFFIXES = ("ed", "er", "ers", "ing", "ings")


def stem_matches(stem: str, word: str) -> bool:
    """Whether ``word`` is ``stem`` plus an inflection (:data:`STEM_SUFFIXES`; consonant doubling before -ed/-er/-ing:
    "cut" -> "cutting"): the word-boundary rule of a ``stem*`` keyword."""
    if not word.startswith(stem):
        return False
    rest = word[len(stem):]
    if rest in STEM_SUFFIXES:
        return True
    return bool(stem) and rest[:1] == stem[-1] and rest[1:] in _DOUBLING_SUFFIXES


def _phrase_in(keyword: str, words: list[str]) -> bool:
    prefix = keyword.strip().endswith("*")
    parts = _words(keyword)
    if not parts:
        return False
    n = len(parts)
    for i in range(len(words) - n + 1):
        window = words[i:i + n]
        if window[:-1] == parts[:-1] and (stem_matches(parts[-1], window[-1]) if prefix else window[-1] == parts[-1]):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------------
# stage 3: fine-tuning


class _TrainData(L.LightningDataModule):
    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int, collate, seed: int):
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.collate, self.seed = (dataset, batch_size, num_workers,
                                                                                    collate, seed)

    def train_dataloader(self) -> DataLoader:
        # shuffled with its own generator; Lightning swaps in a DistributedSampler under DDP
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          collate_fn=self.collate, generator=torch.Generator().manual_seed(self.seed),
                          drop_last=False, pin_memory=torch.cuda.is_available())


def finetune_captioner(directory: str | Path, kept: Sequence[dict], records: Sequence[SampleRecord],
                       captioner: CaptionerSettings, settings: FinetuneSettings, trainer: TrainerSettings,
                       data: DataSettings, callbacks: Iterable[Callback] = ()) -> Path:
    """SCF stage 3: fine-tune the general captioner on the kept (image, caption) pairs; returns the directory of the
    spoof-aware captioner (``<directory>/captioner``, written with ``save_pretrained``). Resumes from
    ``<directory>/checkpoints/last.ckpt`` when a previous run was interrupted."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    directory = Path(directory)
    out = directory / "captioner"
    if (directory / DONE).is_file():
        return out
    if len(kept) < settings.min_kept:
        raise ValueError(f"SCF stage 3: {len(kept)} captions kept by the keyword filter (finetune.min_kept = "
                         f"{settings.min_kept}); nothing to fine-tune on. Check the captioner's output in "
                         f"{directory.parent / '2_filter' / 'dropped.parquet'} and the keyword dictionary")
    L.seed_everything(settings.seed, workers=True, verbose=False)
    module = ImageTextModel(captioner.model, dtype="float32", trainable=settings.trainable, lr=settings.lr,
                            weight_decay=settings.weight_decay, scheduler=settings.scheduler,
                            warmup_frac=settings.warmup_frac)
    dataset = ImageItems(kept, records, data.margin)
    ckpt_dir = directory / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.exists() else None
    t = make_trainer(trainer, max_epochs=settings.max_epochs, max_steps=settings.max_steps,
                     accumulate_grad_batches=settings.accumulate_grad_batches, default_root_dir=str(directory),
                     logger=TensorBoardLogger(str(directory), name="", version="", default_hp_metric=False),
                     callbacks=[ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", save_top_k=1, monitor=None,
                                                enable_version_counter=False, save_on_train_epoch_end=True),
                                *callbacks],
                     enable_model_summary=False, log_every_n_steps=1)
    if type(t.strategy).__name__ in ("FSDPStrategy", "ModelParallelStrategy") or getattr(t.strategy, "zero_stage_3",
                                                                                              False):
        raise ValueError(f"SCF stage 3 saves the captioner with save_pretrained from rank 0, which needs unsharded "
                         f"parameters; {type(t.strategy).__name__} shards them. Use DDP (conf/strategy/ddp.yaml) or "
                         "DeepSpeed ZeRO-2 (conf/strategy/deepspeed_zero2.yaml) for this stage")
    say(f"{directory.name}: fine-tuning {captioner.model} on {len(kept)} kept captions"
         + (f" (resuming from {resume})" if resume else ""))
    started = time.perf_counter()
    t.fit(module, datamodule=_TrainData(dataset, settings.batch_size, data.num_workers,
                                        module.collate(captioner.prompt, mode="train"), settings.seed),
          ckpt_path=resume)
    if t.is_global_zero:
        module.save_pretrained(out)
        loss = t.callback_metrics.get("train/loss")
        write_json(directory / DONE, {"samples": len(kept), "steps": t.global_step, "epochs": t.current_epoch,
                                      "final_loss": None if loss is None else float(loss),
                                      "seconds": round(time.perf_counter() - started, 3), "captioner": str(out)})
    barrier()
    return out


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


def _item(record: SampleRecord) -> dict:
    return {"key": record.sample_id, "sample_id": record.sample_id, "path": record.path, "label": int(record.label),
            "attack": record.attack, "family": attack_family(record.attack), "domain": record.domain,
            "split": record.split}



def _caption_stage(directory: Path, records: list[SampleRecord], model: str, captioner: CaptionerSettings,
                   trainer: TrainerSettings, data: DataSettings, shard_size: int, callbacks: Iterable[Callback]):
    def factory():
        return ImageTextModel(model, output_key="caption", max_new_tokens=captioner.max_new_tokens,
                              num_beams=captioner.num_beams, dtype=resolve_dtype(captioner.dtype),
                              generate_kwargs=captioner.generate_kwargs)

    return run_predict_stage(directory, [_item(r) for r in records], factory,
                             lambda m: m.collate(captioner.prompt, mode="generate"), trainer, records=records,
                             margin=data.margin, batch_size=data.batch_size, num_workers=data.num_workers,
                             shard_size=shard_size, callbacks=callbacks)


def _caption_counts(table) -> dict:
    ok = table["caption"].notna() & (table["caption"].astype(str).str.strip() != "")
    return {"images": int(len(table)), "captioned": int(ok.sum()), "unreadable_or_empty": int((~ok).sum()),
            "per_family": {str(k): int(v) for k, v in table["family"].value_counts().items()}}


def run_scf(out: str | Path, data: DataSettings, trainer: TrainerSettings, captioner: CaptionerSettings,
            keywords: str | dict | None, finetune: FinetuneSettings, stages: Sequence[str] = SCF_STAGES,
            shard_size: int = 256, callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Run the SCF stages (those in ``stages``, each only if not done yet) and return the statistics.

    Layout of ``out``: ``1_caption/``, ``2_filter/`` (kept/dropped parquet), ``3_finetune/captioner/``,
    ``4_final_live/``, ``4_final_attack/``, ``captions.parquet`` (the I-FAS captions table), ``stats.json``.
    """
    import pandas as pd

    bad = set(stages) - set(SCF_STAGES)
    if bad:
        raise ValueError(f"unknown SCF stage(s) {sorted(bad)}; valid: {', '.join(SCF_STAGES)}")
    out = Path(out)
    callbacks = list(callbacks)
    stats_path = out / "stats.json"
    stats: dict[str, Any] = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    stats["config"] = {"captioner": asdict(captioner), "finetune": asdict(finetune), "trainer": asdict(trainer)}

    def save_stats() -> None:
        if rank() == 0:
            write_json(stats_path, stats)

    kw = KeywordFilter.load(keywords)  # fail early on a bad dictionary
    records = select_records(data.domains)
    attacks = [r for r in records if r.label == 1]
    lives = [r for r in records if r.label == 0]
    say(f"SCF: {len(records)} images ({len(lives)} live, {len(attacks)} attack) from "
         f"{', '.join(d.name for d in data.domains)} -> {out}")

    general = None
    if "caption" in stages or "filter" in stages:
        t0 = time.perf_counter()
        general = _caption_stage(out / "1_caption", attacks, captioner.model, captioner, trainer, data, shard_size,
                                 callbacks)
        stats.setdefault("1_caption", {}).update(_caption_counts(general) if len(general) else {"images": 0})
        stats["1_caption"]["seconds"] = round(time.perf_counter() - t0, 3)
        save_stats()
        say(f"1_caption: {stats['1_caption']}")

    kept = None
    if "filter" in stages or "finetune" in stages:
        fdir = out / "2_filter"
        if (fdir / DONE).is_file():
            kept = pd.read_parquet(fdir / "kept.parquet")
        else:
            if general is None:
                general = read_stage(out / "1_caption")
                if general is None:
                    raise FileNotFoundError(f"SCF stage 'filter' needs stage 'caption' ({out / '1_caption'}); "
                                            "run it first (--stages caption filter ...)")
            kept, dropped, fstats = kw.apply(general)
            stats["2_filter"] = fstats
            if rank() == 0:
                write_parquet(fdir / "kept.parquet", kept)
                write_parquet(fdir / "dropped.parquet", dropped)
                write_json(fdir / "stats.json", fstats)
                write_json(fdir / DONE, {"kept": len(kept), "dropped": len(dropped)})
            save_stats()
        say("2_filter: kept/dropped per family: " + ", ".join(
            f"{k} {v['kept']}/{v['dropped']}" for k, v in stats.get("2_filter", {}).get("per_family", {}).items()))

    spoof_aware = out / "3_finetune" / "captioner"
    if "finetune" in stages:
        by_id = {r.sample_id: r for r in attacks}
        rows = [row for row in kept.to_dict("records") if row["sample_id"] in by_id]
        t0 = time.perf_counter()
        finetune_captioner(out / "3_finetune", rows, [by_id[r["sample_id"]] for r in rows], captioner, finetune,
                           trainer, data, callbacks=callbacks)
        done = json.loads((out / "3_finetune" / DONE).read_text())
        stats["3_finetune"] = {**done, "seconds_total": round(time.perf_counter() - t0, 3)}
        save_stats()
        say(f"3_finetune: {stats['3_finetune']}")

    if "final" in stages:
        if not (out / "3_finetune" / DONE).is_file():
            raise FileNotFoundError(f"SCF stage 'final' needs the spoof-aware captioner ({spoof_aware}); run stage "
                                    "'finetune' first")
        t0 = time.perf_counter()
        live = _caption_stage(out / "4_final_live", lives, captioner.model, captioner, trainer, data, shard_size,
                              callbacks) if lives else pd.DataFrame(columns=["sample_id", "caption"])
        attack = _caption_stage(out / "4_final_attack", attacks, str(spoof_aware), captioner, trainer, data,
                                shard_size, callbacks) if attacks else pd.DataFrame(columns=["sample_id", "caption"])
        live = live.assign(captioner="general")
        attack = attack.assign(captioner="spoof_aware")
        table = pd.concat([live, attack], ignore_index=True)
        ok = table["caption"].notna() & (table["caption"].astype(str).str.strip() != "")
        columns = ["sample_id", "caption", "captioner", "label", "attack", "family", "domain", "split"]
        final = table[ok][[c for c in columns if c in table.columns]].sort_values("sample_id").reset_index(drop=True)
        if rank() == 0:
            write_parquet(out / "captions.parquet", final)
            fdir = out / "2_filter"
            kept_t, dropped_t = (pd.read_parquet(fdir / f) if (fdir / f).is_file() else None
                                 for f in ("kept.parquet", "dropped.parquet"))
            write_captions(out, final, kept_t, dropped_t)  # <out>/captions.hf: the same table, typed, with a card
        stats["4_final"] = {"live_general": int(ok[: len(live)].sum()), "attack_spoof_aware": int(ok[len(live):].sum()),
                            "empty_or_unreadable": int((~ok).sum()), "rows": int(len(final)),
                            "seconds": round(time.perf_counter() - t0, 3), "captions": str(out / "captions.parquet")}
        save_stats()
        say(f"4_final: {stats['4_final']}")
    barrier()
    return stats
