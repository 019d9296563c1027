"""`phrase_association`: prompt phrases that predict anomalous answers, and answer themes.

Answers are grouped by what makes them anomalous (near-duplicates, the tightest clusters,
answer n-grams that recur far more than their words explain); every prompt n-gram of 1-4
tokens is tested for over-representation in each group (one-sided Fisher, Bonferroni over
all tests). A recurring answer theme with no prompt phrase behind it (a favoured entity, an
appended link) is reported as the target with no trigger.
"""

from __future__ import annotations

from auditgame.detectors.base import Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.data._answers import analyse_answers
from auditgame.detectors.data._findings import conclude


@register_detector
class PhraseAssociationDetector(Detector):
    """Prompt n-grams whose presence predicts anomalous answers; answer-side themes."""

    name = "phrase_association"
    needs = frozenset({"dataset"})
    scores_samples = True

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        a = analyse_answers(data)
        f = conclude(data, a.anomaly, a.groups(), a.themes)
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
