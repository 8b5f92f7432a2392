// The page a real browser loads to place one softphone call with the real connect-rtc-js.
//
// It does what amazon-connect-streams' softphone.js does with a contact's softphone media
// info: parse callConfigJson, build connect.RTCSession(signalingEndpoint, iceServers,
// callContextToken, logger, contactId), set the remote audio element, connect(). Everything
// the library and the browser report is written to the console as one line per event,
// "ICELAB {json}", which lab/agent/browser.py reads from Chromium's log and turns into the
// lab's timeline. The page adds nothing to the call: the library, the browser's ICE, DTLS and
// SRTP are the real ones.
"use strict";

const CFG = window.ICELAB_CONFIG;
const T0 = performance.now();

function emit(event) {
  event.t = (performance.now() - T0) / 1000;
  console.log("ICELAB " + JSON.stringify(event));
}

// Watch the peer connection the library creates: candidates and ICE states as the browser
// reports them (the library logs no candidate timing of its own).
const NativePC = window.RTCPeerConnection;
let thePC = null;
window.RTCPeerConnection = class extends NativePC {
  constructor(config, optional) {
    super(config, optional);
    thePC = this;
    emit({kind: "info", name: "peer-connection", iceTransportPolicy: config && config.iceTransportPolicy,
          urls: ((config && config.iceServers) || []).flatMap(s => [].concat(s.urls))});
    this.addEventListener("icecandidate", e => {
      const c = e.candidate;
      if (c && c.candidate) {
        emit({kind: "candidate", name: c.type || (c.candidate.match(/ typ (\w+)/) || [])[1],
              protocol: c.protocol, relay_protocol: c.relayProtocol || null, url: c.url || null});
      } else {
        emit({kind: "ice", name: "gathering-complete"});
      }
    });
    this.addEventListener("icecandidateerror", e => {
      emit({kind: "ice", name: "candidate-error", url: e.url, code: e.errorCode, text: e.errorText});
    });
    this.addEventListener("iceconnectionstatechange", () => emit({kind: "ice", name: this.iceConnectionState}));
  }
};

function text(arg) {
  if (typeof arg === "string") return arg;
  try { return JSON.stringify(arg); } catch (e) { return String(arg); }
}

// The library logs "OldState => NewState" on every transition of its two state machines,
// through a logger wrapped to pass (callId, category, ...message): category SESSION for the
// RTCSession (the softphone's states), SIGNALING for the LilyRTC channel.
// With a persistent peer connection the session's logger is wrapped twice (by the
// RtcPeerConnectionManager, then by the RTCSession): (pcmCallId, "RtcPeerConnectionManager",
// callId, category, ...message). The category is then the fourth argument, the message after it.
const CATEGORIES = ["SESSION", "SIGNALING"];
// Streams' logger returns an object for chaining (.sendInternalLogToServer(), .withException());
// the managers use it, the plain RTCSession does not
const chain = {sendInternalLogToServer() { return chain; }, withException() { return chain; },
               withObject() { return chain; }};
const logger = {};
for (const level of ["log", "info", "warn", "error", "debug"]) {
  logger[level] = (...args) => {
    let at = args.length > 2 ? 1 : -1;
    const inner = args.findIndex((a, i) => i > 1 && CATEGORIES.includes(a));
    if (inner > 0) at = inner;
    const category = at >= 0 ? args[at] : "";
    const msg = args.slice(at + 1).map(text).join(" ");
    const m = msg.match(/^(\w+|null) => (\w+State)$/);
    const sub = msg.match(/^Substate: (\w+|null) => (\w+)$/);
    if (m) emit({kind: category === "SIGNALING" ? "signalling" : "state", name: m[2], from: m[1]});
    else if (sub) substate(sub[2], sub[1]);
    else if (RESTART_LINES.test(msg) || /persistent peer connection|health check|Inactivity timer/.test(msg)) {
      if (RESTART_LINES.test(msg)) restartWhy = msg.slice(0, 120);
      emit({kind: "info", name: "library", category, message: msg.slice(0, 300), call: currentCall});
    }
    else if (level === "warn" || level === "error") emit({kind: "info", name: level, category, message: msg.slice(0, 300)});
    return chain;
  };
}

