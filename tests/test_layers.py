"""The layers' import rules (DESIGN.md): arrows are the only imports allowed.

    srgan       imports none of the project's other packages (pure PyTorch science)
    results     imports no torch, no Ray and none of the others (the results folder's contract)
    benchmarks  imports only srgan and results; its jobs: `scoring` <- `speed` (speed may import scoring, never back)
    harness     imports srgan, benchmarks and results, never reports; Ray lives here and only here
    reports     imports only results (plus polars, plotly, Jinja2, numpy, PIL): no torch, no Ray

Every import statement of every module is read (including the ones inside functions), so a lazy import cannot
hide an arrow the design does not have. Inside a layer, the modules' imports form no cycle (issue 15.3): a lazy
import that closes a loop (a imports b, b imports a inside a function) still ties the two modules into one.
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


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of `modules` that importing `name` loads last: itself, else its longest listed parent (the
    package of `from pkg.sub import name`, where `name` is not a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, read from every import statement of every module (lazy ones
    included); absolute and relative imports both count."""
    root = package_dir.parent
    files = {module_name(p, root): p for p in sorted(package_dir.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]  # the importing package
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:  # `from pkg import sub` imports the module pkg.sub
                    targets.add(_resolve(f"{base}.{alias.name}" if base else alias.name, modules))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as [a, b, ..., a] (each back edge gives one)."""
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    path: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_layer(package: str) -> None:
    graph = import_graph(REPO / package)
    assert len(graph) > 1 and any(graph.values()), f"{package}: no imports between its modules were found"
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_planted_cycle(tmp_path: Path) -> None:
    """A fake package: a imports b at the top, b imports a lazily (the shape of issue 15.3's checkpoint <->
    official); c and d import through a relative import and a package import without closing a loop."""
    pkg = tmp_path / "fake"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from fake.b import thing\n")
    (pkg / "b.py").write_text("import os\n\ndef thing():\n    from fake import a\n    return a, os\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from . import d\nfrom ..b import thing\n")
    (pkg / "sub" / "d.py").write_text("import fake.a\n")
    graph = import_graph(pkg)
    assert graph == {"fake": set(), "fake.a": {"fake.b"}, "fake.b": {"fake.a"}, "fake.sub": set(),
                     "fake.sub.c": {"fake.sub.d", "fake.b"}, "fake.sub.d": {"fake.a"}}
    assert import_cycles(graph) == [["fake.a", "fake.b", "fake.a"]]
    (pkg / "b.py").write_text("import os\n")  # the lazy import removed: no cycle left
    assert import_cycles(import_graph(pkg)) == []
    (pkg / "sub" / "d.py").write_text("def f():\n    from .c import x\n")  # a relative lazy import closes c <-> d
    assert import_cycles(import_graph(pkg)) == [["fake.sub.c", "fake.sub.d", "fake.sub.c"]]


@pytest.mark.parametrize("module", ["reports.build", "results.study", "results.io"])
def test_reading_results_loads_no_torch_and_no_ray(module: str) -> None:
    code = f"import sys, {module}; bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# harness's jobs, lowest first: a module may import its own job's modules and the jobs below it, never above.
# The entry modules beside them (harness.train, .sweep, .study) sit on top.
HARNESS_JOBS = ("cluster", "run", "sweeps")


def job_of(module: str, jobs: tuple[str, ...] = HARNESS_JOBS) -> int:
    """The floor of a module: 0.. for the jobs (harness: 0..2), len(jobs) for the package and its entry modules."""
    parts = module.split(".")
    return jobs.index(parts[1]) if len(parts) > 2 and parts[1] in jobs else len(jobs)


def job_violations(graph: dict[str, set[str]], jobs: tuple[str, ...] = HARNESS_JOBS) -> list[str]:
    top = len(jobs)
    return [f"{a} imports {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if job_of(b, jobs) > job_of(a, jobs) or (job_of(b, jobs) == top and job_of(a, jobs) < top)]


def test_harness_jobs_import_only_downwards() -> None:
    graph = import_graph(REPO / "harness")
    assert {m.split(".")[1] for m in graph if m.count(".") >= 2} == set(HARNESS_JOBS)  # every module sits in a job
    flat = sorted(m for m in graph if m.count(".") == 1 and m.split(".")[1] not in HARNESS_JOBS)
    assert flat == ["harness.study", "harness.sweep", "harness.train"], flat  # only the entry modules stay flat
    assert not job_violations(graph), "\n".join(job_violations(graph))


# benchmarks' jobs the same way: scoring with the papers' protocol, then the speed and cost tools (which time the
# metrics); `python -m benchmarks.evaluate`, `benchmarks.prefetch` and `benchmarks.throughput` are the entry modules
# beside them.
BENCHMARK_JOBS = ("scoring", "speed")


def test_benchmark_jobs_import_only_downwards() -> None:
    graph = import_graph(REPO / "benchmarks")
    assert {m.split(".")[1] for m in graph if m.count(".") >= 2} == set(BENCHMARK_JOBS)
    flat = sorted(m for m in graph if m.count(".") == 1 and m.split(".")[1] not in BENCHMARK_JOBS)
    assert flat == ["benchmarks.evaluate", "benchmarks.prefetch", "benchmarks.throughput"], flat
    assert not job_violations(graph, BENCHMARK_JOBS), "\n".join(job_violations(graph, BENCHMARK_JOBS))
    assert job_violations({"benchmarks.scoring.a": {"benchmarks.speed.b"}}, BENCHMARK_JOBS) == [
        "benchmarks.scoring.a imports benchmarks.speed.b"]  # the checker sees an upward import here too


def test_the_job_checker_sees_an_upward_import() -> None:
    graph = {"harness.cluster.a": {"harness.run.b"}, "harness.run.b": {"harness.cluster.a"},
             "harness.sweeps.c": {"harness.run.b", "harness.sweep"}, "harness.sweep": {"harness.sweeps.c"}}
    assert job_violations(graph) == ["harness.cluster.a imports harness.run.b",
                                     "harness.sweeps.c imports harness.sweep"]


@pytest.mark.parametrize("package", ["srgan", "results", "benchmarks", "harness", "reports", "harness/cluster",
                                     "harness/run", "harness/sweeps", "benchmarks/scoring", "benchmarks/speed"])
def test_each_package_opens_with_what_lives_there(package: str) -> None:
    init = REPO / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
    assert doc and len(doc.split()) >= 8, f"{package}/__init__.py has no docstring saying what lives there"
