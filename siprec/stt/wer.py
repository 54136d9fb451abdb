"""Word error rate, for the offline engine's test and benchmark.

Transcripts are compared after the usual normalisation: lower case, no
punctuation, and numbers below one hundred spelled out (Whisper writes
"9 to 5" where a script says "nine to five").
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

__all__ = ["normalize", "word_errors", "word_error_rate"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve "
         "thirteen fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spell(number: str) -> str:
    value = int(number)
    if value < 20:
        return _ONES[value]
    if value < 100:
        return _TENS[value // 10] + ("" if value % 10 == 0 else " " + _ONES[value % 10])
    return " ".join(_ONES[int(digit)] for digit in number)


def normalize(text: str) -> list[str]:
    """Words of ``text`` in comparable form."""
    text = re.sub(r"\d+", lambda m: f" {_spell(m.group())} ", text.lower())
    text = text.replace("-", " ")
    return re.sub(r"[^a-z' ]", " ", text).split()


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions (Levenshtein over words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    """WER of the joined hypotheses against the joined references."""
    reference = normalize(" ".join(references))
    hypothesis = normalize(" ".join(hypotheses))
    if not reference:
        raise ValueError("the reference has no words")
    return word_errors(reference, hypothesis) / len(reference)
