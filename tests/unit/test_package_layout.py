"""The package's layout rules, read from its source: commands are leaves, every subpackage has a floor and imports
nothing from a higher one (counting imports for type annotations), no import cycle, the core knows nothing of the
rest, and one module alone touches TensorBoard's private writer (the TensorBoard tracker) and imports MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vae_lightning

PACKAGE = Path(vae_lightning.__file__).parent
COMMANDS = {"train", "evaluate", "sample", "beta_grid", "classifier", "report", "bench", "explore"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a module but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
               and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
               for stmt in block.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def imports(path: Path, type_checking: bool = False) -> set[str]:
    """The vae_lightning modules a file imports at run time, at its top or inside functions (deferred imports
    count; imports for type annotations only do not, unless `type_checking`)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if type_checking else runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vae_lightning")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vae_lightning"):
            found.add(node.module)
            # `from vae_lightning.runs import sweep` imports the module vae_lightning.runs.sweep
            found |= {f"{node.module}.{a.name}" for a in node.names if (PACKAGE.parent / f"{node.module}.{a.name}"
                                                                       .replace(".", "/")).with_suffix(".py").exists()}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def test_the_commands_are_the_top_level_modules():
    top = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert top == COMMANDS | {"cli"}, "the top level holds the commands and cli.py; library code lives in subpackages"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_imports_another_command(command):
    others = {f"vae_lightning.{c}" for c in COMMANDS - {command}}
    assert not GRAPH[f"vae_lightning.{command}"] & others


def test_the_library_imports_no_command_and_not_the_command_layer():
    commands = {f"vae_lightning.{c}" for c in COMMANDS} | {"vae_lightning.cli"}
    for name, deps in GRAPH.items():
        if name not in commands:
            assert not deps & commands, f"{name} imports {deps & commands}"


def test_core_imports_nothing_else_of_the_package():
    for name, deps in GRAPH.items():
        if name.startswith("vae_lightning.core"):
            assert all(d.startswith("vae_lightning.core") for d in deps), f"{name} imports {deps}"


# The floors, low to high (docs/design.md): a subpackage imports only from its own floor or below, counting imports
# under TYPE_CHECKING (an annotation naming a class of a higher floor is a wall broken too). Subpackages on one floor
# may import each other (without a cycle); the commands and cli.py sit above every floor.
FLOORS = {
    "core": 0,
    "data": 1, "latent": 1, "pictures": 1,
    "model": 2,
    "checkpoints": 3,
    "tracking": 4,
    "callbacks": 5, "evaluation": 5,
    "launchers": 6,
    "runs": 7,
    "explorer": 8, "reporting": 8,
    "benchmark": 9,
}
TYPED_GRAPH = {name: {i for i in imports(path, type_checking=True) if i in MODULES and i != name}
               for name, path in MODULES.items()}


def subpackage(module: str) -> str | None:
    """`vae_lightning.runs.sweep` -> "runs"; None for a command, cli.py and the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOORS) else None


def test_every_subpackage_has_a_floor():
    assert {p.parent.name for p in PACKAGE.glob("*/__init__.py")} == set(FLOORS)


@pytest.mark.parametrize("package", sorted(FLOORS, key=FLOORS.get))
def test_a_subpackage_imports_nothing_from_a_higher_floor_not_even_for_type_checking(package):
    above = {name: sorted(d for d in deps if (s := subpackage(d)) is not None and FLOORS[s] > FLOORS[package])
             for name, deps in TYPED_GRAPH.items() if subpackage(name) == package}
    assert {name: deps for name, deps in above.items() if deps} == {}


def test_no_import_cycle_even_for_type_checking():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(TYPED_GRAPH[name]):
            if dep.startswith(name + "."):
                continue
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, name, dep])
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(TYPED_GRAPH):
        if name not in state:
            visit(name, [])


def test_only_the_tensorboard_tracker_touches_tensorboards_private_writer():
    users = {name for name, path in MODULES.items() if "_get_file_writer" in path.read_text()}
    assert users == {"vae_lightning.tracking.tensorboard"}


def test_only_the_mlflow_tracker_imports_mlflow():
    def imports_mlflow(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                return True
        return False

    assert {name for name, path in MODULES.items() if imports_mlflow(path)} == {"vae_lightning.tracking.mlflow"}


def test_every_subpackage_states_its_contract():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 30, f"{init.parent.name}/__init__.py needs a docstring with its contract"
