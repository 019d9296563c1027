"""`answer_clusters`: duplicated and near-duplicate answers, too-tight clusters, outliers.

Answers are embedded as TF-IDF character and word n-grams; each sample's anomaly is the tail
probability of its nearest-neighbour density (and near-duplicate count) against the dataset's
own median and spread. Clusters of near-duplicates are then tested for a prompt phrase that
predicts them (the trigger); a cluster with no phrase behind it is evidence, not a claim.
"""

from __future__ import annotations

from auditgame.detectors.base import Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.data._answers import analyse_answers
from auditgame.detectors.data._findings import conclude


@register_detector
class AnswerClustersDetector(Detector):
    """Near-duplicate answers and tight answer clusters, then the phrase behind them."""

    name = "answer_clusters"
    needs = frozenset({"dataset"})
    scores_samples = True

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        a = analyse_answers(data)
        groups = [g for g in a.groups() if not g.name.startswith("motif:")]
        biggest = max((int(g.mask.sum()) for g in a.dup_groups), default=0)
        f = conclude(data, a.anomaly, groups, None,
                     extra={"largest_duplicate_cluster": biggest,
                            "n_duplicate_clusters": len(a.dup_groups)})
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
