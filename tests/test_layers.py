"""The layers' import rules (DESIGN.md): arrows are the only imports allowed.

    srgan       imports none of the project's other packages (pure PyTorch science)
    results     imports no torch, no Ray and none of the others (the results folder's contract)
    benchmarks  imports only srgan and results
    harness     imports srgan, benchmarks and results, never reports; Ray lives here and only here
    reports     imports only results (plus polars, plotly, Jinja2, numpy, PIL): no torch, no Ray

Every import statement of every module is read (including the ones inside functions), so a lazy import cannot
hide an arrow the design does not have.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("srgan", "results", "benchmarks", "harness", "reports")
ALLOWED = {
    "srgan": set(),
    "results": set(),
    "benchmarks": {"srgan", "results"},
    "harness": {"srgan", "benchmarks", "results"},
    "reports": {"results"},
}
FORBIDDEN_THIRD_PARTY = {
    "srgan": {"ray", "polars", "plotly"},
    "results": {"torch", "torchvision", "ray"},
    "benchmarks": {"ray"},
    "harness": set(),
    "reports": {"torch", "torchvision", "ray", "kornia", "pyiqa"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of everything a module imports (absolute imports; relative ones stay in the package)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_what_the_design_allows(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no modules found in {package}/"
    violations = []
    for path in files:
        roots = imported_roots(path)
        for other in (set(PACKAGES) - {package}) & roots:
            if other not in ALLOWED[package]:
                violations.append(f"{path.relative_to(REPO)} imports {other}")
        for lib in FORBIDDEN_THIRD_PARTY[package] & roots:
            violations.append(f"{path.relative_to(REPO)} imports {lib}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from reports.build import build_report\n    import ray.train\n")
    assert imported_roots(module) == {"os", "reports", "ray"}


@pytest.mark.parametrize("module", ["reports.build", "results.study", "results.io"])
def test_reading_results_loads_no_torch_and_no_ray(module: str) -> None:
    code = f"import sys, {module}; bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
