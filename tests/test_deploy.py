"""deploy/: the Prometheus rules and the Grafana board (issue 19.3), checked by
Debian's promtool and evaluated by a real Prometheus scraping a real SharQ.

The tests that run promtool or prometheus are skipped, saying why, where Debian's
`prometheus` package is not installed (`.ci/run` installs it when it runs as root).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from sharq_server.embedded import EmbeddedRedis
from tests.support import ServerProcess, free_port, http, wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "sharq-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "sharq-alerts.test.yml"
BOARD = DEPLOY / "grafana" / "sharq-dashboard.json"
KUBERNETES = DEPLOY / "kubernetes"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="Debian's prometheus package is not installed (apt-get install prometheus): no promtool"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="Debian's prometheus package is not installed (apt-get install prometheus): no prometheus/promtool",
)
# Grafana's variables as the test evaluates them: every queue type, and a window
# short enough for the few seconds of samples (two scrapes are enough for rate())
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$queue_type": ".+"}
# the alert's comparison with a number, made a `bool` one: 0 or 1 for every series
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s+(?=-?[0-9.])")
WAIT = 30.0


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules(kind: str) -> list[dict]:
    """The rules of one kind ("alert" or "record"), in file order."""
    return [rule for group in rule_groups() for rule in group["rules"] if kind in rule]


def board() -> dict:
    return json.loads(BOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every target."""
    found = []
    for panel in board()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable the test does not fill in: {expr}"
            found.append((panel["title"], expr))
    return found


def manifest_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every expression deploy/kubernetes/ hands a Prometheus:
    KEDA's prometheus triggers and prometheus-adapter's rules (its template filled
    in for the type the HPA selects)."""
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for trigger in (doc or {}).get("spec", {}).get("triggers", []):
                if trigger["type"] == "prometheus":
                    found.append((f"{path.name}: {trigger['name']}", trigger["metadata"]["query"]))
            for text in (doc or {}).get("data", {}).values() if doc and doc["kind"] == "ConfigMap" else ():
                for rule in (yaml.safe_load(text) or {}).get("externalRules", []) if "externalRules" in text else ():
                    series = rule["seriesQuery"].split("{")[0].strip("'\"")
                    expr = rule["metricsQuery"].replace("<<.Series>>", series)
                    found.append(
                        (f"{path.name}: {rule['name']['as']}", expr.replace("<<.LabelMatchers>>", 'queue_type="sms"'))
                    )
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules('alert')) + len(rules('record'))} rules found" in done.stdout


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    """promtool's unit tests: series in, the alerts expected out, each rule."""
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])
    ]
    alerts = {rule["alert"] for rule in rules("alert")}
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown not firing"
    assert {case["alertname"] for case in cases} <= alerts


def test_the_board_is_importable_with_a_datasource_variable() -> None:
    """What Grafana's import needs: no fixed id, a uid, and every panel and variable
    on the ${datasource} chosen at import (no datasource name baked in)."""
    dashboard = board()
    assert dashboard["id"] is None and dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["queue_type"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    panels = dashboard["panels"]
    assert len(panels) >= 6
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys() and panel["targets"], panel["title"]
        assert all(target["datasource"] == panel["datasource"] and target["refId"] for target in panel["targets"])
    everything = " ".join(expr for _, expr in panel_queries())
    for family in (
        "sharq_jobs{",
        "sharq_jobs_enqueued_total",
        "sharq_jobs_dequeued_total",
        "sharq_oldest_queued_job_age_seconds",
        'state="dead"',
        "sharq_http_requests_total",
        "sharq_http_request_duration_seconds_bucket",
        "sharq_queues",
        "sharq_queue_type_paused",
    ):
        assert family in everything, f"no panel shows {family}"


# --- a real SharQ, scraped by a real Prometheus ---------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A Redis of the test's own, so the test can make it refuse writes (503s)."""
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("deploy-redis")), port=free_port(), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sharq(store: EmbeddedRedis, tmp_path_factory):
    env = {"SHARQ_REDIS_URL": store.url, "SHARQ_JOB_EXPIRE_INTERVAL": "1000", "SHARQ_JOB_REQUEUE_INTERVAL": "100"}
    server = ServerProcess(str(tmp_path_factory.mktemp("deploy") / "data"), workers=1, env=env).start()
    yield server
    server.stop()


