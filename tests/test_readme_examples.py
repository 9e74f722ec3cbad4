"""Every ```python block of the README runs as written (a user copies them first).

Blocks that start with ``# fragment`` are API overviews with placeholders and are only compiled as
the body of an async function. What the examples print must never show a test card's PAN in clear.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import textwrap
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [(TEXT[:m.start()].count("\n") + 1, m.group(1))
          for m in re.finditer(r"```python\n(.*?)```", TEXT, re.S)]
PANS = [card["pan"] for card in tomllib.loads(
    (ROOT / "fixtures" / "cards" / "test_cards.toml").read_text(encoding="utf-8"))["cards"].values()]


def test_the_readme_has_examples_for_every_area() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs(line: int, code: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if code.startswith("# fragment"):
        compile("async def _fragment():\n" + textwrap.indent(code, "    "), f"README.md:{line}", "exec")
        return
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme_example"})
    shown = out.getvalue()
    leaked = [pan[:6] + "..." + pan[-4:] for pan in PANS if pan in shown]
    assert not leaked, f"README.md:{line} printed full PANs: {leaked}"
