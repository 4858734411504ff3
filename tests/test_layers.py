"""The package's layers point down only: cli -> workflows -> stages (discovery, preprocessing,
model, training, outputs, metrics, demo) -> the small shared modules at the package root
(errors, runtime). A module importing from a layer above its own fails here."""
import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "gado_bids"
RANKS = {"cli": 3, "workflows": 2}  # every other sub-package is a stage (1); root modules 0


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return 0
    if parts[1] in RANKS:
        return RANKS[parts[1]]
    return 1 if (PACKAGE / parts[1]).is_dir() else 0


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """Every gado_bids module a file imports, at the top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                node.module.startswith("gado_bids"):
            if node.module == "gado_bids":
                yield from (f"gado_bids.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("gado_bids"))


def upward_imports(package: Path = PACKAGE) -> list:
    found = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path)
        found += [f"{module} -> {imported}" for imported in _imports(path)
                  if _rank(imported) > _rank(module)]
    return found


def test_no_module_imports_from_a_layer_above_it():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A stage module importing a workflow, even inside a function, is caught."""
    import test_layers
    fake = tmp_path / "gado_bids"
    (fake / "outputs").mkdir(parents=True)
    (fake / "workflows").mkdir()
    (fake / "outputs" / "page.py").write_text(
        "def f():\n    from gado_bids.workflows.scan import x\n    return x\n")
    (fake / "workflows" / "scan.py").write_text("from gado_bids.outputs import page\n")
    monkeypatch.setattr(test_layers, "REPO", tmp_path)
    monkeypatch.setattr(test_layers, "PACKAGE", fake)
    assert upward_imports(fake) == ["gado_bids.outputs.page -> gado_bids.workflows.scan"]
