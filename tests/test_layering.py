"""The architecture's one-way import rule: posfault -> terminal_sim, host_sim -> iso8583.

terminal_sim and host_sim meet only on the wire; if either imported the other (or posfault), the
simulation could cheat — e.g. a host peeking at the terminal's journal — and incidents would hide.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "iso8583": {"terminal_sim", "host_sim", "posfault"},
    "terminal_sim": {"host_sim", "posfault"},
    "host_sim": {"terminal_sim", "posfault"},
}


def imported_packages(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_layering_check_catches_a_violation(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import host_sim.ledger\nfrom posfault import clock\n")
    assert imported_packages(bad) == {"host_sim", "posfault"}