class Prometheus:
    """Debian's prometheus on a free port, scraping one target every second and
    evaluating SharQ's rules every second."""

    def __init__(self, folder: Path, target: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.folder = folder
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "sharq", "metrics_path": "/metrics/", "static_configs": [{"targets": [target]}]}
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = WAIT) -> Prometheus:
        """Start it and wait until it is ready; one that is not in time is stopped
        (no fixture holds it yet to stop it after the failed test)."""
        assert PROMETHEUS is not None
        command = [
            PROMETHEUS,
            f"--config.file={self.folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        with open(self.folder / "prometheus.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, timeout=timeout, what="prometheus to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict:
        """One call of the HTTP API; its JSON whatever the status (a bad query is 400)."""
        return http("GET", f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")[1]

    def query(self, expr: str) -> dict:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]

    def has_data(self, expr: str) -> list:
        return self.query(expr)["result"]

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")


@needs_prometheus
def test_a_prometheus_not_ready_in_time_is_stopped(tmp_path) -> None:
    """Found by review: a Prometheus slower to get ready than its start allows stayed
    running after the failed test."""
    server = Prometheus(tmp_path, "127.0.0.1:9")
    with pytest.raises(AssertionError, match="timed out"):
        server.start(timeout=0)
    assert server.process is not None and server.process.poll() is not None


@pytest.fixture(scope="module")
def prometheus(sharq: ServerProcess, tmp_path_factory):
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), sharq.url.removeprefix("http://")).start()
    wait_for(lambda: server.has_data('up{job="sharq"} == 1'), timeout=WAIT, what="the first scrape")
    yield server
    server.stop()


def enqueue(sharq: ServerProcess, queue: str, job_id: str, **extra: object) -> None:
    assert sharq.call("POST", f"/enqueue/{queue}/", {"job_id": job_id, "payload": 1, "interval": 0, **extra})[0] == 201


def dequeue(sharq: ServerProcess, queue_type: str) -> str:
    status, job = sharq.call("GET", f"/dequeue/{queue_type}/")
    assert status == 200, job
    return job["job_id"]


@pytest.fixture(scope="module")
def workload(sharq: ServerProcess, prometheus: Prometheus, store: EmbeddedRedis) -> Prometheus:
    """Jobs finished, requeued, dead-lettered and still queued, a paused type, and
    some 503s, all after Prometheus' first scrape of the type (so increase() sees
    them)."""
    enqueue(sharq, "push/u4", "done")
    enqueue(sharq, "sms/u1", "dies", requeue_limit=0)
    enqueue(sharq, "sms/u2", "comes-back", requeue_limit=1)
    enqueue(sharq, "email/u3", "held")
    assert sharq.call("POST", "/pause/email/")[0] == 200
    wait_for(
        lambda: prometheus.has_data('sharq_jobs_dead_total{queue_type="sms"} == 0'), timeout=WAIT, what="sms scraped"
    )
    assert dequeue(sharq, "push") == "done"
    assert sharq.call("POST", "/finish/push/u4/done/")[0] == 200
    # neither is finished: "dies" goes to the dead letters, "comes-back" back to its queue
    assert {dequeue(sharq, "sms"), dequeue(sharq, "sms")} == {"dies", "comes-back"}
    refusing = redis.Redis.from_url(store.url)
    refusing.config_set("min-replicas-to-write", 1)  # writes now answer NOREPLICAS: 503
    try:
        assert sharq.call("POST", "/enqueue/sms/u1/", {"job_id": "refused", "payload": 1, "interval": 0})[0] == 503
    finally:
        refusing.config_set("min-replicas-to-write", 0)
        refusing.close()
    for expr in (
        'sharq_jobs{queue_type="sms", state="dead"} == 1',
        'sharq_jobs_requeued_total{queue_type="sms"} == 1',
        'sharq_http_requests_total{status="503"}',
    ):
        wait_for(lambda expr=expr: prometheus.has_data(expr), timeout=WAIT, what=expr)
    return prometheus


