"""Standalone dataset audits: `auditgame scan DATASET --out DIR/` and its ScanReport record."""

from auditgame.scan._load import load_dataset
from auditgame.scan._run import DEFAULT_DETECTORS, scan_dataset, scan_samples
from auditgame.scan.report import SCAN_VERSION, ScanReport, summary_lines

__all__ = ["DEFAULT_DETECTORS", "SCAN_VERSION", "ScanReport", "load_dataset", "scan_dataset",
           "scan_samples", "summary_lines"]
