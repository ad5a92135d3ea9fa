"""docker/k8s: the kustomize base and its CPU and GPU overlays, rendered (kustomize_model.py) and
validated against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields are
errors), without a cluster; and wired to what the images and the service really do (port, user,
probes, metric names, time limits)."""

from __future__ import annotations

import copy
import re
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from dockerfile_model import DOCKERFILES, parse
from kustomize_model import ADAPTER_RULES, K8S, OVERLAYS, KustomizeError, by_kind, render

from service.metrics import Metrics
from service.settings import Settings

# The oldest Kubernetes the manifests are meant for (every field they use is GA or beta there) and
# the newest the validator knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _validate_all(docs: list[dict], version: str) -> list[str]:
    errors = []
    for d in docs:
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{d['kind']}/{d['metadata']['name']}: {'/'.join(map(str, exc.path))}: {exc.message}"
            )
    return errors


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request):
    return request.param, by_kind(render(OVERLAYS[request.param]))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("flavor", sorted(OVERLAYS))
def test_overlays_match_the_kubernetes_api_schemas(flavor, version):
    docs = render(OVERLAYS[flavor])
    assert sorted(d["kind"] for d in docs) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    assert _validate_all(docs, version) == []


@pytest.mark.parametrize(
    "mutate, where",
    [
        (
            lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriod=330),
            "terminationGracePeriod",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="8000"),
            "containerPort",
        ),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"), "name"),
    ],
)
def test_the_schema_check_can_fail(mutate, where):
    docs = copy.deepcopy(render(OVERLAYS["cpu"]))
    mutate(next(d for d in docs if d["kind"] == "Deployment"))
    errors = _validate_all(docs, K8S_VERSIONS[-1])
    assert errors and any(where in e for e in errors), errors


def test_the_renderer_refuses_what_it_does_not_handle(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\nnamePrefix: x-\n"
    )
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)


def test_the_overlays_set_image_device_and_resources(overlay):
    flavor, res = overlay
    pod = res["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    image = parse(DOCKERFILES[flavor]).final
    assert c["image"] == f"parawave:{flavor}"
    env = {e["name"]: e["value"] for e in c["env"]}
    ours = {k.removeprefix("PARAWAVE_").lower(): v for k, v in env.items() if k.startswith("PARAWAVE_")}
    settings = Settings(_env_file=None, **{**_image_settings(image), **ours})
    resources = c["resources"]
    if flavor == "gpu":
        assert settings.device == "cuda" and settings.require_cuda
        assert resources["limits"]["nvidia.com/gpu"] == 1 == resources["requests"]["nvidia.com/gpu"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert settings.device == "cpu" and "nvidia.com/gpu" not in str(resources)
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
        # the engine's thread pool matches the CPU limit (a limit does not narrow the CPUs it sees)
        assert env["PARAWAVE_STUDENT_THREADS"] == resources["limits"]["cpu"]
        assert "tolerations" not in pod
    assert resources["limits"]["memory"]


def _image_settings(image) -> dict[str, str]:
    return {k.removeprefix("PARAWAVE_").lower(): v for k, v in image.env.items() if k.startswith("PARAWAVE_")}


def test_probes_ports_and_drain_match_the_service(overlay):
    flavor, res = overlay
    image = parse(DOCKERFILES[flavor]).final
    pod = res["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    port, wyoming = c["ports"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert str(port["containerPort"]) == image.env["PARAWAVE_PORT"] == env["PARAWAVE_PORT"]
    assert str(port["containerPort"]) in [p.split("/")[0] for p in image.expose]
    # Wyoming (Home Assistant): where the settings make the server listen, exposed, and in the Service
    assert wyoming["name"] == "wyoming" and wyoming["protocol"] == "TCP"
    for uri in (env["PARAWAVE_WYOMING_URI"], image.env["PARAWAVE_WYOMING_URI"]):
        listen = urlparse(Settings(_env_file=None, wyoming_uri=uri).wyoming_uri)
        assert (listen.hostname, listen.port) == ("0.0.0.0", wyoming["containerPort"])
    assert str(wyoming["containerPort"]) in [p.split("/")[0] for p in image.expose]
    service_ports = {p["name"]: p for p in res["Service"]["spec"]["ports"]}
    assert service_ports["wyoming"]["targetPort"] == "wyoming" and service_ports["wyoming"]["port"] == 10200
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port["name"]}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health/ready"
    # at least the image's own HEALTHCHECK start period for the warm-up
    start_period = int(image.healthcheck[0]["start-period"].removesuffix("s"))
    assert startup["periodSeconds"] * startup["failureThreshold"] >= start_period
    # drain: preStop pause + the longest request the service admits (the teacher's limit) < grace
    pause = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    defaults = Settings(_env_file=None)
    longest = max(defaults.reference_timeout_s, defaults.request_timeout_s, defaults.graceful_shutdown_s)
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + longest  # uvicorn drains before the kill
    annotations = res["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_non_root_read_only_and_only_tmp_writable(overlay):
    flavor, res = overlay
    image = parse(DOCKERFILES[flavor]).final
    pod = res["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    uid, gid = image.user.split(":")
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True and str(ctx["runAsUser"]) == uid and str(ctx["runAsGroup"]) == gid
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # writable: /tmp alone, an emptyDir (the docker test runs the image read-only with only /tmp)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    # the voices: those baked into the image, where the image's settings look for them
    assert image.env["PARAWAVE_VOICES_DIR"] == "/opt/parawave/voices"
    assert pod["automountServiceAccountToken"] is False


def test_service_pdb_spread_and_hpa_select_these_pods(overlay):
    _, res = overlay
    deployment = res["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = res["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert res["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for s in spread:
        assert s["labelSelector"]["matchLabels"].items() <= labels.items()
    hpa = res["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    # a PDB of maxUnavailable 1 leaves a replica serving through a drain
    assert res["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1 < hpa["minReplicas"]


def test_hpa_metric_is_exported_and_served_by_the_adapter_rule(overlay):
    _, res = overlay
    (metric,) = res["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    assert float(metric["pods"]["target"]["averageValue"]) > 0
    exported = {m.name for m in Metrics().registry.collect()}
    assert name in exported, sorted(exported)
    rules = yaml.safe_load(ADAPTER_RULES.read_text())
    (rule,) = [r for r in rules if r["name"]["as"] == name]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert series in exported and re.fullmatch(rule["name"]["matches"], series)
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert "<<.Series>>" in rule["metricsQuery"] and "by (<<.GroupBy>>)" in rule["metricsQuery"]
    for r in rules:  # every rule names a gauge /metrics really has
        assert re.match(r"(\w+)\{", r["seriesQuery"]).group(1) in exported


def test_readme_deploys_the_overlays():
    readme = (K8S.parents[1] / "README.md").read_text()
    for flavor in OVERLAYS:
        assert f"kubectl apply -k docker/k8s/overlays/{flavor}" in readme
