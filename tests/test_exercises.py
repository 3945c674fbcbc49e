"""pc_common.exercises: the verdict a reader gets on an answer."""

from __future__ import annotations

from pc_common.exercises import close, report


def test_report_judges_only_an_answer(capsys):
    """None is 'not answered yet' (never right); otherwise the verdict is `correct`, with the reason printed."""
    assert report("ex", None, True, "because") is False
    assert "not answered yet" in capsys.readouterr().out
    assert report("ex", 1.0, True, "because") is True
    assert "✓" in capsys.readouterr().out
    assert report("ex", 2.0, False, "because") is False
    out = capsys.readouterr().out
    assert "✗" in out and "because" in out


def test_close_is_a_relative_tolerance_and_refuses_non_numbers():
    """1.04 is within 5 % of 1, 1.06 is not; a string that is no number is simply wrong, not an error."""
    assert close(1.04, 1.0) and not close(1.06, 1.0)
    assert close("0.5", 0.5) and not close("half", 0.5) and not close(None, 0.5)
    assert close(1e-9, 0.0, abs_tol=1e-6)
