"""The boundaries of architecture.md §3, kept true by parsing every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "firehose"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))

VENDOR_HOME = {
    "click": {"cli/"},
    "boto3": {"archive/s3.py"},
    "botocore": {"archive/s3.py"},
    "azure": {"archive/azure.py"},
    "orjson": {"codec.py"},
    "tenacity": {"http.py"},
    "httpx": {"http.py"},
    "cryptography": {"signing.py"},
    "rich": {"report/"},
    "distributed": {"reconciliation/fanout.py"},
    "dask": {"reconciliation/fanout.py"},
    "prometheus_client": {"watching/metrics.py"},
}


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _in_cli(name: str) -> bool:
    """The command line's modules: the only ones that may print, exit, read the environment or import click."""
    return name.startswith("cli/")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_each_vendor_library_lives_in_one_module(path: Path) -> None:
    for module in _imports(path):
        top = module.split(".")[0]
        if top in VENDOR_HOME:
            home = VENDOR_HOME[top]
            assert any(_name(path) == h or (h.endswith("/") and _name(path).startswith(h)) for h in home), (
                f"{_name(path)} imports {module}"
            )


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_only_cli_prints_or_exits_and_only_cli_and_config_read_the_environment(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    name = _name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit"):
            pytest.fail(f"{name}:{node.lineno} calls {node.func.id}()")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "sys" and node.attr == "exit" and not _in_cli(name):
                pytest.fail(f"{name}:{node.lineno} calls sys.exit")
            if (
                node.value.id == "os"
                and node.attr in ("environ", "getenv")
                and not (_in_cli(name) or name == "config.py")
            ):
                pytest.fail(f"{name}:{node.lineno} reads the environment")


def test_api_and_archive_do_not_know_each_other() -> None:
    for path in MODULES:
        imports = _imports(path)
        if _name(path) == "api.py":
            assert not any(m.startswith("firehose.archive") for m in imports)
        if _name(path).startswith("archive/"):
            assert "firehose.api" not in imports


def test_nothing_imports_the_cli_but_main() -> None:
    for path in MODULES:
        if not (_in_cli(_name(path)) or _name(path) == "__main__.py"):
            assert "firehose.cli" not in _imports(path), _name(path)


def test_every_public_name_is_listed_once_and_loads() -> None:
    import firehose

    assert sorted(firehose.__all__) == sorted(["__version__", *firehose._PUBLIC]), "__all__ and _PUBLIC differ"
    for name in firehose._PUBLIC:
        assert getattr(firehose, name).__name__ == name, name


def test_no_public_function_shares_its_name_with_a_module() -> None:
    import firehose

    modules = {path.stem for path in PACKAGE.glob("*.py")} | {path.name for path in PACKAGE.iterdir() if path.is_dir()}
    assert not modules & set(firehose._PUBLIC), "firehose.<name> would mean a function and a module at once"


BOTTOM = {"firehose.codec", "firehose.errors", "firehose.findings"}
"""What the state database may import of firehose: the bottom layer (no job, no store, no API)."""


def _firehose_imports(path: Path) -> set[str]:
    return {module for module in _imports(path) if module == "firehose" or module.startswith("firehose.")}


def test_state_imports_only_the_bottom_layer() -> None:
    assert _firehose_imports(PACKAGE / "state.py") <= BOTTOM, _firehose_imports(PACKAGE / "state.py")
    assert _firehose_imports(PACKAGE / "findings.py") == set(), "findings.py is the bottom: it imports no firehose"


def test_the_pure_classifier_imports_nothing_that_does_io() -> None:
    allowed = BOTTOM | {"firehose.archive.base", "firehose.archive.layout", "firehose.event", "firehose.ids"}
    found = _firehose_imports(PACKAGE / "reconciliation" / "classify.py")
    assert found <= allowed, found - allowed


JOBS = [
    "reconciliation/",
    "watching/",
    "evidence/",
    "replaying/",
    "feed.py",
    "whereabouts.py",
    "history.py",
    "archive/browse.py",
    "progress.py",
]
"""The library's jobs (and the progress protocol they call): they return results and report progress through
``firehose.progress``; the command line renders."""


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("job", JOBS)
def test_jobs_never_import_the_command_line_or_its_rendering(job: str) -> None:
    paths = sorted((PACKAGE / job).glob("*.py")) if job.endswith("/") else [PACKAGE / job]
    assert paths and all(path.is_file() for path in paths), job
    for path in paths:
        found = _firehose_imports(path)
        assert not any(_is(m, "firehose.cli") or _is(m, "firehose.report") for m in found), (_name(path), found)


def test_rendering_knows_nothing_of_click_or_the_command_line() -> None:
    paths = sorted((PACKAGE / "report").glob("*.py"))
    assert {path.name for path in paths} >= {"__init__.py", "rows.py", "tables.py", "html.py", "progress.py"}
    for path in paths:
        found = _imports(path)
        assert not any(_is(m, "click") or _is(m, "firehose.cli") for m in found), (_name(path), found)


def test_the_progress_protocol_is_the_bottom_layer() -> None:
    assert _firehose_imports(PACKAGE / "progress.py") == set(), "progress.py imports no firehose"


COMMAND_BODY_LINES = 60


def test_no_command_line_function_is_longer_than_a_screen() -> None:
    too_long = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring is --help, not code
            if body and (node.end_lineno or 0) - body[0].lineno + 1 > COMMAND_BODY_LINES:
                too_long.append(f"{_name(path)}:{node.name}")
    assert not too_long, too_long


CLI_MAY_IMPORT = {
    "firehose": "the public API",
    "firehose.cli": "the command line's own modules",
    "firehose.config": "settings",
    "firehose.secret": "secret values and their redaction (settings hold keys)",
    "firehose.errors": "the exception tree and exit codes",
    "firehose.duration": "the one duration grammar of every flag",
    "firehose.progress": "the protocol the jobs report progress through",
    "firehose.report": "rendering",
}
"""What a command-line module may import from firehose (a module here, or one below a package here)."""
SANDBOX_MAY_IMPORT = {"firehose.sandbox", "firehose.archive"}
"""``firehose sandbox`` serves the LeadConduit stand-in, a tool of its own, writing to stores it is given."""


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=_name)
def test_the_command_line_imports_only_the_public_api_settings_and_rendering(path: Path) -> None:
    allowed = set(CLI_MAY_IMPORT) | (SANDBOX_MAY_IMPORT if path.name == "sandbox.py" else set())
    outside = sorted(
        module
        for module in _firehose_imports(path)
        if module != "firehose"
        and not any(module.startswith(ok + ".") or module == ok for ok in allowed - {"firehose"})
    )
    assert not outside, f"{_name(path)} imports {outside}: give the library a public name for it"
    import firehose

    tree = ast.parse(path.read_text())
    from_public = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "firehose" and node.level == 0
        for alias in node.names
    }
    assert from_public <= set(firehose.__all__), from_public - set(firehose.__all__)


def test_the_command_line_starts_without_the_jobs_or_their_libraries() -> None:
    """Every command module is imported at start, so each imports its job inside the command: ``firehose
    --version`` took 0.47 s, not 0.11 s, when they did it at the top (measured by scripts/bench, start-up). And
    rich is loaded to draw, never at start: httpx's own command-line tool would load it, and pygments, at every
    import of httpx, were it not kept out (``firehose.http``)."""
    import subprocess
    import sys

    heavy = ["httpx", "cryptography", "boto3", "azure", "sqlite3", "rich", "pygments", "firehose.http",
             "firehose.reconciliation.run", "firehose.evidence.pack", "firehose.replaying.send",
             "prometheus_client"]  # fmt: skip
    probe = f"import sys, firehose.cli\nprint([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"loaded at start: {out}"
    probe = "import sys, firehose.http\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'pygments'}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
