"""Detectors that read only what any auditor sees by listing the bundle (a blindness check)."""
