"""Deployment files: manifests say what the specification asks, and the linters agree."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from django.db import connection

from bench.harness import drop_database

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "kubernetes" / "services" / "04-analytics-service"
VENV_BIN = Path(sys.executable).parent


def manifests() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_api_deployment_matches_the_specification():
    api = manifests()[("Deployment", "analytics-api-deployment")]
    assert api["metadata"]["namespace"] == "helios"
    assert api["spec"]["replicas"] == 2
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert labels["component"] == "analytics-service" and labels["role"] == "api"
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["ports"][0]["containerPort"] == 8000
    assert container["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "200m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_consumer_deployment_matches_the_specification():
    consumer = manifests()[("Deployment", "analytics-consumer-deployment")]
    assert consumer["spec"]["replicas"] == 1
    pod = consumer["spec"]["template"]
    assert pod["metadata"]["labels"]["role"] == "consumer"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["consumer"]
    assert container["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "100m"},
        "limits": {"memory": "512Mi", "cpu": "300m"},
    }
    assert "CONSUMER_HEALTH_FILE" in " ".join(container["livenessProbe"]["exec"]["command"])
    config = manifests()[("ConfigMap", "analytics-service-config")]["data"]
    batch_seconds = int(config["CONSUMER_BATCH_TIME_MS"]) / 1000
    assert pod["spec"]["terminationGracePeriodSeconds"] > 10 * batch_seconds


def test_configmap_and_secret_carry_the_specified_variables():
    found = manifests()
    config = found[("ConfigMap", "analytics-service-config")]["data"]
    for name in (
        "DEBUG",
        "ALLOWED_HOSTS",
        "LOG_LEVEL",
        "DB_NAME",
        "DB_USER",
        "DB_HOST",
        "DB_PORT",
        "KAFKA_BROKERS",
        "KAFKA_TOPIC_AUCTION_OUTCOMES",
        "KAFKA_CONSUMER_GROUP",
    ):
        assert name in config
    secret = found[("Secret", "analytics-service-secrets")]
    assert set(secret["stringData"]) == {
        "django-secret-key",
        "db-password",
        "api-metrics-token",
        "privacy-hash-key",
        "email-host-password",
    }
    service = found[("Service", "analytics-service")]
    assert service["spec"]["selector"] == {"component": "analytics-service", "role": "api"}
    assert service["spec"]["ports"][0]["port"] == 8000


def test_every_configmap_variable_is_one_the_service_reads():
    config = manifests()[("ConfigMap", "analytics-service-config")]["data"]
    sources = "".join(p.read_text() for p in [*ROOT.glob("analytics/*.py"), ROOT / "gunicorn.conf.py"])
    for name in config:
        assert f'"{name}"' in sources, f"{name} is set in the ConfigMap but read nowhere"


def test_manifests_validate_against_the_kubernetes_schemas():
    result = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, K8S.glob("*.yaml"))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN))
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    text = (ROOT / "Dockerfile").read_text()
    # Three stages: the dashboard's npm packages, the Python build, the slim runtime.
    assert text.count("FROM ") == 3 and "slim" in text
    assert "npm ci" in text and "COPY --from=assets" in text
    assert "USER 10001:10001" in text and "PYTHONUNBUFFERED=1" in text and "collectstatic" in text


def test_entrypoint_rejects_an_unknown_role():
    result = subprocess.run([str(ROOT / "entrypoint.sh"), "nonsense"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_migrations_are_complete():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DEBUG": "true"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_concurrent_migrations_on_a_fresh_database_both_succeed():
    name = f"migrate_race_{uuid.uuid4().hex[:8]}"
    params = connection.get_connection_params()
    admin = psycopg.connect(**{**params, "dbname": "postgres"})
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DEBUG": "true", "DB_NAME": name}
        procs = [
            subprocess.Popen(
                [str(ROOT / "entrypoint.sh"), "manage", "migrate_locked", "--noinput"],
                cwd=ROOT,
                env={**env, "PYTHON": sys.executable},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [proc.communicate(timeout=180)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
        # Not a terminal, as in an init container: one JSON line each, naming what it applied.
        reports = [[json.loads(line) for line in out.splitlines() if line.strip()] for out in outputs]
        finals = [lines[-1] for lines in reports]
        assert all(len(lines) == 1 for lines in reports), outputs
        applied = [final["applied"] for final in finals if final["message"] == "migrations applied"]
        assert len(applied) == 1 and "outcomes.0001_initial" in applied[0], outputs
        assert sorted(final["message"] for final in finals).count("no migrations to apply") == 2, outputs
    finally:
        drop_database(admin, name)  # retried while the migrating processes' sessions go away
        admin.close()


def test_every_pod_is_locked_down_and_reads_its_secrets_from_files():
    for (kind, name), doc in manifests().items():
        if kind not in ("Deployment", "CronJob"):
            continue
        template = doc["spec"]["template"] if kind == "Deployment" else doc["spec"]["jobTemplate"]["spec"]["template"]
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            env = {item["name"]: item for item in container.get("env", [])}
            assert not any("valueFrom" in item for item in env.values()), f"{name}: secrets as files, not env"
            assert env["DB_PASSWORD_FILE"]["value"].startswith("/run/secrets/analytics/")


def test_the_api_scales_and_the_network_is_closed_by_default():
    found = manifests()
    hpa = found[("HorizontalPodAutoscaler", "analytics-api-hpa")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "analytics-api-deployment"
    deny = found[("NetworkPolicy", "analytics-default-deny")]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]
    cron = found[("CronJob", "analytics-prune-outcomes")]
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["manage", "prune_outcomes"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    fit = found[("CronJob", "analytics-fit-bid-models")]
    (container,) = fit["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["manage", "fit_bid_models"] and fit["spec"]["concurrencyPolicy"] == "Forbid"


def test_checkov_passes_with_every_skip_named_and_justified():
    checkov = ROOT / ".venv-checkov" / "bin" / "checkov"
    assert checkov.exists(), "make lint installs checkov into .venv-checkov"
    result = subprocess.run(
        [
            str(checkov),
            "-d",
            str(ROOT / "kubernetes"),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads(result.stdout)
    skipped = report["results"]["skipped_checks"]
    assert {check["check_id"] for check in skipped} == {"CKV_K8S_43"}
    assert all(check["check_result"]["suppress_comment"] for check in skipped)


# ---------------------------------------------------------------- safe as shipped
ROLE_OF = {
    "api": "api",
    "consumer": "consumer",
    "worker": "worker",
    "live": "live",
    "migrate": "database",
    "prune": "database",
    "fit": "database",
}


def containers() -> list[tuple[dict, dict]]:
    """(container, its pod spec) for every container of every Deployment and CronJob."""
    found = []
    for (kind, _), doc in manifests().items():
        if kind in ("Deployment", "CronJob"):
            template = (
                doc["spec"]["template"] if kind == "Deployment" else doc["spec"]["jobTemplate"]["spec"]["template"]
            )
            pod = template["spec"]
            found += [(container, pod) for container in [*pod.get("initContainers", []), *pod["containers"]]]
    return found


def role_environment(container: dict, pod: dict, secrets_dir: Path, values: dict[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes would give it: the ConfigMap, its own
    variables, and the secret files its pod mounts (written under ``secrets_dir``)."""
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    items = volume["secret"].get("items")
    mounted = {item["key"] for item in items} if items else set(values)
    for key in mounted:
        (secrets_dir / key).write_text(values[key])
    env = dict(manifests()[("ConfigMap", "analytics-service-config")]["data"])
    for item in container.get("env", []):
        value = item["value"]
        if value.startswith("/run/secrets/analytics/"):
            value = str(secrets_dir / value.rsplit("/", 1)[1])
        env[item["name"]] = value
    return env


