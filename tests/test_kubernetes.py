"""deploy/kubernetes/ (issue 28.3), checked offline: every manifest against the
Kubernetes API schemas (kubernetes-validate, strict: no unknown field), KEDA's
resources against the fields of KEDA's published ScaledObject and
TriggerAuthentication specification (KEDA ships no schema package: the fields
below are written from keda.sh/docs/2.17/reference/scaledobject-spec and the
prometheus and metrics-api scaler pages), and the manifests against each other and
against SharQ itself (routes, settings, tokens). The PromQL they use is run
against a real Prometheus scraping a real SharQ in tests/test_deploy.py."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sharq_core import load_config
from sharq_core.tokens import parse_tokens
from sharq_server.routes import OPEN, ROUTES

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed: pip install -e '.[test]'"
)

KUBERNETES = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.29.0"  # the oldest release still in wide use whose schema the package ships
KEDA = "keda.sh/v1alpha1"


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource of every manifest."""
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def resource(kind: str, name: str, file: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for found_in, doc in documents()
        if doc["kind"] == kind and doc["metadata"]["name"] == name and file in (None, found_in)
    ]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(deployment: str) -> dict[str, Any]:
    return resource("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def ids(found: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{file}:{doc['kind']}/{doc['metadata']['name']}" for file, doc in found]


KUBERNETES_DOCS = [(file, doc) for file, doc in documents() if not doc["apiVersion"].startswith("keda.sh/")]
KEDA_DOCS = [(file, doc) for file, doc in documents() if doc["apiVersion"].startswith("keda.sh/")]


def test_the_manifests_hold_every_piece_the_issue_names() -> None:
    kinds = {(doc["kind"], file) for file, doc in documents()}
    for expected in (
        ("Deployment", "server.yaml"),
        ("Service", "server.yaml"),
        ("PodDisruptionBudget", "server.yaml"),
        ("ConfigMap", "config.yaml"),
        ("Secret", "config.yaml"),
        ("Deployment", "worker.yaml"),
        ("ScaledObject", "keda-prometheus.yaml"),
        ("ScaledObject", "keda-metrics-api.yaml"),
        ("TriggerAuthentication", "keda-metrics-api.yaml"),
        ("HorizontalPodAutoscaler", "hpa.yaml"),
        ("StatefulSet", "redis.yaml"),
    ):
        assert expected in kinds, expected


@pytest.mark.parametrize("file, doc", KUBERNETES_DOCS, ids=ids(KUBERNETES_DOCS))
@pytest.mark.parametrize("version", [KUBERNETES_VERSION, "1.37.0"])
def test_every_manifest_is_valid_kubernetes(file: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    """The check above has teeth: a misspelt field fails it."""
    broken = yaml.safe_load(yaml.safe_dump(resource("Deployment", "sharq-server")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- KEDA: the published fields, as a JSON Schema ---------------------------------

STRINGS = {"type": "string"}
INTEGER = {"type": "integer", "minimum": 0}
# every trigger's metadata is a map of strings (map[string]string in KEDA's Go
# types): a bare 8 where "8" is meant is refused by the API server
METADATA_STRINGS = {"type": "object", "additionalProperties": STRINGS}
TRIGGER_FIELDS = {
    "prometheus": {
        "required": {"serverAddress", "query", "threshold"},
        "optional": {
            "activationThreshold", "namespace", "customHeaders", "ignoreNullValues", "queryParameters",
            "unsafeSsl", "timeout", "authModes",
        },
    },
    "metrics-api": {
        "required": {"url", "valueLocation", "targetValue"},
        "optional": {
            "format", "activationTargetValue", "unsafeSsl", "aggregateFromKubeServiceEndpoints", "aggregationType",
            "authMode", "method", "keyParamName",
        },
    },
}  # fmt: skip
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": STRINGS, "namespace": STRINGS, "labels": METADATA_STRINGS, "annotations": METADATA_STRINGS},
    "additionalProperties": False,
}
TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "properties": {
        "type": {"enum": sorted(TRIGGER_FIELDS)},
        "metadata": METADATA_STRINGS,
        "name": STRINGS,
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": STRINGS,
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
            "additionalProperties": False,
        },
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
    },
    "additionalProperties": False,
}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": KEDA},
        "kind": {"const": "ScaledObject"},
        "metadata": OBJECT_META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "apiVersion": STRINGS,
                        "kind": STRINGS,
                        "name": STRINGS,
                        "envSourceContainerName": STRINGS,
                    },
                    "additionalProperties": False,
                },
                "pollingInterval": INTEGER,
                "cooldownPeriod": INTEGER,
                "initialCooldownPeriod": INTEGER,
                "idleReplicaCount": {"const": 0},  # the only value KEDA supports
                "minReplicaCount": INTEGER,
                "maxReplicaCount": INTEGER,
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": INTEGER,
                        "replicas": INTEGER,
                        "behavior": {
                            "enum": ["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]
                        },
                    },
                    "additionalProperties": False,
                },
                "advanced": {
                    "type": "object",
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "properties": {"name": STRINGS, "behavior": {"type": "object"}},
                            "additionalProperties": False,
                        },
                        "scalingModifiers": {
                            "type": "object",
                            "required": ["formula", "target"],
                            "properties": {
                                "formula": STRINGS,
                                "target": STRINGS,
                                "activationTarget": STRINGS,
                                "metricType": {"enum": ["AverageValue", "Value"]},
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                },
                "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": KEDA},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": OBJECT_META,
        "spec": {
            "type": "object",
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "properties": {"parameter": STRINGS, "name": STRINGS, "key": STRINGS},
                        "additionalProperties": False,
                    },
                },
                "env": {"type": "array"},
                "configMapTargetRef": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
                "azureKeyVault": {"type": "object"},
                "awsSecretManager": {"type": "object"},
                "gcpSecretManager": {"type": "object"},
                "boundServiceAccountToken": {"type": "array"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}  # fmt: skip
