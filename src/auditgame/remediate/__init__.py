"""Remediation: can the blue team fix an organism by clean fine-tuning, and at what cost?"""

from auditgame.records.remediation import (
    BudgetResult,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)
from auditgame.remediate.round import (
    DEFAULT_BUDGETS,
    parse_budgets,
    read_remediation,
    remediate_game,
)

__all__ = ["DEFAULT_BUDGETS", "BudgetResult", "OrganismRemediation", "Remediation",
           "RemediationSettings", "parse_budgets", "read_remediation", "remediate_game"]