// The ICE restart (rtc_session_talking_substates.js), reported as the emulation reports it:
// each substate ("Substate: A => B" in the library's log), the library's own lines about it,
// then "ice-restart completed" (AcceptSubstate => ConnectedSubstate) or "ice-restart failed"
// (back to ConnectedSubstate from anywhere else, with the library's last line as the reason),
// and "media audio-back" when the inbound audio counter moves again after the restart began.
const RESTART_LINES = /ICE restart|IceRestart|restart ICE|Lost ICE connection|network recovered|Retrying invite|Max invite attempts|No ICE candidate|ICE collection timed out|handshaking with signaling|Stale Peer Connection/;
let currentCall = null;
let restartWhy = null;
let restartT0 = null;
function substate(name, from) {
  emit({kind: "substate", name: name, from: from === "null" ? null : from, call: currentCall});
  const now = (performance.now() - T0) / 1000;
  if (name === "IceRestartSubstate") {
    restartT0 = now;
    restartWhy = null;
    watchAudioBack(currentCall);
  } else if (name === "ConnectedSubstate" && from !== "null" && restartT0 !== null) {
    const after = Math.round((now - restartT0) * 1000) / 1000;
    if (from === "AcceptSubstate") emit({kind: "ice-restart", name: "completed", call: currentCall, after});
    else emit({kind: "ice-restart", name: "failed", call: currentCall, after, reason: restartWhy || from});
    restartT0 = null;
  }
}
async function watchAudioBack(call) {
  const t0 = performance.now();
  const base = (await counters()).packets_received;
  while (performance.now() - t0 < 60000) {
    await sleep(50);
    if (!thePC || thePC.signalingState === "closed") return;
    if ((await counters()).packets_received > base) {
      emit({kind: "media", name: "audio-back", call, after: Math.round(performance.now() - t0) / 1000});
      return;
    }
  }
}

// The CCP's shared WebSocket (Streams' WebSocketManager, used through the library's
// VirtualWssConnectionManager) is open for the whole session, so the library may send on a
// signalling channel the moment it makes one: InviteAnswerSubstate.attemptInvite() does, on a
// channel it has just created. The page has no shared WebSocket (docs/persistent.md), and a
// plain WebSocket throws on a send while still CONNECTING; so a send before open waits for the
// open here, which is what the shared one gives the library. Nothing else changes: sends on an
// open socket go out at once, and no other path of the library sends before onopen.
const NativeWS = window.WebSocket;
window.WebSocket = class extends NativeWS {
  constructor(url, protocols) {
    super(url, protocols);
    this._early = [];
    this.addEventListener("open", () => { for (const m of this._early.splice(0)) super.send(m); });
  }
  send(data) {
    if (this.readyState === NativeWS.CONNECTING) {
      emit({kind: "signalling", name: "send-before-open", queued: true});
      this._early.push(data);
    } else super.send(data);
  }
};

function errorName(reason) {
  const names = Object.keys(connect.RTCErrors).filter(k => connect.RTCErrors[k] === reason);
  return names.length ? names[0] : String(reason);
}

