"""The native topology (``python -m devstack topology``) and docker-compose.yaml are one definition.

No servers here: this checks that the native topology takes every setting from compose's
``x-airflow-common`` and changes only addresses (plus the declared one-machine settings), that it runs
every Airflow service compose runs, as many of each, with compose's commands — and that compose is
pinned and health-checked.
"""

from __future__ import annotations

import shlex
from collections import Counter
from typing import Any

import pytest

from devstack.topology import (
    ADDRESS_KEYS,
    LOCAL_SETTINGS,
    Ports,
    Topology,
    compose_environment,
    compose_services,
)

ONE_SHOT = {"airflow-init", "airflow-cli"}  # run to completion (or on demand): nothing to health-check


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return Topology(state_dir=tmp_path_factory.mktemp("topology"), ports=Ports(41000))


def test_every_compose_setting_is_used_and_only_addresses_differ(topology: Topology) -> None:
    compose = compose_environment()
    native = topology.environment(cube_url="http://127.0.0.1:4999", cube_secret="s")
    assert set(compose) <= set(native)
    changed = {k for k in compose if native[k] != compose[k]}
    assert changed <= ADDRESS_KEYS, changed - ADDRESS_KEYS
    added = set(native) - set(compose)
    assert added <= set(LOCAL_SETTINGS) | {"AIRFLOW_HOME", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"}
    assert not set(LOCAL_SETTINGS) & set(compose)  # a compose setting is never overridden silently
    assert native["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert native["AIRFLOW__METRICS__STATSD_ON"] == "true"
    assert native["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert native["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@127.0.0.1:41000/0"
    assert native["AIRFLOW_CONN_KPI_ALERTS_DB"].endswith(":41002/kpi_alerts")  # its own PostgreSQL


def test_the_native_topology_runs_every_airflow_service_as_compose_does(topology: Topology) -> None:
    services = compose_services()
    airflow = {
        name: s for name, s in services.items() if name.startswith("airflow-") and name not in ONE_SHOT
    }
    components = topology.components()
    assert Counter(c.service for c in components) == {
        name: s.get("deploy", {}).get("replicas", 1) for name, s in airflow.items()
    }
    assert Counter(c.service for c in components)["airflow-scheduler"] == 2
    assert Counter(c.service for c in components)["airflow-worker"] == 2
    for component in components:
        command = shlex.split(airflow[component.service]["command"])
        assert list(component.args[: len(command)]) == command, component
    ports = [
        topology.ports.redis,
        topology.ports.api,
        topology.ports.alerts_db,
        topology.ports.smtp,
        topology.ports.statsd,
        topology.ports.trigger_logs,
        *(topology.ports.worker_logs(n) for n in (1, 2)),
        *(topology.ports.scheduler_health(n) for n in (1, 2)),
    ]
    assert len(set(ports)) == len(ports)


def _images(services: dict[str, Any]) -> dict[str, str]:
    return {name: s["image"] for name, s in services.items() if "image" in s}


def test_compose_images_are_pinned_to_versions() -> None:
    import yaml

    from devstack.topology import COMPOSE_FILE

    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    images = {**_images(compose["services"]), "x-airflow-common": compose["x-airflow-common"]["image"]}
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
        assert any(ch.isdigit() for ch in tag), (name, image)
    assert images["cube"].startswith("cubejs/cube:v")


def test_every_long_running_service_has_a_healthcheck_and_there_is_a_triggerer() -> None:
    services = compose_services()
    assert "airflow-triggerer" in services
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        assert service.get("healthcheck", {}).get("test"), name
