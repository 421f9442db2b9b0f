"""Scoped bearer tokens (issue 18) over real HTTP: every role on every endpoint
family, per-type limits, sha256 tokens, the old bare form, 401 against 403, and
refused requests that leave no client-chosen label or log text behind."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import string
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from sharq_core import ConfigError, load_config
from sharq_server import create_app
from sharq_server.auth import ACTIONS
from tests.support import ServerProcess, wait_for

HASHED = "hashed-secret"
TOKENS = {
    "adm": "admin",  # the old bare form
    "prod": "producer",
    "work": "worker",
    "view": "viewer",
}
ENTRIES = [
    "adm",
    "prod=producer",
    "work=worker",
    "view = viewer",
    "prodsms=producer:sms",
    "worksms=worker:sms+email",
    "viewsms=viewer:sms",
    f"sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}=worker",
    f"sha256:{hashlib.sha256(b'hashed-admin').hexdigest().upper()}",
    "bGVnYWN5==",  # base64 padding: still one bare (admin) token
]
ALLOWED = {
    "enqueue": {"producer", "admin"},
    "work": {"worker", "admin"},
    "status": {"producer", "worker", "viewer", "admin"},
    "read": {"viewer", "admin"},
    "admin": {"admin"},
}
JOB = {"job_id": "j1", "payload": 1, "interval": 0}
FAMILIES = [  # (action, method, path, body)
    ("enqueue", "POST", "/enqueue/sms/q1/", JOB),
    ("enqueue", "POST", "/enqueue/sms/", {"jobs": [{**JOB, "queue_id": "q2"}]}),
    ("work", "GET", "/dequeue/sms/", None),
    ("work", "POST", "/finish/sms/q1/nojob/", None),
    ("work", "POST", "/finish/sms/", {"jobs": []}),
    ("work", "POST", "/fail/sms/q1/nojob/", None),
    ("work", "POST", "/touch/sms/q1/nojob/", None),
    ("status", "GET", "/job/sms/q1/j1/", None),
    ("read", "GET", "/metrics/", None),
    ("read", "GET", "/metrics/?format=prometheus", None),
    ("read", "GET", "/metrics/sms/", None),
    ("read", "GET", "/metrics/sms/q1/", None),
    ("read", "GET", "/stats/sms/", None),
    ("read", "GET", "/queue/sms/q1/", None),
    ("read", "GET", "/queues/sms/", None),
    ("read", "GET", "/deadletter/sms/", None),
    ("read", "GET", "/limits/sms/q1/", None),
    ("read", "GET", "/deepstatus/", None),
    ("read", "GET", "/openapi.json", None),
    ("admin", "POST", "/interval/sms/zz/", {"interval": 5}),
    ("admin", "PUT", "/limits/sms/zz/", {"burst": 2}),
    ("admin", "DELETE", "/limits/sms/zz/", None),
    ("admin", "POST", "/pause/sms/zz/", None),
    ("admin", "POST", "/resume/sms/zz/", None),
    ("admin", "DELETE", "/deletequeue/sms/zz/", None),
    ("admin", "POST", "/deadletter/sms/zz/nojob/retry/", None),
    ("admin", "DELETE", "/deadletter/sms/zz/nojob/", None),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SHARQ_AUTH_TOKENS": ", ".join(ENTRIES), "SHARQ_ACCESSLOG": "-"}  # refusals' access lines are checked
    server = ServerProcess(str(tmp_path_factory.mktemp("auth") / "data"), workers=1, env=env).start()
    yield server
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()


def call(server: ServerProcess, method: str, path: str, token: str | None = None, body: object = None):
    """One request; returns (status, JSON body or text, headers)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _parsed(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, _parsed(error.read()), error.headers


def _parsed(raw: bytes) -> object:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode()


@pytest.mark.parametrize(("action", "method", "path", "body"), FAMILIES, ids=[f"{m} {p}" for _, m, p, _ in FAMILIES])
def test_every_role_on_every_endpoint_family(server, action, method, path, body) -> None:
    for token, role in TOKENS.items():
        status, answer, _ = call(server, method, path, token, body)
        if role in ALLOWED[action]:
            assert status not in (401, 403), (role, answer)
        else:
            assert status == 403, (role, status, answer)
            assert f"role ({role}) may not" in answer["message"]


def test_every_route_has_a_declared_action(config, redis_client) -> None:
    """A route added without a line in auth.ACTIONS would need admin: list it."""
    app = create_app(config)
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints <= ACTIONS.keys(), endpoints - ACTIONS.keys()


def test_no_or_unknown_token_is_401_asking_for_a_bearer(server) -> None:
    for header in (None, "Bearer wrong", "Basic adm", "Bearer ", "adm", f"Bearer sha256:{HASHED}"):
        headers = {} if header is None else {"Authorization": header}
        request = urllib.request.Request(server.url + "/metrics/", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401, header
        assert refused.value.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(refused.value.read())["message"] == "missing or wrong bearer token"
    assert call(server, "GET", "/no/such/route/")[0] == 401
    assert call(server, "GET", "/no/such/route/", "view")[0] == 404  # a valid token: the usual 404


def test_health_check_and_dashboard_page_need_no_token(server) -> None:
    assert call(server, "GET", "/")[0] == 200
    status, page, _ = call(server, "GET", "/dashboard/")
    assert status == 200 and 'content="required"' in page
    assert call(server, "GET", "/dashboard/app.js")[0] == 200


def test_whoami_tells_role_and_types(server) -> None:
    assert call(server, "GET", "/whoami/", "worksms")[1] == {
        "status": "success",
        "auth": "required",
        "role": "worker",
        "types": ["email", "sms"],
    }
    assert call(server, "GET", "/whoami/", "view")[1]["types"] is None
    assert call(server, "GET", "/whoami/")[0] == 401


def test_type_limited_tokens_act_on_their_types_only(server) -> None:
    assert call(server, "POST", "/enqueue/sms/t1/", "prodsms", JOB)[0] in (201, 409)
    status, answer, _ = call(server, "POST", "/enqueue/push/t1/", "prodsms", JOB)
    assert status == 403
    assert answer["message"] == "this token (producer) is limited to queue types sms, not 'push'"
    assert call(server, "GET", "/dequeue/email/", "worksms")[0] == 404  # allowed; nothing queued
    assert call(server, "GET", "/dequeue/sms/", "worksms")[0] in (200, 404)
    for path in ("/dequeue/", "/dequeue/push/"):  # /dequeue/ is the type "default"
        assert call(server, "GET", path, "worksms")[0] == 403
    assert call(server, "GET", "/queues/sms/", "viewsms")[0] == 200
    assert call(server, "GET", "/queues/push/", "viewsms")[0] == 403
    assert call(server, "GET", "/queues/sms/", "prodsms")[1]["message"] == (
        "this token's role (producer) may not read queues and figures"
    )


def test_type_limited_viewer_reads_no_overall_figures(server) -> None:
    for path in ("/metrics/", "/metrics/?format=prometheus"):
        status, answer, _ = call(server, "GET", path, "viewsms")
        assert status == 403
        assert answer["message"] == (
            "this token (viewer) is limited to queue types sms; this view covers every type: use the per-type views"
        )
    for path in ("/metrics/sms/", "/stats/sms/", "/deepstatus/", "/openapi.json"):
        assert call(server, "GET", path, "viewsms")[0] == 200, path


def test_a_limited_token_sees_only_its_types_parked_polls(server) -> None:
    """Found by review: /deepstatus/ gave a token limited to some types the count
    of every long poll parked in the process, other tenants' types included."""
    assert call(server, "POST", "/pause/sms/", "adm", {"for_ms": 20_000})[0] == 200  # jobs left in sms wait
    try:
        with ThreadPoolExecutor(3) as pool:
            polls = [pool.submit(call, server, "GET", f"/dequeue/{kind}/?wait=3", "adm") for kind in ("push", "push")]
            polls.append(pool.submit(call, server, "GET", "/dequeue/sms/?wait=3", "worksms"))
            wait_for(lambda: call(server, "GET", "/deepstatus/", "view")[1]["parked"] == 3, what="3 parked polls")
            assert call(server, "GET", "/deepstatus/", "viewsms")[1]["parked"] == 1  # its sms poll, not push's two
            assert {poll.result()[0] for poll in polls} == {404}
    finally:
        assert call(server, "POST", "/resume/sms/", "adm")[0] == 200


def test_sha256_tokens(server) -> None:
    assert call(server, "GET", "/whoami/", HASHED)[1]["role"] == "worker"
    assert call(server, "GET", "/dequeue/push/", HASHED)[0] == 404  # a worker of every type
    assert call(server, "POST", "/pause/push/", "hashed-admin")[0] == 200  # upper-case hex, bare: admin
    assert call(server, "POST", "/resume/push/", "hashed-admin")[0] == 200


def test_old_bare_tokens_are_admins(server) -> None:
    for token in ("adm", "bGVnYWN5=="):
        assert call(server, "GET", "/whoami/", token)[1]["role"] == "admin"
        assert call(server, "PUT", "/limits/push/legacy/", token, {"burst": 3})[0] == 200
        assert call(server, "GET", "/metrics/", token)[0] == 200


def raw_request(server: ServerProcess, method: str, path: str) -> int:
    """A request with any method name (urllib would do, but http.client says what it sends)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    finally:
        connection.close()


def scrape(server: ServerProcess) -> str:
    status, body, _ = call(server, "GET", "/metrics/?format=prometheus", "view")
    assert status == 200
    return body


def http_series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("sharq_http")}


RANDOM = random.Random(18)


def _random_word(alphabet: str, size: int) -> str:
    return "".join(RANDOM.choices(alphabet, k=size))


def test_refused_requests_add_no_series(server) -> None:
    """Issue 14 item 7: 200 made-up methods once grew the scrape from 3 KB to 400 KB."""

    def junk(n: int) -> None:
        for _ in range(n):
            method = RANDOM.choice([_random_word(string.ascii_uppercase, 8), "GET", "POST"])
            assert raw_request(server, method, "/" + _random_word(string.ascii_lowercase, 12) + "/") == 401

    junk(20)
    scrape(server)  # the scrape's own series exist from here on
    before = scrape(server)
    junk(200)
    after = scrape(server)
    assert http_series(after) == http_series(before)
    assert len(after) < len(before) + 200  # only counts changed
    assert 'method="other",route="unmatched",status="401"' in after


def test_refused_requests_log_method_and_route_template_only(server) -> None:
    assert raw_request(server, "LEAKYMETHOD", "/secret-path-1/?q=leak-1") == 401
    assert call(server, "GET", "/queues/push/?limit=5&leak-2=1", "viewsms")[0] == 403
    wait_for(lambda: "GET /queues/<queue_type>/ HTTP/1.1" in server.log(), what="the 403's access line")
    wait_for(lambda: '"other unmatched HTTP/1.1" 401' in server.log(), what="the 401's access line")
    for chosen in ("LEAKYMETHOD", "secret-path-1", "leak-1", "leak-2"):
        assert chosen not in server.log()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("ok, s3cret=prodcer", "auth_tokens entry 2: the text after its last '=' is not a role"),
        ("s3cret=worker:", "auth_tokens entry 1: the queue type list after ':' has an empty name"),
        ("a, b, s3cret=worker:sms++email", "auth_tokens entry 3: the queue type list after ':' has an empty name"),
        ("s3cret=viewer:sms/x", "auth_tokens entry 1: queue types are 1-100 characters"),
        ("sha256:s3cret", "auth_tokens entry 1: sha256: must be followed by 64 hex digits"),
        ("x, sha256:" + "g" * 64 + "=admin", "auth_tokens entry 2: sha256: must be followed by 64 hex digits"),
        ("=admin", "auth_tokens entry 1: no token before its '='"),
        ("s3cret, s3cret=worker", "auth_tokens entry 2 repeats the token of an earlier entry"),
    ],
)
def test_bad_entries_stop_config_loading_naming_the_position(entries: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(None, environ={"SHARQ_AUTH_TOKENS": entries})
    assert str(refused.value).startswith(message)
    assert "s3cret" not in str(refused.value) and "prodcer" not in str(refused.value)


def test_entries_parse_into_roles_and_types() -> None:
    tokens = load_config(None, environ={"SHARQ_AUTH_TOKENS": ", ".join(ENTRIES)}).server.auth_tokens
    assert [(token.role, token.types) for token in tokens[:7]] == [
        ("admin", None),
        ("producer", None),
        ("worker", None),
        ("viewer", None),
        ("producer", frozenset({"sms"})),
        ("worker", frozenset({"sms", "email"})),
        ("viewer", frozenset({"sms"})),
    ]
    assert "digest" not in repr(tokens[0])  # kept out of reprs, and so of logs


def test_entries_read_from_the_ini_file(tmp_path) -> None:
    """The file's own delimiters (``:``, ``=``) leave the entries whole."""
    path = tmp_path / "sharq.conf"
    path.write_text("[sharq-server]\nauth_tokens : w=worker:sms+email, v=viewer ; a comment\n")
    tokens = load_config(str(path), environ={}).server.auth_tokens
    assert [token.describe() for token in tokens] == [
        {"role": "worker", "types": ["email", "sms"]},
        {"role": "viewer", "types": None},
    ]
