"""The blind game: seal organisms into a bundle, commit to the key, read the bundle."""

from auditgame.bundle.reader import Bundle
from auditgame.bundle.seal import read_commitment, seal_game, verify_key
from auditgame.records.key import GameKey, KeyEntry, Manifest

__all__ = ["Bundle", "GameKey", "KeyEntry", "Manifest", "read_commitment", "seal_game",
           "verify_key"]
