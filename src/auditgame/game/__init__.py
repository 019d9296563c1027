"""The blind game: seal organisms into a bundle, commit to the key, read the bundle."""

from auditgame.game.bundle import (
    BUNDLE,
    COMMITMENT,
    KEY,
    MANIFEST,
    RESULTS,
    VERDICTS,
    Bundle,
    Manifest,
)
from auditgame.game.seal import GameKey, KeyEntry, seal_game, verify_key

__all__ = ["BUNDLE", "COMMITMENT", "KEY", "MANIFEST", "RESULTS", "VERDICTS", "Bundle",
           "GameKey", "KeyEntry", "Manifest", "seal_game", "verify_key"]
