"""The Kubernetes sidecar manifest (collector/k8s/sidecar.yaml) is valid and consistent.

The schema check is ``kubernetes-validate`` (the ``docs`` extra): the Kubernetes
OpenAPI schemas it bundles, strict (unknown fields are errors), offline. It runs at
Kubernetes 1.29, the first release with native sidecar containers enabled by default,
and at the newest release the package bundles. What a schema cannot see, a user would
find at ``kubectl apply`` or when no telemetry arrives: the ConfigMap is not
collector/config.yaml, a mount or port names nothing, the Service selects no pod, the
service sends to a port the sidecar does not listen on.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.fixtures import REPO_ROOT

MANIFEST = REPO_ROOT / "collector" / "k8s" / "sidecar.yaml"
CONFIG = REPO_ROOT / "collector" / "config.yaml"


def _objects() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"], kinds
    return {d["kind"]: d for d in docs}


def _validator() -> Any:
    """kubernetes_validate, or a skip where it is not installed (the lowest-versions suite)."""
    return pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed: pip install -e '.[docs]'"
    )


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_manifest_is_valid_against_the_kubernetes_schemas(which: str) -> None:
    kv = _validator()
    version = "1.29.0" if which == "oldest" else kv.latest_version()
    for kind, obj in _objects().items():
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(
                f"{kind} is not valid for Kubernetes {version}: {exc.message} at {exc.path}"
            )


def test_a_broken_manifest_is_rejected() -> None:
    """The check can fail: a misspelt field and a wrong type are both reported."""
    kv = _validator()
    version = kv.latest_version()
    deployment = _objects()["Deployment"]
    misspelt = yaml.safe_load(yaml.safe_dump(deployment))
    misspelt["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, version, strict=True)


def test_configmap_is_the_sidecar_config() -> None:
    assert _objects()["ConfigMap"]["data"]["config.yaml"] == CONFIG.read_text(), (
        "collector/k8s/sidecar.yaml's ConfigMap differs from collector/config.yaml: "
        "run python scripts/sync_k8s_configmap.py"
    )


def test_pod_references_resolve() -> None:
    objects = _objects()
    deployment, service, configmap = objects["Deployment"], objects["Service"], objects["ConfigMap"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    # selectors
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    # volumes and mounts
    volumes = {v["name"]: v for v in spec["volumes"]}
    containers = spec["containers"] + spec.get("initContainers", [])
    for container in containers:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts unknown {mount['name']}"
    assert volumes["otelcol-config"]["configMap"]["name"] == configmap["metadata"]["name"]
    # the collector: a native sidecar reading the mounted config, queue on a volume
    (collector,) = [c for c in spec["initContainers"] if c["name"] == "otel-collector"]
    assert collector["restartPolicy"] == "Always"
    mounts = {m["name"]: m["mountPath"] for m in collector["volumeMounts"]}
    assert f"--config={mounts['otelcol-config']}/config.yaml" in collector["args"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    storage_default = config["extensions"]["file_storage"]["directory"].split(":-")[1].rstrip("}")
    assert mounts["otelcol-queue"] == storage_default
    # ports: Service target ports and probes name container ports
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports, f"Service port {port['name']} targets nothing"
    for probe in ("startupProbe", "livenessProbe"):
        assert collector[probe]["httpGet"]["port"] in ports
    assert (
        ports["otel-health"] == 13133
        and "13133" in config["extensions"]["health_check"]["endpoint"]
    )
    assert ports["otel-metrics"] == 8889 and "8889" in config["exporters"]["prometheus"]["endpoint"]
    # the service sends OTLP to the sidecar's gRPC receiver
    collector_env = {e["name"]: e.get("value") for e in collector["env"]}
    (app,) = spec["containers"]
    app_env = {e["name"]: e.get("value") for e in app["env"]}
    grpc_host, grpc_port = collector_env["OTELCOL_OTLP_GRPC_ENDPOINT"].rsplit(":", 1)
    assert grpc_host == "127.0.0.1"
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{grpc_port}"
    assert app_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    # every variable the sidecar sets is one the config reads
    for name in collector_env:
        if name != "GOMEMLIMIT":
            assert f"${{env:{name}" in configmap["data"]["config.yaml"], f"{name} is not read"


def test_gomemlimit_is_below_the_memory_limit() -> None:
    spec = _objects()["Deployment"]["spec"]["template"]["spec"]
    (collector,) = spec["initContainers"]
    env = {e["name"]: e["value"] for e in collector["env"] if "value" in e}
    limit = collector["resources"]["limits"]["memory"]
    assert env["GOMEMLIMIT"].endswith("MiB") and limit.endswith("Mi")
    ratio = int(env["GOMEMLIMIT"][:-3]) / int(limit[:-2])
    assert 0.7 <= ratio <= 0.9, f"GOMEMLIMIT {env['GOMEMLIMIT']} is not ~80 % of {limit}"
