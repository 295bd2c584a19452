"""Building blocks of pruning (registers no method).

    masks     prunable layers, magnitude masks (per layer or global), the AGP schedule
    channels  torch-pruning helpers: which layers are roots, the classifier that stays
              whole, tracing with in-place activations off
"""