@pytest.mark.e2e
@needs_prometheus
def test_exposition_passes_promtool_check_metrics(sharq: ServerProcess, workload: Prometheus) -> None:
    with urllib.request.urlopen(sharq.url + "/metrics/?format=prometheus", timeout=10) as response:
        text = response.read().decode()
    assert "sharq_http_request_duration_seconds_bucket" in text and 'state="dead"' in text
    done = promtool("check", "metrics", stdin=text)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.e2e
@needs_prometheus
@pytest.mark.parametrize("title, expr", panel_queries(), ids=[f"panel{n}" for n in range(len(panel_queries()))])
def test_every_panel_query_has_data(workload: Prometheus, title: str, expr: str) -> None:
    wait_for(lambda: workload.has_data(expr), timeout=WAIT, what=f"data for {title!r}: {expr}")


@pytest.mark.e2e
@needs_prometheus
def test_every_rule_loads_evaluates_and_has_data(workload: Prometheus) -> None:
    """Prometheus loads the rule file and evaluates each rule without error; each
    recording rule's expression and recorded series has data; each alert's
    expression runs, and with its comparisons made `bool` has data (so every series
    and label it names is real, and its `and on (...)` joins match)."""

    def all_healthy() -> list[dict]:
        loaded = [rule for group in workload.api("rules")["data"]["groups"] for rule in group["rules"]]
        return loaded if all(rule["health"] == "ok" for rule in loaded) else []

    loaded = wait_for(all_healthy, timeout=WAIT, what="every rule evaluated without error")
    assert len(loaded) == len(rules("alert")) + len(rules("record"))
    for rule in rules("record"):
        for expr in (rule["expr"], rule["record"]):
            wait_for(lambda expr=expr: workload.has_data(expr), timeout=WAIT, what=f"data for {expr}")
    for rule in rules("alert"):
        workload.query(rule["expr"])
        as_bool = COMPARISON.sub(r"\1 bool ", rule["expr"])
        assert "bool" in as_bool, rule["alert"]
        wait_for(lambda expr=as_bool: workload.has_data(expr), timeout=WAIT, what=f"{rule['alert']}: {as_bool}")


@pytest.mark.e2e
@needs_prometheus
def test_alerts_go_off_on_a_real_scrape(workload: Prometheus) -> None:
    """The dead letter fires its alert at once (no `for`); the paused type is
    pending (it fires after 30 minutes)."""

    def alerts() -> set[tuple[str, str, str]]:
        found = workload.api("alerts")["data"]["alerts"]
        return {
            (alert["labels"]["alertname"], alert["labels"].get("queue_type", ""), alert["state"]) for alert in found
        }

    expected = {("SharqDeadLettersGrowing", "sms", "firing"), ("SharqQueueTypePaused", "email", "pending")}
    wait_for(lambda: expected <= alerts(), timeout=WAIT, what=f"{expected} among the alerts")


def test_the_manifests_hand_prometheus_some_queries() -> None:
    where = {where.split(":")[0] for where, _ in manifest_queries()}
    assert where == {"keda-prometheus.yaml", "hpa.yaml"}


@pytest.mark.e2e
@needs_prometheus
@pytest.mark.parametrize("where, expr", manifest_queries(), ids=[where for where, _ in manifest_queries()])
def test_every_manifest_query_has_data(sharq: ServerProcess, workload: Prometheus, where: str, expr: str) -> None:
    """KEDA's and the adapter's queries return one series from a real scrape (KEDA
    needs a single element)."""
    result = wait_for(lambda: workload.has_data(expr), timeout=WAIT, what=f"data for {where}: {expr}")
    assert len(result) == 1, result
