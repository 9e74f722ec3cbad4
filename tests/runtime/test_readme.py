"""The README's runtime examples run as written (the self-contained ones: those calling run_virtual)."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def runtime_examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- section:runtime -->"):text.index("<!-- /section:runtime -->")]
    return [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "run_virtual(main" in b]


def test_readme_runtime_examples_run(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    examples = runtime_examples()
    assert len(examples) == 2
    for code in examples:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "2026-03-02 10:00:00" in out
    assert "terminal: no answer after 60 s" in out
    assert '"action":"drop"' in out and '"mti":"0210"' in out
    assert "4761739001010010" not in out