KEDA_SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}


def keda_problems(doc: dict[str, Any]) -> list[str]:
    """What KEDA's published fields refuse in one resource (empty: nothing)."""
    problems = [error.message for error in jsonschema.Draft202012Validator(KEDA_SCHEMAS[doc["kind"]]).iter_errors(doc)]
    for trigger in doc["spec"].get("triggers", []) if not problems else []:
        fields = TRIGGER_FIELDS[trigger["type"]]
        given = set(trigger["metadata"])
        problems += [f"{trigger['type']}: {name} is required" for name in sorted(fields["required"] - given)]
        unknown = given - fields["required"] - fields["optional"]
        problems += [f"{trigger['type']}: unknown field {name}" for name in sorted(unknown)]
    return problems


@pytest.mark.parametrize("file, doc", KEDA_DOCS, ids=ids(KEDA_DOCS))
def test_keda_resources_use_only_published_fields(file: str, doc: dict[str, Any]) -> None:
    assert keda_problems(doc) == []


def test_the_keda_check_refuses_what_keda_would() -> None:
    scaled = resource("ScaledObject", "sharq-worker-sms", "keda-prometheus.yaml")
    for change, expected in (
        (lambda spec: spec["triggers"][0]["metadata"].update(threshold=8), "8 is not of type 'string'"),
        (lambda spec: spec["triggers"][0]["metadata"].update(treshold="8"), "unknown field treshold"),
        (lambda spec: spec["triggers"][0]["metadata"].pop("query"), "query is required"),
        (lambda spec: spec.update(minReplicas=1), "'minReplicas' was unexpected"),
    ):
        broken = yaml.safe_load(yaml.safe_dump(scaled))
        change(broken["spec"])
        assert any(expected in problem for problem in keda_problems(broken)), expected


# --- the manifests against each other and against SharQ ---------------------------


def sharq_conf() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    parser.read_string(resource("ConfigMap", "sharq-config")["data"]["sharq.conf"])
    return parser


def test_the_config_map_is_a_valid_sharq_conf_and_the_secret_valid_tokens(tmp_path) -> None:
    """SharQ loads the ConfigMap's sharq.conf with the Deployment's environment, as
    the pod does (Kubernetes' $(NAME) expansion done here), and the tokens parse."""
    secret = resource("Secret", "sharq-secrets")["stringData"]
    environ: dict[str, str] = {}
    for entry in container("sharq-server")["env"]:
        if "valueFrom" in entry:
            environ[entry["name"]] = secret[entry["valueFrom"]["secretKeyRef"]["key"]]
        else:
            environ[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], entry["value"])
    (tmp_path / "sharq.conf").write_text(resource("ConfigMap", "sharq-config")["data"]["sharq.conf"])
    environ["SHARQ_CONFIG"] = str(tmp_path / "sharq.conf")
    config = load_config(environ=environ)
    assert (config.server.host, config.server.port, config.redis.url) == ("0.0.0.0", 8080, secret["redis-url"])
    assert not config.redis.embedded
    roles = {token.role for token in config.server.auth_tokens}
    assert roles == {"admin", "worker", "viewer"}
    assert len(parse_tokens(environ["SHARQ_AUTH_TOKENS"])) == 3


def test_every_secret_and_config_map_reference_exists() -> None:
    secrets = {doc["metadata"]["name"]: doc["stringData"] for _, doc in documents() if doc["kind"] == "Secret"}
    maps = {doc["metadata"]["name"] for _, doc in documents() if doc["kind"] == "ConfigMap"}
    for _, doc in documents():
        for auth in doc.get("spec", {}).get("secretTargetRef", []):
            assert auth["key"] in secrets[auth["name"]], auth
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            assert "configMap" not in volume or volume["configMap"]["name"] in maps, volume
        for entry in (entry for box in pod["containers"] for entry in box.get("env", [])):
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            assert reference is None or reference["key"] in secrets[reference["name"]], entry


