"""The front page's scoreboard: one row per claim, one column per scale that evaluated any claim, badges readable
(WCAG contrast), statuses from the saved verdicts and never typed by hand."""
import json

import pytest

from hessreg import claims, scoreboard, stats


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of an sRGB colour '#rrggbb'."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


@pytest.mark.parametrize("status", stats.STATUSES)
def test_every_status_has_a_readable_badge(status):
    fill, text = scoreboard.BADGES[status]
    hi, lo = sorted((luminance(fill), luminance(text)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5, f"{status}: contrast below WCAG AA"


def save(folder, scale, claim, status, **extra):
    (folder / scale).mkdir(parents=True, exist_ok=True)
    (folder / scale / f"{claim}.json").write_text(json.dumps({"claim_id": claim, "status": status, "effect": "+1.0 pp"}
                                                             | extra))


def test_one_column_per_scale_that_evaluated_a_claim(tmp_path):
    save(tmp_path, "cpu", "A1", "reproduced as training failure", registered_reading="reproduced")
    save(tmp_path, "noisy", "A1", "not evaluated")
    save(tmp_path, "any", "A7", "reproduced")
    save(tmp_path, "lowdata", "B1", "not reproduced")
    board = scoreboard.scoreboard(tmp_path)
    assert list(board["claim"]) == list(claims.CLAIMS) and {"cpu", "noisy"} <= set(board) and "full" not in board
    a1 = board.set_index("claim").loc["A1"]
    assert a1["cpu"]["status"] == "reproduced as training failure" and a1["cpu"]["registered"] == "reproduced"
    assert board.set_index("claim").loc["A7", "noisy"]["status"] == "reproduced"  # the same at every scale
    assert not isinstance(board.set_index("claim").loc["B1", "cpu"], dict)
    assert board.set_index("claim").loc["A1", "lowdata"] == scoreboard.NOT_RUN  # chapter 02 has no lowdata grid
    page = scoreboard.table(board)
    paper_a, paper_b = page.split("<table")[1:]  # one table per paper, each with the scales its claims ran at
    assert paper_a.count("<tr>") == 1 + sum(c.figure.startswith("Paper A") for c in claims.CLAIMS.values())
    assert "lowdata scale" not in paper_a and "noisy scale" in paper_a
    assert "lowdata scale" in paper_b and "noisy scale" not in paper_b and "as registered: reproduced" in page
    assert "table-layout: fixed" in page  # cells wrap inside the content column instead of scrolling
    lowdata = "**lowdata scale**: 1 of 4 claims reproduced (1 reproduced, 1 not reproduced)"  # B1-B3 and A7
    assert lowdata in scoreboard.summary(board)
    assert "**cpu scale**: 1 of 14 claims reproduced" in scoreboard.summary(board) and "1 reproduced as training failure" in \
        scoreboard.summary(board)
