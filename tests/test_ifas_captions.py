"""I-FAS reads the SCF captions table; a missing table names the command that writes it (issue 19, item 5)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from fasvlm.systems.ifas import IFASSystem

TINY = dict(vision="tiny", llm="tiny", llm_mode="full", num_queries=4, lr=1e-3, scheduler="constant")


def _batch():
    return {"label": torch.tensor([0, 1]), "sample_id": ["src/v0/f0", "src/v1/f0"], "attack": ["live", "photo"],
            "illumination_name": [None, None], "environment_name": [None, None], "camera_quality_name": [None, None]}


class _Trainer:  # the one attribute the system reads: trainer.datamodule.captions
    def __init__(self, captions):
        self.datamodule = type("DM", (), {"captions": captions})()


def test_scf_is_the_default_and_a_missing_table_names_the_command(tmp_path):
    torch.manual_seed(0)
    system = IFASSystem(**TINY)
    assert system.hparams.caption_source == "scf"
    with pytest.raises(FileNotFoundError, match="fasvlm caption scf"):
        system.setup("fit")
    system._trainer = _Trainer(str(tmp_path / "missing.parquet"))
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        system.interpretations(_batch())


def test_table_named_by_the_data_config_is_read(tmp_path):
    table = tmp_path / "captions.parquet"
    pd.DataFrame({"sample_id": ["src/v0/f0", "src/v1/f0"],
                  "caption": ["a young woman indoors", "a face printed on glossy paper"]}).to_parquet(table)
    torch.manual_seed(0)
    system = IFASSystem(**TINY)
    system._trainer = _Trainer(str(table))
    system.setup("fit")
    out = system.interpretations(_batch())
    assert out[1].endswith("a face printed on glossy paper") and "young woman" in out[0]
    templates = IFASSystem(**TINY, caption_source="templates").interpretations(_batch())
    assert "glossy" not in templates[1]  # templates only when asked for
    with pytest.raises(ValueError, match="caption_source"):
        IFASSystem(**TINY, caption_source="template")
