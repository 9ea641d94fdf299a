"""interpbench: which basis of a layer's activations gives the most interpretable directions?"""

__version__ = "0.1.0"
