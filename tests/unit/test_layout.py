"""Where code lives: the web app never loads the engine, and only the lifecycle writes instance state."""

import ast

from tests.fixtures import REPO

STATE_FIELDS = {
    "status", "status_message", "health", "health_failures", "health_changed_at", "health_checked_at",
    "requested_action", "desired_state", "observed_generation", "attempts", "next_attempt_at",
}  # fmt: skip
LIFECYCLE = REPO / "clawdet" / "instances" / "lifecycle.py"


def modules(*packages: str):
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_web_app_and_the_streams_import_neither_pulumi_nor_the_reconciler():
    for path, tree in modules("webapp", "streams"):
        bad = {n for n in imported(tree) if n.split(".")[0] == "pulumi" or n.startswith("clawdet.reconciler")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_domain_never_imports_the_web_app():
    """Except the CLI, which stands on everything: `clawdet web` and `clawdet run` serve it."""
    for path, tree in modules("clawdet"):
        if "cli" in path.relative_to(REPO).parts:
            continue
        bad = {n for n in imported(tree) if n.split(".")[0] in {"webapp", "streams"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_two_web_layers_stand_side_by_side():
    """Flask's app and the stream server share the domain, never each other's code."""
    for package, other in (("webapp", "streams"), ("streams", "webapp")):
        for path, tree in modules(package):
            bad = {n for n in imported(tree) if n.split(".")[0] == other}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_only_the_reconciler_imports_the_automation_api():
    for path, tree in modules("clawdet", "webapp", "streams", "db"):
        if "reconciler" in path.parts:
            continue
        bad = {n for n in imported(tree) if n.startswith("pulumi")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_db_stands_on_nothing_of_ours():
    for path, tree in modules("db"):
        bad = {n for n in imported(tree) if n.split(".")[0] in {"clawdet", "webapp", "sandbox", "programs"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_instance_state_is_written_only_by_the_lifecycle():
    offenders = []
    for path, tree in modules("clawdet", "webapp", "streams"):
        if path == LIFECYCLE:
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (
                        isinstance(element, ast.Attribute)
                        and element.attr in STATE_FIELDS
                        and isinstance(element.value, ast.Name)
                        and element.value.id in {"instance", "inst"}
                    ):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} sets {element.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InstanceEvent":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} adds an InstanceEvent")
    assert offenders == [], "use a transition of clawdet/instances/lifecycle.py:\n" + "\n".join(offenders)
