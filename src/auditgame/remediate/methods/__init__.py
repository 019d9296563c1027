"""Remediation methods, one per file, registered by name (see `remediate.method`)."""
