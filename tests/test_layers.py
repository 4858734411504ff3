"""The package's layers point down only: cli -> workflows and the demo generator -> training ->
outputs -> model and metrics -> preprocessing and discovery -> the small shared modules at the
package root (errors, runtime, atomic, hashing, figures). A module importing from another
package of its own layer or of a layer above fails here; inside one package anything goes."""
import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "gado_bids"
RANKS = {"cli": 6, "workflows": 5, "demo": 5, "training": 4, "outputs": 3, "model": 2,
         "metrics": 2, "preprocessing": 1, "discovery": 1}  # root modules: 0


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""


def _rank(module: str) -> int:
    return RANKS.get(_package(module), 0)


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
                  if _package(imported) not in ("", _package(module))
                  and _rank(imported) >= _rank(module)]
    return found


def test_no_module_imports_from_a_layer_above_it():
    assert upward_imports() == []


def test_every_package_has_a_layer():
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert packages == set(RANKS)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """A stage module importing a workflow (even inside a function) or a package of its own
    layer, and a root module importing any package, are caught."""
    import test_layers
    fake = tmp_path / "gado_bids"
    (fake / "outputs").mkdir(parents=True)
    (fake / "workflows").mkdir()
    (fake / "outputs" / "page.py").write_text(
        "def f():\n    from gado_bids.workflows.scan import x\n    return x\n")
    (fake / "workflows" / "scan.py").write_text("from gado_bids.outputs import page\n")
    (fake / "metrics").mkdir()
    (fake / "model").mkdir()
    (fake / "metrics" / "score.py").write_text("import gado_bids.model.networks\n")
    (fake / "model" / "networks.py").write_text("from gado_bids import hashing\n")
    (fake / "hashing.py").write_text("from gado_bids.metrics import score\n")
    monkeypatch.setattr(test_layers, "REPO", tmp_path)
    monkeypatch.setattr(test_layers, "PACKAGE", fake)
    assert upward_imports(fake) == ["gado_bids.hashing -> gado_bids.metrics",
                                    "gado_bids.metrics.score -> gado_bids.model.networks",
                                    "gado_bids.outputs.page -> gado_bids.workflows.scan"]