def test_services_budgets_and_scalers_select_what_exists() -> None:
    def labels(kind: str, name: str) -> dict[str, str]:
        return resource(kind, name)["spec"]["template"]["metadata"]["labels"]

    server = labels("Deployment", "sharq-server")
    assert resource("Service", "sharq-server")["spec"]["selector"].items() <= server.items()
    assert resource("PodDisruptionBudget", "sharq-server")["spec"]["selector"]["matchLabels"].items() <= server.items()
    assert (
        resource("Service", "sharq-redis")["spec"]["selector"].items() <= labels("StatefulSet", "sharq-redis").items()
    )
    for _, doc in documents():
        if doc["kind"] in ("ScaledObject", "HorizontalPodAutoscaler"):
            target = doc["spec"]["scaleTargetRef"]
            assert target.get("kind", "Deployment") == "Deployment"
            resource("Deployment", target["name"])
    for _, doc in documents():
        for trigger in doc.get("spec", {}).get("triggers", []):
            if "authenticationRef" in trigger:
                resource("TriggerAuthentication", trigger["authenticationRef"]["name"])


def test_the_server_probes_are_the_token_free_routes_and_outlast_socket_timeout() -> None:
    server = container("sharq-server")
    paths = {ROUTES[name].path: ROUTES[name] for name in ("livez", "readyz")}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = server[probe]["httpGet"]["path"]
        assert path in paths and paths[path].action == OPEN, probe
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/livez"  # a Redis outage restarts nothing
    socket_timeout = float(sharq_conf()["redis"]["socket_timeout"])
    assert server["readinessProbe"]["timeoutSeconds"] > socket_timeout  # a 503 arrives before the probe gives up


def test_the_drains_fit_their_grace_periods() -> None:
    """Server: the preStop pause, then graceful_timeout, within the pod's grace.
    Worker: its --grace within the pod's grace, so it sends its acks before SIGKILL."""
    pod = resource("Deployment", "sharq-server")["spec"]["template"]["spec"]
    pause = int(container("sharq-server")["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(sharq_conf()["sharq-server"]["graceful_timeout"])
    assert pause >= 2 and pause + graceful + 5 <= pod["terminationGracePeriodSeconds"]
    worker = resource("Deployment", "sharq-worker-sms")["spec"]["template"]["spec"]
    command = container("sharq-worker-sms")["command"]
    assert command[0] == "sharq-worker"
    grace = float(command[command.index("--grace") + 1])
    assert grace + 5 <= worker["terminationGracePeriodSeconds"]


def test_every_container_runs_as_non_root_on_a_read_only_root() -> None:
    for _, doc in documents():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        for box in pod["containers"]:
            context = box["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "memory" in box["resources"]["limits"] and box["resources"]["requests"]
            mounts = {mount["mountPath"] for mount in box.get("volumeMounts", [])}
            assert "/tmp" in mounts or "/data" in mounts, f"{box['name']}: no writable path"


def test_the_redis_keeps_every_job() -> None:
    """noeviction (an evicted key is a lost job), append-only persistence on a volume."""
    conf = resource("ConfigMap", "sharq-redis")["data"]["redis.conf"].splitlines()
    assert {"appendonly yes", "maxmemory-policy noeviction", "dir /data"} <= set(conf)
    claim = resource("StatefulSet", "sharq-redis")["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"


def worker_concurrency() -> int:
    command = container("sharq-worker-sms")["command"]
    return int(command[command.index("--concurrency") + 1])


def test_every_scaler_targets_one_worker_pods_concurrency() -> None:
    """replicas = ceil(wanted_concurrency / target): the target is what one pod runs."""
    concurrency = str(worker_concurrency())
    prometheus = resource("ScaledObject", "sharq-worker-sms", "keda-prometheus.yaml")["spec"]["triggers"][0]
    api = resource("ScaledObject", "sharq-worker-sms", "keda-metrics-api.yaml")["spec"]["triggers"][0]
    hpa = resource("HorizontalPodAutoscaler", "sharq-worker-sms")["spec"]["metrics"][0]["external"]
    assert prometheus["metadata"]["threshold"] == api["metadata"]["targetValue"] == concurrency
    assert hpa["target"]["averageValue"] == concurrency
    assert hpa["metric"]["name"] == "sharq_type_wanted_concurrency"
    assert "sharq_type_wanted_concurrency" in prometheus["metadata"]["query"]


def test_the_metrics_api_trigger_reads_the_autoscale_route() -> None:
    """The URL is SharQ's /autoscale/<type>/ (viewer role) on the Service, by its
    namespaced name (KEDA runs in its own namespace); the token is the viewer's."""
    trigger = resource("ScaledObject", "sharq-worker-sms", "keda-metrics-api.yaml")["spec"]["triggers"][0]
    metadata = trigger["metadata"]
    match = re.fullmatch(r"http://sharq-server\.[a-z0-9-]+\.svc:8080(/autoscale/sms/)", metadata["url"])
    assert match, metadata["url"]
    assert (metadata["valueLocation"], metadata["authMode"]) == ("wanted_concurrency", "bearer")
    auth = resource("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]["secretTargetRef"]
    assert [(ref["parameter"], ref["key"]) for ref in auth] == [("token", "viewer-token")]
    autoscale = [route for route in ROUTES.values() if route.path == "/autoscale/{queue_type}/"]
    assert autoscale, "GET /autoscale/<type>/ is a route"
    assert autoscale[0].action == "read"
