"""Model-track detectors (one plug-in per file): weights, queries and activations."""
