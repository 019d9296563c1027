"""Remediation: can the blue team fix an organism by clean fine-tuning, and at what cost?

The round (`remediate_game`) is imported on first use, so reading a spec (which checks
`remediate.method` against the registry) or a record stays cheap: no torch.
"""

from __future__ import annotations

from typing import Any

from auditgame.records.remediation import (
    BudgetResult,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)

_ROUND = ("DEFAULT_BUDGETS", "parse_budgets", "read_remediation", "remediate_game")


def __getattr__(name: str) -> Any:
    if name in _ROUND:
        from auditgame.remediate import round as _round

        return getattr(_round, name)
    raise AttributeError(f"module 'auditgame.remediate' has no attribute {name!r}")


__all__ = ["DEFAULT_BUDGETS", "BudgetResult", "OrganismRemediation", "Remediation",
           "RemediationSettings", "parse_budgets", "read_remediation", "remediate_game"]
