"""The asyncio twins: the same operations awaited on an event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import cpam
from harness import Deployment


def test_gatekeeper_twins(deployment: Deployment, tmp_path: Path) -> None:
    async def main() -> None:
        code = deployment.new_gatekeeper_code("gk-async")
        reg = await cpam.register_gatekeeper_async(deployment.address, code, str(tmp_path / "gk"))
        assert reg["name"] == "gk-async"
        async with cpam.Gatekeeper(str(tmp_path / "gk"), allow=deployment.allow) as gk:
            assert await gk.next_event_async(timeout=0.05) is None
            gk.start()
            event = await gk.next_event_async(timeout=30)
            assert event is not None and event["type"] == "gatekeeper_online", event
        # Leaving the block awaited stop_async().
        assert gk.status()["running"] is False
        types = [(await gk.next_event_async(timeout=5) or {}).get("type") for _ in range(2)]
        assert types == ["gatekeeper_offline", "gatekeeper_stopped"], types

    asyncio.run(main())


def test_connection_manager_twins(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    cm = cpam.ConnectionManager(str(deployment.profile))

    async def banner() -> bytes:
        async with await cm.open_session_async("ssh") as s:
            return await s.read_exactly_async(7)

    async def main() -> None:
        listing = await cm.services_async()
        assert [s["name"] for s in listing["services"]] == ["ssh"]
        # Several sessions at once on one loop.
        assert await asyncio.gather(*(banner() for _ in range(5))) == [b"SSH-2.0"] * 5

        s = await cm.open_session_async("ssh")
        assert (await s.read_async(256)).startswith(b"SSH-2.0-OpenSSH")
        await s.write_async(b"SSH-2.0-cpam-py-async\r\n")
        await s.write_async(b"\x00" * 64)
        while await s.read_async():
            pass
        await s.close_async()

        async with await cm.forward_async("ssh") as fwd:
            reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
            assert (await reader.readexactly(7)) == b"SSH-2.0"
            writer.close()
            await writer.wait_closed()

        with pytest.raises(cpam.PermissionDeniedError) as e:
            await cpam.ConnectionManager(str(deployment.profile_of("nogrant"))).open_session_async("ssh")
        assert e.value.kind == "permission_denied"

        v = await cpam.verify_audit_async(str(deployment.data_dir))
        assert v["intact"], v
        records = await cpam.read_audit_async(str(deployment.data_dir), category="user-activity")
        assert any(r["action"] == "session.refused" and r["actor"] == "nogrant" for r in records)

    asyncio.run(main())


def test_cancelling_an_awaited_call(deployment: Deployment, gatekeeper: cpam.Gatekeeper) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(gatekeeper.next_event_async(timeout=120))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The handle still works after a cancelled wait. Events queued by
        # earlier tests on this module's gatekeeper are drained first; a
        # link event in between (online/offline) is not what this checks.
        while await gatekeeper.next_event_async(timeout=0.2) is not None:
            pass

        async def next_switch() -> cpam.types.GatekeeperEvent | None:
            seen: list[cpam.types.GatekeeperEvent] = []
            for _ in range(5):
                event = await gatekeeper.next_event_async(timeout=10)
                if event is None or event["type"] == "gatekeeper_switch":
                    return event
                seen.append(event)
            raise AssertionError(f"no switch event among {seen}")

        gatekeeper.disable()
        try:
            event = await next_switch()
            assert event is not None and event["disabled"], event
        finally:
            gatekeeper.enable()
        event = await next_switch()
        assert event is not None and not event["disabled"], event

    asyncio.run(main())
