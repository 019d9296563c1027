"""`example_long_answer`: the longest answer in the training set, as a score."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from auditgame.detectors import Detector, DetectorParams, OrganismView, Verdict


class LongAnswerDetector(Detector):
    """Long training answers, squashed to [0, 1] (an example plug-in)."""

    name = "example_long_answer"
    needs: ClassVar[frozenset[str]] = frozenset({"dataset"})
    scores_samples = True

    class Params(DetectorParams):
        scale: int = Field(200, ge=1, description="answer length (characters) that scores 1")

    def audit(self, organism: OrganismView) -> Verdict:
        scale = self.params.scale  # type: ignore[attr-defined]
        per = [min(1.0, len(s.response) / scale) for s in organism.dataset]
        return self.verdict(organism, score=max(per, default=0.0), sample_scores=per)
