"""Self-checking exercises: the reader computes an answer, a check says whether it is right and why.

Each notebook ends with a few exercises. A check is a function of the reader's answer that knows the truth (it
computes it with the library, or from an equation) and calls :func:`report`. Solutions sit in collapsed cells that
end with ``assert check_…(answer)``, so nbval runs every solution through its check and an exercise whose answer
drifts with the code fails ``make test``.
"""

from __future__ import annotations

import math


def report(name: str, answer, correct: bool, why: str) -> bool:
    """Print the verdict on ``answer`` and return whether it is right.

    Args:
        name: the exercise, as the notebook titles it.
        answer: the reader's answer; ``None`` means not answered yet (nothing is judged).
        correct: whether ``answer`` is right.
        why: one sentence that explains the right answer (shown either way, so a wrong answer teaches).

    Returns:
        ``correct`` (``False`` when ``answer`` is ``None``).
    """
    if answer is None:
        print(f"{name}: not answered yet (replace None with your answer and run the cell again)")
        return False
    print(f"{'✓ right' if correct else '✗ not yet'}: {name}. {why}")
    return bool(correct)


def close(answer, truth: float, rel: float = 0.05, abs_tol: float = 0.0) -> bool:
    """Whether a numeric ``answer`` is within ``rel`` (relative) or ``abs_tol`` of ``truth``; False for non-numbers."""
    try:
        return math.isclose(float(answer), float(truth), rel_tol=rel, abs_tol=abs_tol)
    except (TypeError, ValueError):
        return False