async function quality() {
  const q = {packets_sent: 0, packets_received: 0, packets_lost: 0, jitter_ms: null, rtt_ms: null,
             remote_packets_lost: null};
  if (!thePC) return q;
  const report = await thePC.getStats();
  report.forEach(s => {
    if (s.kind !== "audio") return;
    if (s.type === "outbound-rtp") q.packets_sent = s.packetsSent;
    if (s.type === "inbound-rtp") {
      q.packets_received = s.packetsReceived;
      q.packets_lost = s.packetsLost;
      q.jitter_ms = s.jitter != null ? Math.round(s.jitter * 100000) / 100 : null;
    }
    if (s.type === "remote-inbound-rtp") {
      q.rtt_ms = s.roundTripTime != null ? Math.round(s.roundTripTime * 100000) / 100 : null;
      q.remote_packets_lost = s.packetsLost;
    }
  });
  // the nominated pair, succeeded or not: on a saturated link Chrome keeps it "in-progress"
  // while its checks are answered late, and their round trip is the only one the call has
  // the transport's selected pair first (what carries the media); a snapshot taken before
  // Chrome reports a selection falls back on the nominated pair
  let pair = null;
  report.forEach(s => {
    if (s.type === "transport" && s.selectedCandidatePairId && report.get(s.selectedCandidatePairId)) {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) {
    report.forEach(s => {
      if (s.type === "candidate-pair" && s.nominated && (!pair || s.state === "succeeded")) pair = s;
    });
  }
  if (pair) {
    const local = report.get(pair.localCandidateId);
    if (local) { q.relay_protocol = local.relayProtocol || null; q.local_type = local.candidateType; }
    // the ICE checks' round trip over the same relays: there from the first check, where
    // the RTCP one needs a receiver report that a call of a few seconds may not get yet
    if (pair.currentRoundTripTime != null) q.ice_rtt_ms = Math.round(pair.currentRoundTripTime * 100000) / 100;
  }
  q.rtt_source = q.rtt_ms != null ? "rtcp" : null;
  if (q.rtt_ms == null && q.ice_rtt_ms != null) { q.rtt_ms = q.ice_rtt_ms; q.rtt_source = "ice"; }
  q.silent_audio = q.packets_received === 0;
  return q;
}

// Audio levels both ways while talking, for a watcher (icelab serve's meters), when the lab
// asks for them (CFG.levels, seconds): getStats' audioLevel of the microphone's media-source
// and of the inbound-rtp, as Chrome computes them (0..1 of full scale).
function dbfs(level) { return level > 0 ? Math.round(200 * Math.log10(level)) / 10 : null; }

async function level() {
  if (!thePC) return;
  let out = 0, inn = 0;
  (await thePC.getStats()).forEach(s => {
    if (s.kind !== "audio" || s.audioLevel == null) return;
    if (s.type === "media-source") out = s.audioLevel;
    if (s.type === "inbound-rtp") inn = s.audioLevel;
  });
  emit({kind: "level", name: "level", out: out, in: inn, out_dbfs: dbfs(out), in_dbfs: dbfs(inn)});
}

// What Chrome's getStats says about gathering and the transport (issue 14 item 5): the page
// sees no candidate error for a TURN URL that never answers, so a failed call's report shows
// these instead: the local candidates found, the pairs tried and the transport's states.
const STAT_KEYS = {
  "transport": ["iceState", "dtlsState", "iceRole", "selectedCandidatePairId", "bytesSent", "bytesReceived",
                "packetsSent", "packetsReceived", "selectedCandidatePairChanges"],
  "candidate-pair": ["state", "nominated", "localCandidateId", "remoteCandidateId", "requestsSent",
                     "responsesReceived", "requestsReceived", "responsesSent", "consentRequestsSent",
                     "currentRoundTripTime", "bytesSent", "bytesReceived"],
  "local-candidate": ["candidateType", "protocol", "relayProtocol", "address", "port", "url"],
  "remote-candidate": ["candidateType", "protocol", "address", "port"],
};
async function iceStats(when) {
  const out = {transport: [], "candidate-pair": [], "local-candidate": [], "remote-candidate": []};
  if (thePC) {
    try {
      (await thePC.getStats()).forEach(s => {
        if (!(s.type in STAT_KEYS)) return;
        const row = {id: s.id};
        for (const k of STAT_KEYS[s.type]) if (s[k] !== undefined) row[k] = s[k];
        out[s.type].push(row);
      });
    } catch (e) { out.error = String(e); }
  }
  emit({kind: "stats", name: "getStats", when: when, transport: out.transport, pairs: out["candidate-pair"],
        local: out["local-candidate"], remote: out["remote-candidate"], error: out.error || null});
}

let ended = false;
function end(outcome) {
  if (ended) return;
  ended = true;
  emit({kind: "done", name: "done", outcome: outcome});
}

window.addEventListener("error", e => emit({kind: "info", name: "page-error", message: String(e.message)}));

function start() {
  const info = CFG.mediaInfo;
  const callConfig = JSON.parse(info.callConfigJson);
  const session = new connect.RTCSession(callConfig.signalingEndpoint, callConfig.iceServers,
                                         info.callContextToken, logger, CFG.callId);
  session.remoteAudioElement = document.getElementById("remote-audio");
  let failed = null;
  session.onSignalingConnected = () => emit({kind: "signalling", name: "connected"});
  session.onIceCollectionComplete = (s, timedOut, candidates) => {
    emit({kind: "ice", name: "collection-complete", timed_out: !!timedOut, candidates: candidates});
    iceStats("ice collection complete");
  };
  session.onSessionFailed = (s, reason) => {
    failed = errorName(reason);
    emit({kind: "error", name: failed, message: String(reason)});
    iceStats("session failed");
  };
  session.onSessionConnected = () => {
    emit({kind: "info", name: "session-connected"});
    const meters = CFG.levels > 0 ? setInterval(level, CFG.levels * 1000) : null;
    setTimeout(async () => {
      if (meters !== null) clearInterval(meters);
      // both getStats calls start now, on the open connection; the hangup does not wait for
      // them (a loaded machine took 0.3 s to answer, which delayed DisconnectedState)
      const pending = quality();
      iceStats("hangup");
      session.hangup();
      const q = await pending;
      emit({kind: "quality", name: "talking", ...q});
      setTimeout(() => end({rtc_error: failed, quality: q}), 500);
    }, CFG.talkTime * 1000);
  };
  session.onSessionCompleted = () => emit({kind: "info", name: "session-completed"});
  session.onSessionDestroyed = () => {
    emit({kind: "info", name: "session-destroyed"});
    // after the failure's getStats snapshot has been written
    if (failed) setTimeout(() => end({rtc_error: failed, quality: null}), 200);
  };
  emit({kind: "info", name: "connect", user_agent: navigator.userAgent});
  session.connect();
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function counters() {
  const c = {packets_sent: 0, packets_received: 0};
  if (!thePC) return c;
  (await thePC.getStats()).forEach(s => {
    if (s.kind !== "audio") return;
    if (s.type === "outbound-rtp") c.packets_sent = s.packetsSent;
    if (s.type === "inbound-rtp") c.packets_received = s.packetsReceived;
  });
  return c;
}

// The CCP's persistent peer connection, as amazon-connect-streams sets it up with
// connect-rtc-js 1.3.2's RtcPeerConnectionManager (docs/persistent.md): the peer connection
// and its TURN allocation are made at page load with an invite that names no contact,
// kept between calls, and each call is put on it with connectContact (taken off with
// disconnectContact). The CCP's shared WebSocket is not emulated: the manager is given a
// stub for its topic subscription and then none, so that the signalling channel opens its own
// LilyRTC WebSocket as the plain RTCSession does. The strategy turns off the early-media idle
// connection (a second, non-persistent peer connection the manager makes while it does not yet
// know that persistence is allowed), so that the persistent one is the only one.
async function startPersistent() {
  const info = CFG.mediaInfo;
  const callConfig = JSON.parse(info.callConfigJson);
  const P = CFG.persistent;
  class Strategy extends connect.StandardStrategy { _isEarlyMediaConnectionSupported() { return false; } }
  const wss = {subscribeTopics() {}, onMessage() { return () => {}; }};
  emit({kind: "info", name: "connect", user_agent: navigator.userAgent, persistent: true});
  const pcm = new connect.RtcPeerConnectionManager(
      callConfig.signalingEndpoint, null, () => Promise.resolve(callConfig.iceServers),
      (type, message) => emit({kind: "info", name: "publish-error", type, message: String(message)}),
      "icelab-client", null, logger, CFG.callId, null, wss, new Strategy(), true, "icelab-browser");
  pcm.isRTPSAllowlisted = true;   // what Streams sets from the agent's configuration
  pcm._wssManager = null;
  pcm.activatePersistentPeerConnectionMode();
  // set up: the page-load session ends in DisconnectedState once answered (AcceptState), the
  // manager keeping the peer connection, its token and the signalling channel
  const t0 = performance.now();
  while (!(pcm._peerConnectionToken && pcm._rtcSession === null)) {
    if (performance.now() - t0 > 30000) { emit({kind: "error", name: "PERSISTENT_SETUP_FAILED", message: "no set-up within 30 s"}); return end({rtc_error: "PERSISTENT_SETUP_FAILED", quality: null}); }
    await sleep(50);
  }
  emit({kind: "persistent", name: "ready", ice: thePC && thePC.iceConnectionState});
  const calls = [];
  let failed = null;
  for (let k = 1; k <= P.calls; k++) {
    if (k > 1) {
      const before = await counters();
      emit({kind: "persistent", name: "idle", seconds: P.idle, ice: thePC.iceConnectionState});
      await sleep(P.idle * 1000);
      const after = await counters();
      emit({kind: "persistent", name: "idle-end", ice: thePC.iceConnectionState,
            packets_sent: after.packets_sent - before.packets_sent,
            packets_received: after.packets_received - before.packets_received});
    } else if (P.settle) {
      await sleep(P.settle * 1000);
    }
    currentCall = k;
    const result = await new Promise(resolve => {
      const session = pcm.createSession(CFG.callId + "-" + k, callConfig.iceServers, info.callContextToken);
      emit({kind: "persistent", name: "call", call: k, reused: !!pcm._signalingChannel, ice: thePC.iceConnectionState});
      session.onSessionFailed = (s, reason) => {
        failed = errorName(reason);
        emit({kind: "error", name: failed, message: String(reason), call: k});
        resolve({call: k, rtc_error: failed});
      };
      session.onSessionConnected = async () => {
        emit({kind: "info", name: "session-connected", call: k});
        const start = await counters();
        await sleep(CFG.talkTime * 1000);
        const q = await quality();
        q.packets_sent -= start.packets_sent;
        q.packets_received -= start.packets_received;
        q.silent_audio = q.packets_received === 0;
        emit({kind: "quality", name: "talking", call: k, ...q});
        pcm.hangup();
        resolve({call: k, rtc_error: null, quality: q});
      };
      pcm.connect();
    });
    calls.push(result);
    if (result.rtc_error) break;
  }
  await sleep(500);
  const last = calls[calls.length - 1];
  end({rtc_error: failed, quality: last.quality || null, calls});
}

if (CFG.persistent) startPersistent(); else start();
