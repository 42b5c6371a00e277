"""The package's layering: the library never reaches for the research tools, the CLI or ComfyUI,
and the nodes use only the library. Checked on the source, so a stray import fails here even if
no test happens to run that code path."""
import ast
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ganprior_core"
COMFYUI_MODULES = {"comfy", "folder_paths", "comfy_api", "server", "nodes", "comfy_extras"}


def imported_modules(path: Path) -> list[str]:
    """Absolute dotted names of everything `path` imports (relative imports resolved)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = list(path.relative_to(ROOT).parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


def is_research_or_cli(module: str) -> bool:
    return module.startswith(("ganprior_core.lab", "ganprior_core.cli", "ganprior_core.__main__"))


def library_files() -> list[Path]:
    return [path for path in sorted(CORE.rglob("*.py"))
            if not is_research_or_cli(".".join(path.relative_to(ROOT).with_suffix("").parts))]


def test_the_library_never_imports_the_research_tools_or_the_cli():
    assert len(library_files()) > 20
    for path in library_files():
        bad = [name for name in imported_modules(path) if is_research_or_cli(name)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_nodes_import_only_the_library():
    for path in sorted((ROOT / "nodes").glob("*.py")):
        bad = [name for name in imported_modules(path) if is_research_or_cli(name)]
        assert not bad, f"{path.name} imports {bad}"


def test_the_core_never_imports_comfyui():
    for path in sorted(CORE.rglob("*.py")):
        tops = {name.split(".")[0] for name in imported_modules(path)
                if not name.startswith("ganprior_core")}
        assert not tops & COMFYUI_MODULES, f"{path.relative_to(ROOT)} imports {tops & COMFYUI_MODULES}"


def test_every_folder_of_the_library_is_a_package_the_wheel_includes():
    folders = {path.parent for path in CORE.rglob("*.py")} | {CORE / "priors"}
    found = set(find_packages(str(ROOT), include=["ganprior_core*"]))
    for folder in folders:
        assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} has no __init__.py"
        assert ".".join(folder.relative_to(ROOT).parts) in found


def face_imports(path: Path) -> list[str]:
    """What `path` takes from inside ganprior_core: `from ganprior_core import X` gives 'X',
    `from ganprior_core.imaging import Y` gives 'imaging'."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = imported_modules_of(node, path)
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if "ganprior_core" in parts:
                module = ".".join(parts[parts.index("ganprior_core") + 1:])
                # `from ganprior_core import X`: X itself is what is taken from the face
                taken = [alias.name for alias in node.names] if not module and isinstance(node, ast.ImportFrom) else []
                modules += taken or [module]
    return modules


def imported_modules_of(node: ast.ImportFrom, path: Path) -> list[str]:
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    base = package[:len(package) - node.level + 1] if node.level else []
    return [".".join([*base, *(node.module.split(".") if node.module else [])])]


def test_the_nodes_and_the_product_cli_use_only_the_librarys_public_face():
    import ganprior_core

    face = set(ganprior_core.__all__)
    users = [*sorted((ROOT / "nodes").glob("*.py")), ROOT / "__init__.py", CORE / "cli.py"]
    for path in users:
        outside = [taken for taken in face_imports(path) if taken not in face]
        assert not outside, f"{path.relative_to(ROOT)} imports from ganprior_core.{outside}, past its face"
