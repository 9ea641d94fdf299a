"""Stimulus sets: what a network is shown, with whatever is known about each stimulus."""

from benchmark.data.base import StimulusSet, Subset, split_indices

__all__ = ["StimulusSet", "Subset", "split_indices"]
