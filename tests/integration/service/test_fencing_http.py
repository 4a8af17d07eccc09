"""Monotonic fencing through the real service process: random action sequences over HTTP.

The fast, thorough version of this property runs at the gate
(tests/unit/service/test_fencing_property.py); this one checks that the
HTTP app keeps it too: registers (near, absurd, far-jumping), polls with stale
and current epochs, admin revocations, an admin action, service restarts.
"""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.launch.service import ServiceProcess
from chaos.service.rules import MAX_EPOCH
from tests.fixtures.service import next_epoch, unique

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 2), st.integers(-2, 4)),
        st.tuples(st.just("absurd"), st.integers(0, 2), st.sampled_from([MAX_EPOCH + 1, 2**62])),
        st.tuples(st.just("jump"), st.integers(0, 2), st.just(10**6)),
        st.tuples(st.just("poll"), st.integers(0, 2), st.integers(-2, 1)),
        st.tuples(st.just("revoke"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("admin"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=14,
)


def _highest(admin: httpx.Client) -> int:
    return next_epoch(admin) - 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, restart_at=st.integers(0, 20))
def test_fencing_holds_through_the_http_app(
    admin_service: ServiceProcess, actions: list[tuple[str, int, int]], restart_at: int
) -> None:
    names = [unique("c") for _ in range(3)]
    revoked: set[str] = set()
    connector = f"{admin_service.url}/api/v1/connector"
    with admin_service.admin_client() as admin, httpx.Client(timeout=10) as anon:
        last = _highest(admin)
        for step, (kind, who, value) in enumerate(actions):
            if step == restart_at:
                admin_service.restart()
                assert _highest(admin) == last  # nothing lost, nothing lowered
            name = names[who]
            highest = _highest(admin)
            if kind in ("register", "absurd", "jump"):
                epoch = {"register": max(1, highest + value), "absurd": value}.get(
                    kind, highest + value
                )
                answer = anon.post(f"{connector}/register", json={"name": name, "epoch": epoch})
                if name in revoked:
                    assert answer.status_code == 403
                elif kind == "absurd":
                    assert answer.status_code == 422
                    # The documented 422 shape (the OpenAPI validation error): a list.
                    assert [e["type"] for e in answer.json()["detail"]] == ["value_error"]
                    assert answer.json()["forgery_suspected"] is True
                elif kind == "jump":
                    assert answer.status_code == 403
                    assert answer.json()["forgery_suspected"] is True
                elif epoch < highest:
                    assert answer.status_code == 409
                if answer.status_code == 200:
                    assert _highest(admin) == epoch >= highest
                else:
                    assert _highest(admin) == highest
            elif kind == "poll":
                epoch = max(1, highest + value)
                answer = anon.post(
                    f"{connector}/requests/poll", json={"name": name, "epoch": epoch}
                )
                if name in revoked:
                    assert answer.status_code == 403
                elif epoch < highest:
                    assert answer.status_code == 409
                elif answer.status_code == 200:
                    assert epoch == highest
            elif kind == "revoke":
                answer = admin.post(f"/api/v1/admin/connectors/{name}/revoke", json={})
                assert answer.status_code in (200, 404)
                if answer.status_code == 200:
                    revoked.add(name)
            else:
                user = unique("u")
                answer = admin.post(
                    "/api/v1/admin/users",
                    json={"id": user, "name": user, "upn": user, "email": user},
                )
                assert answer.status_code == 201
            now = _highest(admin)
            assert now >= last, f"highest epoch went from {last} to {now} after {kind}"
            last = now