def check_role(role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "manage.py", "check_role", role], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_every_role_starts_from_the_manifests_once_the_secrets_are_real(tmp_path):
    """Each container gets what its role checks for, and only the secrets it reads."""
    real = {
        key: secrets.token_urlsafe(40) for key in manifests()[("Secret", "analytics-service-secrets")]["stringData"]
    }
    checked = set()
    for container, pod in containers():
        role = ROLE_OF[container["name"]]
        directory = tmp_path / container["name"]
        directory.mkdir(exist_ok=True)
        env = role_environment(container, pod, directory, real)
        result = check_role(role, env)
        assert result.returncode == 0, (container["name"], result.stderr)
        checked.add(role)
        if role != "api":
            assert "API_METRICS_TOKEN_FILE" not in env, container["name"]
        if role not in ("api", "worker", "live"):  # the worker signs unsubscribe links, live reads sessions
            assert "DJANGO_SECRET_KEY_FILE" not in env, container["name"]
    assert checked == {"api", "consumer", "database", "worker", "live"}


def test_the_secret_templates_placeholders_are_refused(tmp_path):
    placeholders = manifests()[("Secret", "analytics-service-secrets")]["stringData"]
    ((api, pod),) = [(c, p) for c, p in containers() if c["name"] == "api"]
    result = check_role("api", role_environment(api, pod, tmp_path, placeholders))
    assert result.returncode == 1
    for name in ("DJANGO_SECRET_KEY", "DB_PASSWORD", "API_METRICS_TOKEN", "PRIVACY_HASH_KEY"):
        assert f"- {name} is" in result.stderr, (name, result.stderr)


def test_the_api_answers_only_its_host_behind_tls_and_only_the_ingress_reaches_it():
    found = manifests()
    config = found[("ConfigMap", "analytics-service-config")]["data"]
    hosts = config["ALLOWED_HOSTS"].split(",")
    assert "*" not in hosts and all(host.strip() for host in hosts)
    ingress = found[("Ingress", "analytics-service")]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in hosts and ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert config["CSRF_TRUSTED_ORIGINS"] == f"https://{rule['host']}"
    assert config["DJANGO_SECURE_PROXY_SSL_HEADER"] == "true" and config["API_NUM_PROXIES"] == "1"
    assert config["DB_SSLMODE"] == "require"
    # The probes and /metrics are not routed from outside.
    routed = {path["path"] for path in rule["http"]["paths"]}
    assert not routed & {"/healthz", "/readyz", "/metrics"} and "/api" in routed
    policy = found[("NetworkPolicy", "analytics-api")]["spec"]
    (ingress_rule,) = policy["ingress"]
    namespaces = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in ingress_rule["from"]
    ]
    assert sorted(namespaces) == ["ingress-nginx", "monitoring"]
    assert all(set(peer) == {"namespaceSelector"} for peer in ingress_rule["from"])
