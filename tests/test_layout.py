"""The house rules, read from the source: imports run one way between the rooms of `seg/`,
no module imports another in a cycle, rooms say what they are for, modules stay readable.

The contract (README §Development):

    base (errors, fs, config, gan_config, metadata_config, tile_config, checkpoint, classes,
          report, shards)
      <- geo <- data
      <- geo <- evaluation
      <- models
      <- training (models, data, evaluation, geo)      inference (models, data, evaluation, geo)
      <- jobs <- ui <- cli, quickstart, __main__
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SEG = Path(__file__).resolve().parents[1] / "seg"
BASE = {"seg", "seg.errors", "seg.fs", "seg.config", "seg.tile_config", "seg.checkpoint"}
BASE |= {"seg.classes", "seg.report", "seg.shards", "seg.locks", "seg.provenance"}
BASE |= {"seg.notify", "seg.gan_config", "seg.metadata_config"}
TOP = {"seg.cli", "seg.quickstart", "seg.__main__"}
# Room -> the rooms it may import (besides itself and the base modules).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "geo": set(),
    "data": {"geo"},
    "evaluation": {"geo"},
    "models": set(),
    "training": {"models", "data", "evaluation", "geo"},
    "inference": {"models", "data", "evaluation", "geo"},
    "jobs": {"training", "inference", "evaluation", "models", "data", "geo"},
    "ui": {"jobs", "training", "inference", "evaluation", "models", "data", "geo"},
    "top": {"ui", "jobs", "training", "inference", "evaluation", "models", "data", "geo"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in SEG.rglob("*.py"):
        name = ".".join(path.relative_to(SEG.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def room(module: str) -> str:
    if module in BASE:
        return "base"
    if any(module == t or module.startswith(t + ".") for t in TOP):
        return "top"
    return module.split(".")[1]


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The seg modules that `name` imports (anywhere in the file, lazily or not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def test_every_module_belongs_to_a_room() -> None:
    rooms = {room(m) for m in modules()}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


def test_imports_run_one_way() -> None:
    wrong = []
    for mod, deps in graph().items():
        here = room(mod)
        for dep in deps:
            there = room(dep)
            if there not in {here, "base"} | ALLOWED[here]:
                wrong.append(f"{mod} ({here}) imports {dep} ({there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append([*path[path.index(d) :], d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_data_prep_uses_only_geo_and_the_base() -> None:
    """data_prep converts public label formats into files `seg tile` reads: it needs rasters and
    vectors (seg.geo) and the base modules, never the store, models or training."""
    known = set(modules())
    wrong = []
    for path in (SEG.parent / "data_prep").glob("*.py"):
        for dep in imports(path, f"data_prep.{path.stem}", known):
            if room(dep) not in {"base", "geo"}:
                wrong.append(f"data_prep/{path.name} imports {dep}")
    assert not wrong, wrong


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a geo module importing training must be reported."""
    path = tmp_path / "grid.py"
    path.write_text("from seg.training.loop import Trainer\n")
    deps = imports(path, "seg.geo.grid", {"seg.training.loop", "seg.geo.grid"})
    assert deps == {"seg.training.loop"}
    assert room("seg.training.loop") not in {"geo", "base"} | ALLOWED["geo"]


@pytest.mark.parametrize("package", sorted(p.parent.name for p in SEG.glob("*/__init__.py")))
def test_each_room_says_what_it_is_for_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((SEG / package / "__init__.py").read_text()))
    assert doc and "import" in doc.lower(), f"seg/{package}/__init__.py needs its docstring"


def test_modules_stay_readable() -> None:
    long = {
        str(p.relative_to(SEG)): n
        for p in SEG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, f"modules over 300 lines (split them by job): {long}"


def test_more_than_four_parameters_are_taken_by_keyword() -> None:
    """A reader of a call site sees what each argument is: past four, parameters are
    keyword-only (CLI commands are exempt: typer fills them from options)."""
    wrong = []
    for name, path in modules().items():
        if name.startswith("seg.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args.posonlyargs + node.args.args
                positional = [a.arg for a in args if a.arg not in ("self", "cls")]
                if len(positional) > 4:
                    wrong.append(f"{name}:{node.lineno} {node.name}({', '.join(positional)})")
    assert not wrong, wrong


def test_library_code_never_prints() -> None:
    """Only the CLI writes to the terminal; the library reports through seg.report."""
    offenders = []
    for name, path in modules().items():
        if room(name) == "top" or name == "seg.report":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            call = node.func if isinstance(node, ast.Call) else None
            if isinstance(call, ast.Name) and call.id == "print":
                offenders.append(f"{name}:{node.lineno} print()")
            rich = isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rich")
            # Tables may be built and returned (the CLI prints them); nothing else of rich.
            if rich and not any(a.name == "Table" for a in node.names):  # type: ignore[attr-defined]
                offenders.append(f"{name}:{node.lineno} imports rich")
    assert not offenders, offenders


def test_tests_import_helpers_by_their_own_name() -> None:
    """`tests/` is not a package: pytest puts each test's folder chain on sys.path (rootdir
    conftest), so helpers import as `train_helpers`. `from tests.x` works only where the checkout
    happens to be on sys.path, and broke a clean CI clone once."""
    offenders = []
    for path in sorted(SEG.parent.joinpath("tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == "tests" or n.startswith("tests.") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize(
    "module", ["seg.cli.app", "seg.jobs.submit", "seg.data.tile", "seg.evaluation.evaluate"]
)
def test_commands_that_do_not_run_a_network_start_without_torch(module: str) -> None:
    """Importing torch and smp costs ~5-7 s a process; `seg queue submit` (whose trials import
    it in their own processes), `seg tile` and `seg eval` do not need it (CI's time budget)."""
    import subprocess
    import sys

    probe = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0, f"{module} imports torch"
