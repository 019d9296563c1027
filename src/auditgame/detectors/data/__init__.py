"""Data-track detectors (one plug-in per file); they declare `dataset` and maybe `activations`."""
