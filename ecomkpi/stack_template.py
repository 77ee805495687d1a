"""The CloudFormation template (``infra/ecomkpi-stack.yaml``) read by the local stack: one source.

The local stack must tell its tasks and its state machine what the deployed stack tells them, and
typing those values again drifts: a variable added to a task definition, or a substitution added to a
state machine, would be missing locally without a test noticing. So the local stack reads them from
the template and resolves the intrinsics it meets (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
``Fn::If`` with the template's own ``Conditions``) against its own resources: ``names`` maps a
resource (``BucketName``), an attribute (``EcsCluster.Arn``) or a pseudo parameter (``AWS::Region``) to
its local value; a parameter not in ``names`` takes its ``Default``. Anything else is a
:class:`TemplateError` that names the resource: a new intrinsic must be taught here, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "infra" / "ecomkpi-stack.yaml"
# The state machine resource of each task mode.
STATE_MACHINES = {
    "ecs": "PipelineStateMachine",
    "worker": "WorkerStateMachine",
    "emr-serverless": "EmrServerlessStateMachine",
}
# A local value: one string, or a list (a ``List<...>`` parameter, which ``Fn::Join`` joins).
Value = str | list[str]
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class TemplateError(ValueError):
    """The template holds something the local stack cannot resolve."""


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template with its short-form intrinsics (``!Ref x``) as their long forms (``{"Ref": x}``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    with path.open(encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=Loader)  # a SafeLoader subclass
    if not isinstance(loaded, dict):
        raise TemplateError(f"{path}: not a template")
    return loaded


class Resolver:
    """Resolves the intrinsics of one template against the local stack's ``names``."""

    def __init__(self, template: Mapping[str, Any], names: Mapping[str, Value]) -> None:
        self.parameters: Mapping[str, Any] = template.get("Parameters", {})
        self.conditions: Mapping[str, Any] = template.get("Conditions", {})
        self.names = names

    def text(self, value: Any, where: str) -> str:
        resolved = self.value(value, where)
        if isinstance(resolved, list):
            raise TemplateError(f"{where}: {value!r} is a list where a string is needed")
        return resolved

    def value(self, value: Any, where: str) -> Value:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, list):
            return [self.text(v, where) for v in value]
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(str(argument), where)
            if function == "Fn::GetAtt":
                return self.named(".".join(argument), where, "!GetAtt")
            if function == "Fn::Sub" and isinstance(argument, str):
                return _SUB_VARIABLE.sub(lambda m: self.text({"Ref": m.group(1)}, where), argument)
            if function == "Fn::Join":
                separator, items = argument
                joined = self.value(items, where)
                return str(separator).join(joined if isinstance(joined, list) else [joined])
            if function == "Fn::If":
                condition, when_true, when_false = argument
                return self.value(when_true if self.condition(condition, where) else when_false, where)
        raise TemplateError(f"{where}: cannot resolve {value!r} locally")

    def ref(self, name: str, where: str) -> Value:
        """``!Ref``, and ``${X}`` in ``!Sub`` (which may also name ``Resource.Attribute``)."""
        if name in self.names or "." in name:
            return self.named(name, where, "!Ref")
        parameter = self.parameters.get(name)
        if parameter is not None and "Default" in parameter:
            default = parameter["Default"]
            return [str(v) for v in default] if isinstance(default, list) else str(default)
        raise TemplateError(f"{where}: nothing local for !Ref {name} (give it in names)")

    def named(self, name: str, where: str, form: str) -> Value:
        if name not in self.names:
            raise TemplateError(f"{where}: nothing local for {form} {name} (give it in names)")
        return self.names[name]

    def condition(self, name: str, where: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"{where}: no condition {name} in the template")
        return self.truth(self.conditions[name], where)

    def truth(self, value: Any, where: str) -> bool:
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Fn::Equals":
                left, right = (self.value(v, where) for v in argument)
                return left == right
            if function == "Fn::Not":
                return not self.truth(argument[0], where)
            if function == "Fn::And":
                return all(self.truth(v, where) for v in argument)
            if function == "Fn::Or":
                return any(self.truth(v, where) for v in argument)
            if function == "Condition":
                return self.condition(str(argument), where)
        raise TemplateError(f"{where}: cannot evaluate the condition {value!r} locally")


def resource_environment(
    template: Mapping[str, Any], resources: Sequence[str], names: Mapping[str, str]
) -> dict[str, str]:
    """The variables of the task definitions ``resources`` that name the stack's resources (a
    ``!Ref`` to one of ``names``), resolved: what a task must be told of the stack, whatever runs it.

    The other variables size the container (memory, ports, the cluster master); a process on this
    machine sizes itself, so the local stack's process runtime takes only these."""
    found: dict[str, str] = {}
    for resource in resources:
        (container,) = template["Resources"][resource]["Properties"]["ContainerDefinitions"]
        for entry in container.get("Environment", []):
            value = entry["Value"]
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in names:
                found[str(entry["Name"])] = names[value["Ref"]]
    return found


def state_machine_substitutions(
    template: Mapping[str, Any], mode: str, names: Mapping[str, Value]
) -> dict[str, str]:
    """The ``DefinitionSubstitutions`` the stack gives the state machine of ``mode``, resolved."""
    try:
        resource = STATE_MACHINES[mode]
    except KeyError:
        raise TemplateError(f"no state machine for the task mode {mode!r}") from None
    properties = template["Resources"][resource]["Properties"]
    resolver = Resolver(template, names)
    return {
        str(key): resolver.text(value, f"{resource}.DefinitionSubstitutions.{key}")
        for key, value in properties.get("DefinitionSubstitutions", {}).items()
    }
