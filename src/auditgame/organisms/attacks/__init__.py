"""Attack plug-ins, one per file in this package, registered by name (see `auditgame.plugins`;
others arrive through the `auditgame.attacks` entry-point group)."""

from auditgame.organisms.attacks.base import (
    ATTACKS,
    Attack,
    AttackParams,
    attack_names,
    get_attack_class,
    make_attack,
    register_attack,
)

__all__ = ["ATTACKS", "Attack", "AttackParams", "attack_names", "get_attack_class",
           "make_attack", "register_attack"]
