"""Assessment: protocols, the evaluation record, the objectives, and ``assess()``.

Importing the package registers every protocol (MAD, language modelling, algorithmic, synthetic), so
``get_protocol`` and ``starlab protocols`` see all of them without a lazy step.
"""

from starlab.assess import algorithmic, lm, mad, synthetic
from starlab.assess.algorithmic import AlgorithmicProtocol
from starlab.assess.assessment import assess
from starlab.assess.lm import LMProtocol
from starlab.assess.mad import MADProtocol
from starlab.assess.objectives import (
    CACHE_LENGTH,
    OBJECTIVE_PRESETS,
    OBJECTIVES,
    Objectives,
    Sizes,
    check_objectives,
    failed_evaluation,
    genome_sizes,
    pareto_front,
)
from starlab.assess.protocol import (
    KINDS,
    PROTOCOLS,
    Outcome,
    Progress,
    Protocol,
    get_protocol,
    protocol_names,
    register_protocol,
    unregister_protocol,
)
from starlab.assess.record import Evaluation
from starlab.assess.synthetic import SyntheticProtocol, synthetic_quality
from starlab.status import Status

__all__ = [
    "CACHE_LENGTH",
    "KINDS",
    "OBJECTIVES",
    "OBJECTIVE_PRESETS",
    "PROTOCOLS",
    "AlgorithmicProtocol",
    "Evaluation",
    "LMProtocol",
    "MADProtocol",
    "Objectives",
    "Outcome",
    "Progress",
    "Protocol",
    "Sizes",
    "Status",
    "SyntheticProtocol",
    "algorithmic",
    "assess",
    "check_objectives",
    "failed_evaluation",
    "genome_sizes",
    "get_protocol",
    "lm",
    "mad",
    "pareto_front",
    "protocol_names",
    "register_protocol",
    "synthetic",
    "synthetic_quality",
    "unregister_protocol",
]
