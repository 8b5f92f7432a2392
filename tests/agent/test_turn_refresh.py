"""The emulated TURN client refreshes on Chrome's schedule (libwebrtc turn_port.cc), not
aioice's: the allocation 60 s before its lifetime ends, each permission every 240 s, channels
at 540 s. On the fake clock, with the requests recorded instead of sent."""

import asyncio

from aioice import stun
from fakeclock import run

from lab.agent.turnclient import CHROME_TURN, ScheduledTurnUdp


class Closing:
    closing = False

    def is_closing(self):
        return self.closing


def client(sent):
    c = ScheduledTurnUdp(("192.0.2.1", 3478), username="u", password="p", lifetime=600,
                         channel_refresh_time=int(CHROME_TURN.channel))
    c.transport = Closing()

    async def request_with_retry(request):
        sent.append((asyncio.get_running_loop().time(), request.message_method))
        response = stun.Message(message_method=request.message_method, message_class=stun.Class.RESPONSE)
        response.attributes["LIFETIME"] = 600
        return response, ("192.0.2.1", 3478)
    c.request_with_retry = request_with_retry
    return c


def test_allocation_refreshed_60s_before_it_ends():
    sent = []

    async def main():
        task = asyncio.ensure_future(client(sent).refresh(600))
        await asyncio.sleep(1100)
        task.cancel()

    run(main())
    assert [(round(t), m) for t, m in sent] == [(540, stun.Method.REFRESH), (1080, stun.Method.REFRESH)]


def test_permissions_refreshed_every_240s_per_peer():
    sent = []

    async def main():
        c = client(sent)
        c.peer_to_channel = {("198.51.100.7", 50000): 0x4000}
        task = asyncio.ensure_future(c.refresh_permissions())
        await asyncio.sleep(500)
        c.transport.closing = True          # the allocation given up: the loop ends
        await asyncio.sleep(300)
        assert task.done()

    run(main())
    assert [(round(t), m) for t, m in sent] == [(240, stun.Method.CREATE_PERMISSION),
                                                (480, stun.Method.CREATE_PERMISSION)]
    assert CHROME_TURN.channel == 540 and CHROME_TURN.allocation(600) == 540
