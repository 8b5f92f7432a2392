"""The report's browser section: for each call placed by the real library in Chromium
(``engine: chromium``), what Chrome itself said about gathering and the transport: its
``icecandidateerror`` events, the TURN URLs its ``turn_port.cc`` log shows ending, the
Allocates it sent, and its last ``getStats`` snapshot (local and remote candidates, candidate
pairs, the transport's ICE and DTLS states), so that a failed call says why gathering failed
(issue 14 item 5). Rendered by templates/browser.*.j2."""

from __future__ import annotations

from .render import render


def _why(snap: dict | None, errors: list[dict], failures: list[dict], sent: int, answers: list[int]) -> str:
    """One sentence: what Chrome's own reports say about this call's gathering."""
    relays = [c for c in (snap or {}).get("local") or [] if c.get("candidateType") == "relay"]
    if relays:
        words = f"Chrome gathered {len(relays)} relay candidate{'s' if len(relays) > 1 else ''} (" + ", ".join(
            sorted({(c.get("relayProtocol") or "?").upper() for c in relays})) + " to TURN)"
    elif snap is not None:
        words = "Chrome gathered no relay candidate"
    else:
        words = "Chrome reported no getStats snapshot"
    reasons = [f"{e.get('url') or 'a TURN URL'} answered {e.get('code')} {e.get('text') or ''}".strip()
               for e in errors]
    reasons += [f"a TURN URL ended: {f.get('code') or ''} {f.get('reason') or ''}".strip() for f in failures]
    if reasons:
        words += ": " + "; ".join(reasons)
    elif not relays and sent:
        words += f": {sent} Allocate request{'s' if sent > 1 else ''} sent"
        words += (f", answered {', '.join(str(c) for c in answers)} (turn_port.cc), no candidate error"
                  if answers else ", no answer and no candidate error")
    pair = next((p for p in (snap or {}).get("pairs") or [] if p.get("nominated")), None)
    transport = ((snap or {}).get("transport") or [{}])[0]
    if transport.get("iceState") or transport.get("dtlsState"):
        words += f"; transport ICE {transport.get('iceState', '?')}, DTLS {transport.get('dtlsState', '?')}"
    if pair is not None:
        words += f"; nominated pair {pair.get('state')}"
    return words


def calls(observations: dict[str, dict]) -> list[dict]:
    """The section's data: one entry per Chromium call (none: no section)."""
    out = []
    for key, o in observations.items():
        if not key.startswith("call:") or o.get("engine") != "chromium":
            continue
        tl = o.get("timeline") or []
        snaps = [e for e in tl if e.get("kind") == "stats"]
        errors = [e for e in tl if e.get("kind") == "ice" and e.get("name") == "candidate-error"]
        failures = [e for e in tl if e.get("kind") == "ice" and e.get("name") == "url_failed"]
        sent = sum(1 for e in tl if e.get("kind") == "stun" and e.get("name") == "send ALLOCATE")
        answers = [e.get("code") for e in tl if e.get("kind") == "stun" and e.get("name") == "ALLOCATE error"]
        snap = snaps[-1] if snaps else None
        local = {c["id"]: c for c in (snap or {}).get("local") or []}
        remote = {c["id"]: c for c in (snap or {}).get("remote") or []}

        def cand(c: dict | None) -> str:
            if c is None:
                return "?"
            proto = c.get("protocol") or ""
            if c.get("relayProtocol"):
                proto += f" (relay over {c['relayProtocol']})"
            return f"{c.get('candidateType')} {c.get('address')}:{c.get('port')} {proto}".strip()

        why = _why(snap, errors, failures, sent, answers)
        q = o.get("quality") or {}
        if o.get("reached_talking") and q.get("rtt_ms") is None:
            # issue 14 item 7: say why the figure is missing rather than leave a blank
            why += ("; no round trip: no RTCP receiver report came back and no ICE check was answered "
                    "on the nominated pair before the hangup (a short call, or a saturated link)")
        elif q.get("rtt_source") == "ice":
            why += "; round trip from the ICE checks (no RTCP receiver report yet)"
        out.append({"key": key, "why": why, "when": (snap or {}).get("when"),
                    "t": (snap or {}).get("t"),
                    "errors": [{"t": e["t"], "url": e.get("url"), "code": e.get("code"), "text": e.get("text")}
                               for e in errors],
                    "local": [cand(c) for c in local.values()], "remote": [cand(c) for c in remote.values()],
                    "pairs": [{"local": cand(local.get(p.get("localCandidateId"))),
                               "remote": cand(remote.get(p.get("remoteCandidateId"))),
                               "state": p.get("state"), "nominated": bool(p.get("nominated")),
                               "checks": f"{p.get('requestsSent', 0)} / {p.get('responsesReceived', 0)}",
                               "rtt": "" if p.get("currentRoundTripTime") is None
                               else f"{p['currentRoundTripTime'] * 1000:.0f} ms"}
                              for p in (snap or {}).get("pairs") or []],
                    "transport": ((snap or {}).get("transport") or [None])[0]})
    return out


def section(observations: dict[str, dict], fmt: str = "md") -> str:
    """The section alone, as Markdown (``fmt`` md) or HTML (html); empty without Chromium calls."""
    return render(f"browser.{fmt}.j2", browser=calls(observations))
