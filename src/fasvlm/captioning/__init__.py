"""``fasvlm caption``: offline pipelines that write training text (I-FAS captions, instruction data).

- :mod:`~fasvlm.captioning.cli`: the ``fasvlm caption`` subcommands (typed functions -> jsonargparse parsers).
- :mod:`~fasvlm.captioning.stages`: shared machinery (settings, rank helpers, atomic files, resumable predict stages).
- :mod:`~fasvlm.captioning.hf`: Hugging Face captioner/scorer/LLM wrappers as Lightning modules, tiny test models.
- :mod:`~fasvlm.captioning.scf`: Spoof-aware Captioning and Filtering (I-FAS Algorithm 1) -> captions table.
- :mod:`~fasvlm.captioning.instruct`: instruction data (LLaVA conversations) for multi-task I-FAS training.

Reached only from the ``fasvlm`` CLI (import contract in tests/test_import_contracts.py).
"""

__all__ = ["cli", "hf", "instruct", "scf", "stages"]
