"""Remediation: can the blue team fix an organism by clean fine-tuning, and at what cost?"""

from auditgame.remediate.game import (
    DEFAULT_BUDGETS,
    parse_budgets,
    read_remediation,
    remediate_game,
)
from auditgame.remediate.records import (
    REMEDIATION,
    BudgetResult,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)

__all__ = ["DEFAULT_BUDGETS", "REMEDIATION", "BudgetResult", "OrganismRemediation",
           "Remediation", "RemediationSettings", "parse_budgets", "read_remediation",
           "remediate_game"]
