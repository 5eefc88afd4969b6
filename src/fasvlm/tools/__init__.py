"""Tool subcommands of ``fasvlm`` other than training, e.g. ``bench`` (FLOPs, throughput, MFU) and ``export``
(safetensors + config, DeepSpeed checkpoint conversion).

Each module exposes ``main(argv) -> int`` and is reached only from :mod:`fasvlm.cli`, whose ``TOOLS`` table names the
module path; nothing is imported here, so importing ``fasvlm.tools`` costs nothing.
"""

__all__: list[str] = []
