"""Lightning callbacks: FAS metrics per target domain, reports, TensorBoard figures, throughput, resume, predictions."""

from fasvlm.callbacks.compile import CompileCallback
from fasvlm.callbacks.data import DataHealthCallback
from fasvlm.callbacks.figures import FASFiguresCallback
from fasvlm.callbacks.metrics import FASMetricsCallback, write_json_atomic
from fasvlm.callbacks.predictions import PredictionsWriter
from fasvlm.callbacks.rng import RNGStateCallback
from fasvlm.callbacks.run_info import RunInfoCallback
from fasvlm.callbacks.throughput import ThroughputCallback

__all__: list[str] = [
    "CompileCallback",
    "DataHealthCallback",
    "FASFiguresCallback",
    "FASMetricsCallback",
    "PredictionsWriter",
    "RNGStateCallback",
    "RunInfoCallback",
    "ThroughputCallback",
    "write_json_atomic",
]
