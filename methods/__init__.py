"""Basis-finding methods: each proposes ``k`` directions in a layer's activation space."""

from methods.base import Basis, LinearBasis, Method, compute_stats

__all__ = ["Basis", "LinearBasis", "Method", "compute_stats"]
