"""Behavioural forensics: probes that measure a model's sycophancy, alignment faking (the
observed-vs-unobserved compliance gap), paraphrase consistency, reasoning-action faithfulness and
dependency / anthropomorphic-seduction cues, on datasets written for thirdway.

Results carry bootstrap confidence intervals and per-item records, are written to the
transparency log as ``probe`` entries, and count as trust evidence for the agents that run on the
probed model under a documented policy (:mod:`thirdway.probes.evidence`). ``thirdway probe …`` is
the command line.
"""

from thirdway.probes.metrics import Bootstrap, Estimate
from thirdway.probes.runner import Asker, ProbeResult
from thirdway.probes.suite import PROBE_NAMES, PROBES, run_probe, run_suite

__all__ = [
    "PROBES",
    "PROBE_NAMES",
    "Asker",
    "Bootstrap",
    "Estimate",
    "ProbeResult",
    "run_probe",
    "run_suite",
]
