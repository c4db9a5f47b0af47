"""The layout's promises, checked on the source: every package is installed, imports run one
way (``cli -> api -> pipelines -> codec/render/restore -> formats``) without cycles, nothing
under formats/ imports torch or the rest of gscodec, and no function in gscodec/ or formats/
is longer than :data:`MAX_FUNCTION_LINES`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"gscodec": "gscodec", "formats": "gscodec.formats", "cli": "gscodec.cli"}
MAX_FUNCTION_LINES = 80
# the modules above the pipelines: only these may import gscodec.api (the facade)
FACADE_USERS = {"gscodec", "gscodec.info", "gscodec.view"}
FACADE_USER_PACKAGES = ("gscodec.cli", "gscodec.training")


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([package, *parts])] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (lazy imports included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


GRAPH = {m: {t for t in _imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}
EXTERNAL = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_package_is_installed():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    on_disk = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert on_disk - listed == set(), "packages missing from pyproject.toml (a wheel lacks them)"
    assert listed - on_disk == set()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []
    # the check sees a cycle where there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_formats_imports_neither_torch_nor_the_rest_of_gscodec():
    for m in MODULES:
        if m.startswith("gscodec.formats"):
            assert not any(t == "torch" or t.startswith("torch.") for t in EXTERNAL[m]), m
            assert all(t.startswith("gscodec.formats") for t in GRAPH[m]), \
                (m, sorted(t for t in GRAPH[m] if not t.startswith("gscodec.formats")))


def test_only_the_top_layers_import_the_api_facade():
    users = {m for m in MODULES if "gscodec.api" in GRAPH[m]}
    allowed = {m for m in users
               if m in FACADE_USERS or m.startswith(FACADE_USER_PACKAGES)}
    assert users - allowed == set()


def test_no_function_is_longer_than_the_limit():
    long = []
    for m, path in MODULES.items():
        if m.startswith("gscodec.cli"):
            continue  # click commands: option lists, not logic
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_the_atomic_writer_leaves_the_umask_alone_and_no_temporary(tmp_path, monkeypatch):
    """Outputs get the mode of any new file (0o666 less the umask, applied by the kernel);
    the writer never sets the process-wide umask (which races with other threads), and a
    failing write leaves neither the output nor a temporary file."""
    import os

    from gscodec.formats.atomic import atomic_write, atomic_write_bytes

    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError("the writer changed the umask")

        monkeypatch.setattr(os, "umask", no_umask)
        out = tmp_path / "a.bin"
        atomic_write_bytes(out, b"x", force=False)
        assert out.read_bytes() == b"x" and (out.stat().st_mode & 0o777) == 0o640

        def fail(f):
            f.write(b"half")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            atomic_write(tmp_path / "b.bin", fail, force=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    finally:
        monkeypatch.undo()
        os.umask(old)


PACKAGES_WITH_PRIVATE_HELPERS = ("gscodec.codec", "gscodec.formats", "gscodec.render",
                                 "gscodec.restore")


def _private_imports() -> list[str]:
    found = []
    for m, path in MODULES.items():
        package = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            owner = next((p for p in PACKAGES_WITH_PRIVATE_HELPERS
                          if target == p or target.startswith(p + ".")), None)
            if owner is None or m == owner or m.startswith(owner + "."):
                continue
            found += [f"{m} imports {target}.{a.name}" for a in node.names
                      if a.name.startswith("_")]
    return found


def test_no_module_imports_another_packages_private_helpers():
    """Each codec owns its cells and report: nothing outside gscodec.codec (or formats,
    render, restore) reaches for their private helpers."""
    assert _private_imports() == []
