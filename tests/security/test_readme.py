"""The README's security section examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_security_section_examples_run() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("<!-- section:security -->"):text.index("<!-- /section:security -->")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
