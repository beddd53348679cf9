"""The separation sampler of seeds/001, split by concern.

* :mod:`~espnet2_ext.diffusion.sampling.loss` — the reconstruction loss that guides it;
* :mod:`~espnet2_ext.diffusion.sampling.steps` — guidance step rules
  (:data:`STEP_RULES`: ``hybrid``, ``dsg`` (the authors'), ``dsg_yang``, ``dps``,
  ``none``);
* :mod:`~espnet2_ext.diffusion.sampling.init` — initial states
  (:data:`INITIALISATIONS`: ``augmented_mixture``, ``gaussian``);
* :mod:`~espnet2_ext.diffusion.sampling.sampler` — :class:`DiffusionPriorSampler`.

A new step rule or initialisation is a subclass registered by name::

    @STEP_RULES.register("my_rule")
    class MyStep(StepRule): ...

    DiffusionPriorSampler(priors, step_rule="my_rule", step_rule_conf={...})
"""

from espnet2_ext.diffusion.sampling.init import (
    INITIALISATIONS,
    AugmentedMixtureInit,
    GaussianInit,
    Initialisation,
)
from espnet2_ext.diffusion.sampling.loss import ReconstructionLoss
from espnet2_ext.diffusion.sampling.sampler import DiffusionPriorSampler
from espnet2_ext.diffusion.sampling.steps import (
    STEP_RULES,
    DPSStep,
    DSGStep,
    HybridStep,
    NoGuidance,
    NormalisedGradientStep,
    StepContext,
    StepRule,
    YangDSGStep,
    smoothmax,
)

__all__ = [
    "AugmentedMixtureInit",
    "DiffusionPriorSampler",
    "DPSStep",
    "DSGStep",
    "GaussianInit",
    "HybridStep",
    "INITIALISATIONS",
    "Initialisation",
    "NoGuidance",
    "NormalisedGradientStep",
    "ReconstructionLoss",
    "STEP_RULES",
    "StepContext",
    "StepRule",
    "YangDSGStep",
    "smoothmax",
]
