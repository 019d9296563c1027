"""Blind-game commands: seal, verify-key, audit, score (registered on the main app)."""
