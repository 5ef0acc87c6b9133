"""The layout's rules as tests: no import cycles, a thin top level, wiring only in the bootstrap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

import clinic_bot
from clinic_bot.bootstrap import install_everything, install_reactions
from clinic_bot.core.registry import Registry
from clinic_bot.domain import events as ev

PACKAGE = Path(clinic_bot.__file__).parent


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), deferred imports included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others():
    graph = grimp.build_graph("clinic_bot")
    assert _cycles(graph) == []


def test_the_top_of_the_package_keeps_at_most_eight_plain_modules():
    plain = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(plain) <= 8, plain


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_module_level_registry_is_mutated_on_import():
    """Hooks and ticks are installed by the bootstrap, never by `X.append(...)` at import."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            call = node.value if isinstance(node, ast.Expr) else None
            mutates = (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("append", "extend", "update", "insert")
            )
            if mutates:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_every_typed_event_has_a_reaction_in_the_bootstrap():
    registry = Registry()
    install_everything(registry)
    events = [
        cls
        for cls in vars(ev).values()
        if isinstance(cls, type) and issubclass(cls, ev.Event) and cls.__module__ == ev.__name__
    ]
    concrete = [
        cls for cls in events if not any(issubclass(o, cls) for o in events if o is not cls)
    ]
    assert {cls.__name__ for cls in concrete} - {t.__name__ for t in registry.handlers} == set()


def test_a_runtime_can_be_built_with_only_the_reactions_a_test_needs():
    registry = Registry()
    install_reactions(registry)
    assert registry.ticks == [] and registry.appointment_hooks == []
    assert registry.handler_for(ev.TextReceived) is not None
