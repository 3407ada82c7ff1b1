"""Helpers the tests share."""

from __future__ import annotations


class Watch:
    """Keys of some targets, to see which ones a commit changed."""

    def __init__(self, kg, *targets):
        self.kg = kg
        self.targets = targets
        self.before = {t: kg(t) for t in targets}

    def changed(self):
        return {t for t in self.targets if self.kg(t) != self.before[t]}
