"""The stack's ECS tasks as containers of the pipeline image (``ecomkpi up --task-runtime container``).

A process task proves the code; only a container of the image proves the deployed form: that the
image's Python, Java, jars and class archive work together, as uid 10001, on a read-only root file
system with the volumes the task definition gives it, within the task's CPU and memory. So the
container gets what the stack's task definition (``infra/ecomkpi-stack.yaml``) gives Fargate, read
from the template rather than typed again: its command, its environment (``!Ref`` resolved to the
local stack's names and the parameters' defaults), ``ReadonlyRootFilesystem`` with a fresh volume per
``MountPoints`` path (Fargate's task volumes without a host: empty, filled with the image's content
and owner), ``Cpu``/``Memory`` as limits and ``StopTimeout`` as the grace of a stop.

What the local stack adds is what Fargate provides outside the task definition: the emulator's
endpoint and its fixed credentials (the task role's, in AWS). The containers share the host's network
(``--network host``), where the emulator and the local Step Functions endpoint listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecomkpi.stack_template import REPO_ROOT, Resolver, TemplateError

CONTAINERS_CONF = REPO_ROOT / "docker" / "containers.conf"
DEFAULT_IMAGE = "localhost/ecomkpi:dev"
# The container of each task definition resource, as the workflow names it.
TASK_DEFINITIONS = {
    "validation": "ValidationTaskDefinition",
    "transformation": "TransformationTaskDefinition",
    "worker": "WorkerTaskDefinition",
}
# Passed from the stack's own environment when set: how this machine's JVMs are tuned, not part of the
# task's contract (the tests' short-lived JVMs use C1 only and the serial collector).
PASSED_THROUGH = ("JAVA_TOOL_OPTIONS",)
# ECS's default stop timeout when the container definition sets none.
ECS_STOP_TIMEOUT = 30


@dataclass(frozen=True)
class TaskDefinition:
    """One container definition of the template, resolved for the local stack."""

    resource: str
    container: str
    command: tuple[str, ...]
    environment: dict[str, str]
    cpu_units: int
    memory_mib: int
    readonly_root: bool
    writable_paths: tuple[str, ...]
    stop_timeout: int = ECS_STOP_TIMEOUT


def task_definition(template: Mapping[str, Any], resource: str, names: Mapping[str, str]) -> TaskDefinition:
    """``resource``'s single container, its ``Ref``s resolved: ``names`` for the stack's resources and
    pseudo parameters (``AWS::Region``), else the parameter's ``Default`` (or ``names``' value)."""
    resolver = Resolver(template, names)

    def resolve(value: Any) -> str:
        return resolver.text(value, resource)

    try:
        props = template["Resources"][resource]["Properties"]
    except KeyError as exc:
        raise TemplateError(f"{resource}: no such resource in the template") from exc
    (container,) = props["ContainerDefinitions"]
    volumes = {v["Name"] for v in props.get("Volumes", [])}
    paths = []
    for mount in container.get("MountPoints", []):
        if mount.get("SourceVolume") not in volumes:
            raise TemplateError(f"{resource}: MountPoint {mount} names no task volume")
        if not mount.get("ReadOnly", False):
            paths.append(str(mount["ContainerPath"]))
    return TaskDefinition(
        resource=resource,
        container=str(container["Name"]),
        command=tuple(str(c) for c in container.get("Command", [])),
        environment={str(e["Name"]): resolve(e["Value"]) for e in container.get("Environment", [])},
        cpu_units=int(resolve(props["Cpu"])),
        memory_mib=int(resolve(props["Memory"])),
        readonly_root=bool(container.get("ReadonlyRootFilesystem", False)),
        writable_paths=tuple(paths),
        stop_timeout=int(container.get("StopTimeout", ECS_STOP_TIMEOUT)),
    )


def podman_environment() -> dict[str, str]:
    """The environment of a podman call: the caller's, with the project's containers.conf."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def unavailable_reason(image: str = DEFAULT_IMAGE) -> str | None:
    """Why containers of ``image`` cannot run here (None when they can): what the tests skip on."""
    if shutil.which("podman") is None:
        return "podman is not installed (make image installs it from Debian packages)"
    probe = subprocess.run(
        ["podman", "image", "exists", image], env=podman_environment(), capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"the image {image} is not built (make image)"
    return None


@dataclass
class PodmanRuntime:
    """Turns a task definition, its command and its environment into a ``podman run``."""

    image: str = DEFAULT_IMAGE
    # Containers of this stack are named <prefix>-<task>: `podman ps --filter name=` finds them.
    prefix: str = "ecomkpi"
    extra_run_args: tuple[str, ...] = ()
    # Every podman run argv this runtime built, in order (run reports and tests read them).
    launched: list[list[str]] = field(default_factory=list)

    def host_cpus(self) -> float:
        return float(os.cpu_count() or 1)

    def run_argv(
        self, name: str, definition: TaskDefinition, command: Sequence[str], environment: Mapping[str, str]
    ) -> list[str]:
        """The foreground ``podman run`` of one task: its output is the container's, its exit code the
        container's (a signal death as 128 + n, as ECS reports it). No ``--user``: the image's own
        (uid 10001), as on Fargate when the container definition names none."""
        # A task asking for more vCPUs than this machine has gets all of them (podman refuses more).
        cpus = min(definition.cpu_units / 1024, self.host_cpus())
        argv = [
            "podman",
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            f"--cpus={cpus:g}",
            f"--memory={definition.memory_mib}m",
            f"--stop-timeout={definition.stop_timeout}",
        ]
        if definition.readonly_root:
            # Only the task's volumes are writable (podman would add tmpfs on /tmp, /run, /var/tmp).
            argv += ["--read-only", "--read-only-tmpfs=false"]
        for path in definition.writable_paths:
            # An anonymous volume: empty, filled from the image (owner and mode too), removed with
            # the container, as a Fargate task volume without a host.
            argv += ["--volume", path]
        for name_ in sorted(environment):
            argv += ["--env", f"{name_}={environment[name_]}"]
        argv += [*self.extra_run_args, self.image, *command]
        self.launched.append(argv)
        return argv

    def stop(self, name: str, timeout: float) -> None:
        """``podman stop``: SIGTERM, then SIGKILL after ``timeout`` seconds (ECS's stop of a task)."""
        subprocess.run(
            ["podman", "stop", "--ignore", "--time", str(int(timeout)), name],
            env=podman_environment(),
            capture_output=True,
            check=False,
            timeout=timeout + 30,
        )

    def remove(self, name: str) -> None:
        subprocess.run(
            ["podman", "rm", "--force", "--ignore", "--volumes", name],
            env=podman_environment(),
            capture_output=True,
            check=False,
            timeout=60,
        )


def container_environment(
    definition: TaskDefinition, added: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The task definition's environment, what the stack adds (endpoint, credentials) and the
    container overrides of the run, in that order of precedence, as ECS merges them."""
    env = dict(definition.environment)
    env.update({k: os.environ[k] for k in PASSED_THROUGH if os.environ.get(k)})
    env.update(added)
    env.update(overrides or {})
    return env


@dataclass
class ContainerTask:
    """One task definition as containers: what ``RunTaskHandler`` and ``WorkerSupervisor`` launch
    (``ecomkpi.sfn_local.tasks.ContainerLauncher``)."""

    runtime: PodmanRuntime
    definition: TaskDefinition
    added: Mapping[str, str]

    def launch(self, name: str, command: Sequence[str], overrides: Mapping[str, str]) -> list[str]:
        env = container_environment(self.definition, self.added, overrides)
        return self.runtime.run_argv(name, self.definition, command, env)

    def process_environment(self) -> dict[str, str]:
        return podman_environment()

    def environment(self) -> dict[str, str]:
        return container_environment(self.definition, self.added, {})

    def stop(self, name: str) -> None:
        """ECS's stop: SIGTERM, ``StopTimeout`` seconds, SIGKILL; then the container is gone."""
        self.runtime.stop(name, self.definition.stop_timeout)
        self.runtime.remove(name)

    def kill(self, name: str, signal_name: str = "KILL") -> None:
        subprocess.run(
            ["podman", "kill", "--signal", signal_name, name],
            env=podman_environment(),
            capture_output=True,
            check=False,
            timeout=60,
        )
