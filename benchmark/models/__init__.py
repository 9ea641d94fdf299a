"""Model adapters: a network, its named layers, and activations for a batch of stimuli."""
