"""The sync and async clients against a live uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from service_support import AGENT, AUDITOR, OTHER
from thirdway.client import (
    AsyncClient,
    BadRequest,
    CapabilityRefused,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
)
from thirdway.errors import CapabilityError, GateError, InputError, ThirdwayError
from thirdway.gateway import Acted, Denied, Escalated, Executed, Granted, banking
from thirdway.service import ServiceConfig, create_app
from thirdway.service.state import Services


class Live:
    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url = url
        self.keys = keys


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("live")
    config = ServiceConfig(data_dir=folder, console=False)
    app = create_app(config)
    services: Services = app.state.services
    keys = {
        "agent": services.keys.create(AGENT, "agent"),
        "other": services.keys.create(OTHER, "agent"),
        "auditor": services.keys.create(AUDITOR, "auditor"),
        "admin": services.keys.create("root", "admin"),
    }
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield Live(f"http://127.0.0.1:{port}", keys)
    server.should_exit = True
    thread.join(10)
    assert services.closed  # the lifespan closed the log and keys on shutdown


def test_sync_client_runs_an_action_end_to_end(live: Live) -> None:
    with Client(live.url, live.keys["agent"]) as client:
        assert client.whoami().name == AGENT
        sid = client.open_session(banking.INSTRUCTION)
        outcome = client.propose(sid, banking.read_proposal(sid))
        assert isinstance(outcome, Granted)
        done = client.execute(sid, outcome.token, banking.read_proposal(sid)["action"])
        assert isinstance(done, Executed) and done.content == banking.bill_text()
        page = client.observations(sid, limit=2)
        assert [o.index for o in page.items] == [0, 1] and page.next_cursor == "2"
        with pytest.raises(CapabilityRefused) as refused:
            client.execute(sid, outcome.token, banking.read_proposal(sid)["action"])
        assert refused.value.reason == "spent" and refused.value.status == 409
        assert isinstance(refused.value, CapabilityError)
        escalated = client.propose(sid, banking.payment_proposal(sid, done.result_index))
        assert isinstance(escalated, Escalated)
        index = client.record_observation(sid, channel="principal", content="thanks")
        assert index == done.result_index + 1
        assert client.record_tool_result(sid, {"tool": "get_iban", "args": {}}, "DE89") == (
            index + 1,
            index + 2,
        )
        lying = banking.payment_proposal(sid, done.result_index)
        lying["steps"][1]["cites"][0]["quote"] = "Pay to IBAN " + banking.ATTACKER_IBAN
        assert isinstance(client.propose(sid, lying), Denied)

    with Client(live.url, live.keys["auditor"]) as auditor:
        handle = escalated.handle
        assert auditor.dialogue(handle).agent == AGENT
        assert handle in [d.id for d in auditor.dialogues(open_only=True).items]
        asked = auditor.challenge(handle, "restate_goal")
        assert asked.state == "challenged"
    with Client(live.url, live.keys["agent"]) as client:
        answer = {
            "text": "You asked me to pay the bill.",
            "goal": {"obs": 0, "quote": f"pay the bill '{banking.BILL_FILE}'"},
        }
        assert client.answer(handle, answer).state == "answered"
    with Client(live.url, live.keys["auditor"]) as auditor:
        assert auditor.approve(handle, "the bill is real").state == "approved"
        with pytest.raises(Conflict):
            auditor.deny(handle, "too late")
        assert auditor.trust(AGENT).state.agent == AGENT
        assert auditor.attestation().attested is False
    with Client(live.url, live.keys["agent"]) as client:
        got = client.resolution(handle)
        assert got.status == "granted" and got.token
        call = banking.payment_proposal(sid, done.result_index)["action"]
        assert client.execute(sid, got.token, call).ok
        client.close_session(sid)
        with pytest.raises(NotFound):
            client.observations(sid)


def test_sync_client_log_calls_verify(live: Live) -> None:
    from thirdway.ledger.merkle import verify_consistency, verify_inclusion

    with Client(live.url, live.keys["other"]) as client:
        client.open_session("hello")
        checkpoint = client.checkpoint()
        size = checkpoint.size
        proof = client.inclusion_proof(0, size)
        root = bytes.fromhex(checkpoint.root)
        verify_inclusion(
            bytes.fromhex(proof.leaf_hash), 0, size, [bytes.fromhex(p) for p in proof.proof], root
        )
        cons = client.consistency_proof(1, size)
        verify_consistency(
            1, size, [bytes.fromhex(p) for p in cons.proof], bytes.fromhex(cons.first_root), root
        )
        seen, cursor = [], None
        while True:
            page = client.entries(limit=3, cursor=cursor)
            seen += [e.index for e in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen[:size] == list(range(size))


def test_errors_carry_the_servers_message_and_library_types(live: Live) -> None:
    with Client(live.url, "tw_0_wrong") as stranger, pytest.raises(Unauthorized) as err:
        stranger.whoami()
    assert "not valid" in str(err.value) and isinstance(err.value, ThirdwayError)

    with Client(live.url, live.keys["agent"]) as client:
        sid = client.open_session("x")
    with Client(live.url, live.keys["other"]) as other:
        with pytest.raises(NotFound) as hidden:  # another agent's session: as if unknown
            other.propose(sid, banking.read_proposal(sid))
        assert f"no open session {sid!r}" in str(hidden.value)
        assert isinstance(hidden.value, GateError)
        with pytest.raises(NotFound):
            other.dialogue("esc-none")
    with Client(live.url, live.keys["auditor"]) as auditor, pytest.raises(Forbidden):
        auditor.propose(sid, banking.read_proposal(sid))
    with Client(live.url, live.keys["agent"]) as client:
        with pytest.raises(BadRequest) as bad:
            client.record_observation(sid, channel="data", content="x", produced_by=42)
        assert isinstance(bad.value, InputError) and bad.value.status == 400
    nowhere = Client("http://127.0.0.1:1", live.keys["agent"], timeout=2)
    with nowhere, pytest.raises(ThirdwayError, match="cannot reach"):
        nowhere.health()


def test_admin_creates_a_key_that_works(live: Live) -> None:
    with Client(live.url, live.keys["admin"]) as admin:
        made = admin.create_key("agent-client", "agent")
    with Client(live.url, made.key) as client:
        assert client.whoami().role == "agent"


def test_async_client_runs_concurrent_actions(live: Live) -> None:
    async def one(client: AsyncClient) -> bool:
        sid = await client.open_session(banking.INSTRUCTION)
        outcome = await client.propose(sid, banking.read_proposal(sid))
        assert isinstance(outcome, Granted)
        done = await client.execute(sid, outcome.token, banking.read_proposal(sid)["action"])
        return done.ok

    async def main() -> list[bool]:
        async with AsyncClient(live.url, live.keys["agent"]) as client:
            assert (await client.whoami()).name == AGENT
            results = await asyncio.gather(*(one(client) for _ in range(8)))
            with pytest.raises(Forbidden):
                await client.approve("esc-x", "no")
            return list(results)

    assert asyncio.run(main()) == [True] * 8


def test_sync_client_acts_in_one_request(live: Live) -> None:
    with Client(live.url, live.keys["agent"]) as client:
        sid = client.open_session(banking.INSTRUCTION)
        acted = client.act(sid, banking.read_proposal(sid))
        assert isinstance(acted, Acted) and isinstance(acted.outcome, Granted)
        assert isinstance(acted.executed, Executed) and acted.executed.ok
        assert acted.executed.content == banking.bill_text()
        with pytest.raises(CapabilityRefused) as refused:  # the grant's token is spent
            client.execute(sid, acted.outcome.token, banking.read_proposal(sid)["action"])
        assert refused.value.reason == "spent"
        bill = acted.executed.result_index
        escalated = client.act(sid, banking.payment_proposal(sid, bill))
        assert isinstance(escalated.outcome, Escalated) and escalated.executed is None
        lying = banking.payment_proposal(sid, bill)
        lying["steps"][1]["cites"][0]["quote"] = "Pay to IBAN " + banking.ATTACKER_IBAN
        denied = client.act(sid, lying)
        assert isinstance(denied.outcome, Denied) and denied.executed is None
        unhosted = banking.read_proposal(sid)
        unhosted["action"]["tool"] = "format_disk"
        with pytest.raises(BadRequest, match="not hosted here"):
            client.act(sid, unhosted)
    with Client(live.url, live.keys["auditor"]) as auditor, pytest.raises(Forbidden):
        auditor.act(sid, banking.read_proposal(sid))


def test_async_client_acts_concurrently(live: Live) -> None:
    async def one(client: AsyncClient) -> Acted:
        sid = await client.open_session(banking.INSTRUCTION)
        return await client.act(sid, banking.read_proposal(sid))

    async def main() -> list[Acted]:
        async with AsyncClient(live.url, live.keys["agent"]) as client:
            results = await asyncio.gather(*(one(client) for _ in range(6)))
        async with AsyncClient(live.url, live.keys["other"]) as other:
            with pytest.raises(NotFound):
                await other.act("s-nope", banking.read_proposal("s-nope"))
        return list(results)

    for acted in asyncio.run(main()):
        assert isinstance(acted.outcome, Granted)
        assert acted.executed is not None and acted.executed.ok
