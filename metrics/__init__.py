"""Interpretability metrics: each scores, per direction, how coherent its top stimuli are."""

from metrics.base import Metric, Ranked, SimilarityMetric, TopExamples

__all__ = ["Metric", "Ranked", "SimilarityMetric", "TopExamples"]
