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
const logger = {};
for (const level of ["log", "info", "warn", "error", "debug"]) {
  logger[level] = (...args) => {
    const category = args.length > 2 ? args[1] : "";
    const msg = args.slice(args.length > 2 ? 2 : 0).map(text).join(" ");
    const m = msg.match(/^(\w+|null) => (\w+State)$/);
    if (m) emit({kind: category === "SIGNALING" ? "signalling" : "state", name: m[2], from: m[1]});
    else if (level === "warn" || level === "error") emit({kind: "info", name: level, category, message: msg.slice(0, 300)});
  };
}

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
  let pair = null;
  report.forEach(s => {
    if (s.type === "candidate-pair" && s.nominated && (!pair || s.state === "succeeded")) pair = s;
  });
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

start();
