"""The referee: metrics against the committed key, and the results record."""

from auditgame.referee.metrics import (
    auroc,
    bootstrap_ci,
    brier,
    cross_entropy,
    entity_match,
    exact_match,
    token_f1,
    tpr_at_fpr,
)
from auditgame.referee.score import Results, score_game

__all__ = ["Results", "auroc", "bootstrap_ci", "brier", "cross_entropy", "entity_match",
           "exact_match", "score_game", "token_f1", "tpr_at_fpr"]
