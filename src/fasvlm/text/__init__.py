"""The methods' language: the I-FAS prompt and answers (:mod:`~fasvlm.text.prompts`), InstructFLIP's questions and
options (:mod:`~fasvlm.text.instructions`) and the one table of attack-type wording (:mod:`~fasvlm.text.attacks`).

Imports only :mod:`fasvlm.data_modules` (taxonomy, the LLaVA ``<image>`` placeholder).
"""

__all__ = ["attacks", "instructions", "prompts"]
