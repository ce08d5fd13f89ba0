"""The OpenTelemetry resource: who is emitting.

One :class:`Resource` object is shared by the three providers. After ``fork()`` it
is updated *in place* (new ``service.instance.id`` and ``process.pid``) so every
tracer, meter and logger created before the fork reports the child's identity.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import uuid
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import AttributeValue

from . import __version__
from ._config import Settings

__all__ = ["build_resource", "refresh_after_fork"]

_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def container_id() -> str | None:
    """The 64-hex container id from cgroup v1 or the v2 mountinfo, if in a container."""
    for path in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if (
                        path.endswith("mountinfo")
                        and "/containers/" not in line
                        and "hostname" not in line
                    ):
                        continue
                    match = _CONTAINER_ID.search(line)
                    if match:
                        return match.group(1)
        except OSError:
            continue
    return None


def _k8s(env: Mapping[str, str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if not env.get("KUBERNETES_SERVICE_HOST"):
        return attrs
    pod = env.get("K8S_POD_NAME") or env.get("POD_NAME") or env.get("HOSTNAME")
    if pod:
        attrs["k8s.pod.name"] = pod
    namespace = env.get("K8S_NAMESPACE") or env.get("POD_NAMESPACE")
    if not namespace:
        try:
            with open(_SA_NAMESPACE, encoding="utf-8") as f:
                namespace = f.read().strip()
        except OSError:
            namespace = None
    if namespace:
        attrs["k8s.namespace.name"] = namespace
    node = env.get("K8S_NODE_NAME") or env.get("NODE_NAME")
    if node:
        attrs["k8s.node.name"] = node
    return attrs


def build_resource(settings: Settings, env: Mapping[str, str] | None = None) -> Resource:
    env = os.environ if env is None else env
    attrs: dict[str, AttributeValue] = {
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.distro.name": "platform-otel",
        "telemetry.distro.version": __version__,
        "host.name": socket.gethostname(),
        "process.runtime.name": platform.python_implementation().lower(),
        "process.runtime.version": platform.python_version(),
    }
    try:
        from opentelemetry.sdk.version import __version__ as sdk_version

        attrs["telemetry.sdk.version"] = sdk_version
    except Exception:
        pass
    cid = container_id()
    if cid:
        attrs["container.id"] = cid
    attrs.update(_k8s(env))
    attrs.update(settings.resource_attributes)  # OTEL_RESOURCE_ATTRIBUTES overrides detection
    attrs["service.name"] = settings.service_name
    if settings.service_version:
        attrs["service.version"] = settings.service_version
    if settings.environment:
        attrs["deployment.environment.name"] = settings.environment
    attrs["service.instance.id"] = str(uuid.uuid4())
    attrs["process.pid"] = os.getpid()
    return Resource(attrs)


def refresh_after_fork(resource: Resource) -> None:
    """Give a forked child its own identity, in place (see module docstring)."""
    from ._otel_private import set_resource_attributes

    attrs = dict(resource.attributes)
    attrs["service.instance.id"] = str(uuid.uuid4())
    attrs["process.pid"] = os.getpid()
    set_resource_attributes(resource, attrs)
