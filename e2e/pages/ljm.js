// A lib-jitsi-meet participant: connects to Prosody, asks the focus for the conference, joins with fake
// camera and microphone, shows and measures every remote track. Used by the demo (scripts/run.sh) and by
// the browser tests (driven through e2e/ljm-peer.js).
'use strict';

(function () {
  const state = {
    conn: null, conf: null, remote: {}, removed: [], events: [],
    // What the page shows about media (see updateMediaStatus).
    media: { state: 'starting', message: '', since: null, failure: null, decoded: {} },
  };
  window.ljmState = state;

  function note(kind, detail) {
    state.events.push(Object.assign({ t: Date.now(), kind }, detail || {}));
  }

  function tile(id, label) {
    let el = document.getElementById('tile-' + id);
    if (!el) {
      el = document.createElement('div');
      el.className = 'tile';
      el.id = 'tile-' + id;
      const v = document.createElement('video');
      v.autoplay = true;
      v.playsInline = true;
      v.muted = true;
      v.id = 'video-' + id;
      const l = document.createElement('div');
      l.className = 'label';
      l.textContent = label;
      const st = document.createElement('div');
      st.className = 'status';
      st.id = 'status-' + id;
      el.appendChild(v);
      el.appendChild(l);
      el.appendChild(st);
      document.getElementById('videos').appendChild(el);
    }
    return el;
  }

  function attach(track) {
    const pid = track.isLocal() ? 'local' : track.getParticipantId();
    if (track.getType() === 'video') {
      const t = tile(pid, track.isLocal() ? 'me' : pid);
      track.attach(t.querySelector('video'));
    } else if (!track.isLocal()) {
      const a = document.createElement('audio');
      a.autoplay = true;
      a.id = 'audio-' + pid;
      document.body.appendChild(a);
      track.attach(a);
    }
  }

  // ---- media state, as the user sees it ---------------------------------------------------------
  // A black tile explains nothing: every remote tile says connecting / connected / failed (and why),
  // and the status line says what to do when the browser cannot reach the bridge's media port.

  /** Seconds without a media connection before the page says it is stuck. */
  const STALLED_AFTER_MS = 10000;

  /** The bridge's ICE candidates from the remote description: "udp 10.0.0.5:10000", … */
  function bridgeCandidates(pc) {
    const sdp = (pc && pc.remoteDescription && pc.remoteDescription.sdp) || '';
    const out = [];
    for (const line of sdp.split(/\r?\n/)) {
      const m = /^a=candidate:\S+ \d+ (\w+) \d+ (\S+) (\d+) typ (\w+)/.exec(line);
      if (m) {
        const c = `${m[1].toLowerCase()} ${m[2].includes(':') ? '[' + m[2] + ']' : m[2]}:${m[3]}`;
        if (!out.includes(c)) out.push(c);
      }
    }
    return out;
  }

  function jvbPeerConnection() {
    const session = state.conf && state.conf.jvbJingleSession;
    return session && session.peerconnection && session.peerconnection.peerconnection;
  }

  function unreachableAdvice(cands) {
    const where = cands.length ? cands.join(', ') : 'the addresses the bridge advertised';
    let advice = `This browser could not reach the bridge's media port (${where}). `;
    if (cands.length && cands.every((c) => / (127\.|\[::1\])/.test(c))) {
      advice += 'Browsers do not use 127.0.0.1 for WebRTC: start scripts/run.sh without RUN_MEDIA_IP, '
        + 'or set RUN_MEDIA_IP to an address of this machine that the browser can reach.';
    } else {
      advice += 'Check that a firewall lets that UDP port through, and that the address is one this '
        + 'browser can reach (scripts/run.sh: RUN_MEDIA_IP).';
    }
    return advice;
  }

  async function updateMediaStatus() {
    const m = state.media;
    const conf = state.conf;
    const pc = jvbPeerConnection();
    const others = conf ? conf.getParticipants().map((p) => p.getId()) : [];
    const ice = pc ? pc.iceConnectionState : null;
    if (pc && !m.since) m.since = Date.now();
    const cands = bridgeCandidates(pc);
    if (ice === 'failed') {
      m.failure = `ICE failed: ${unreachableAdvice(cands)}`;
    }
    if (!conf) {
      m.state = 'starting';
      m.message = '';
    } else if (ice === 'connected' || ice === 'completed') {
      m.state = 'connected';
      m.message = `media connected to the bridge (${cands.join(', ')})`;
      m.failure = null;
    } else if (m.failure) {
      m.state = 'failed';
      m.message = m.failure + (pc && ice !== 'failed' ? ' (retrying…)' : '');
    } else if (!pc) {
      m.state = others.length ? 'connecting' : 'waiting';
      m.message = others.length ? 'waiting for the media offer from the focus'
        : 'waiting for someone else — open this page in another tab';
    } else if (Date.now() - m.since > STALLED_AFTER_MS) {
      m.state = 'stalled';
      m.message = `no media connection after ${Math.round((Date.now() - m.since) / 1000)} s. `
        + unreachableAdvice(cands);
    } else {
      m.state = 'connecting';
      m.message = `connecting to the bridge (${cands.join(', ') || 'no candidates yet'})…`;
    }
    // Per remote participant: decoding frames, or why not.
    let inbound = [];
    if (pc && m.state === 'connected') {
      try {
        const report = await pc.getStats();
        report.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') inbound.push(r); });
      } catch (_) { inbound = []; }
    }
    for (const pid of others) {
      tile(pid, pid);
      const track = state.remote[pid] && state.remote[pid].video;
      const ssrc = track && track.getSSRC();
      const s = inbound.find((r) => r.ssrc === ssrc);
      const frames = (s && s.framesDecoded) || 0;
      const before = m.decoded[pid] || 0;
      m.decoded[pid] = frames;
      let text;
      if (m.state === 'failed' || m.state === 'stalled') text = 'no media: ' + m.state;
      else if (m.state !== 'connected') text = 'connecting…';
      else if (!track) text = 'connected, no video from this participant';
      else if (frames > before) text = 'connected';
      else text = 'connected, video paused';
      const el = document.getElementById('status-' + pid);
      if (el && el.textContent !== text) el.textContent = text;
    }
    const line = document.getElementById('media');
    if (line) {
      line.textContent = m.message;
      line.className = m.state;
    }
  }

  /** What the page shows about media: the status line and each remote tile's status. */
  window.ljmMediaStatus = function () {
    const tiles = {};
    document.querySelectorAll('.status').forEach((el) => {
      const id = el.id.slice('status-'.length);
      if (id !== 'local') tiles[id] = el.textContent;
    });
    const line = document.getElementById('media');
    return { state: state.media.state, text: line ? line.textContent : state.media.message, tiles };
  };

  function detach(track) {
    const pid = track.getParticipantId();
    if (track.getType() === 'video') {
      const t = document.getElementById('tile-' + pid);
      if (t) t.remove();
    } else {
      const a = document.getElementById('audio-' + pid);
      if (a) a.remove();
    }
  }

  window.ljmJoin = async function (cfg) {
    const JM = window.JitsiMeetJS;
    JM.init({ disableAudioLevels: true });
    JM.setLogLevel(JM.logLevels.WARN);
    const options = {
      hosts: { domain: cfg.domain, muc: cfg.muc, focus: cfg.focus },
      // The demo server gives Prosody's WebSocket port: same host as the page (loopback, or the
      // address scripts/run.sh was asked to listen on).
      serviceUrl: cfg.serviceUrl || `ws://${location.host.replace(/:\d+$/, '')}:${cfg.websocketPort}/xmpp-websocket`,
    };
    // A secure domain with guests: anonymous users log in to the guest domain.
    if (cfg.anonymousdomain) options.hosts.anonymousdomain = cfg.anonymousdomain;
    const conn = new JM.JitsiConnection(null, null, options);
    state.conn = conn;
    await new Promise((resolve, reject) => {
      conn.addEventListener(JM.events.connection.CONNECTION_ESTABLISHED, resolve);
      conn.addEventListener(JM.events.connection.CONNECTION_FAILED, (e) => reject(new Error('connection failed: ' + e)));
      // A host logs in with a user name and password (Prosody checks them); others anonymously.
      conn.connect(cfg.id ? { id: cfg.id, password: cfg.password } : {});
    });
    note('connected');
    const video = { height: { ideal: cfg.resolution || 240, max: cfg.resolution || 240 } };
    if (cfg.frameRate) video.frameRate = { ideal: cfg.frameRate, max: cfg.frameRate };
    const tracks = await JM.createLocalTracks({
      devices: ['audio', 'video'],
      resolution: cfg.resolution || 240,
      constraints: { video },
    });
    const conf = conn.initJitsiConference(cfg.room, Object.assign({ p2p: { enabled: false } }, cfg.conference || {}));
    state.conf = conf;
    const E = JM.events.conference;
    conf.on(E.TRACK_ADDED, (track) => {
      if (track.isLocal()) return;
      const pid = track.getParticipantId();
      state.remote[pid] = state.remote[pid] || {};
      state.remote[pid][track.getType()] = track;
      note('track-added', { participant: pid, type: track.getType() });
      attach(track);
    });
    conf.on(E.TRACK_REMOVED, (track) => {
      if (track.isLocal()) return;
      const pid = track.getParticipantId();
      const type = track.getType();
      if (state.remote[pid] && state.remote[pid][type] === track) delete state.remote[pid][type];
      if (state.remote[pid] && Object.keys(state.remote[pid]).length === 0) delete state.remote[pid];
      state.removed.push({ participant: pid, type });
      note('track-removed', { participant: pid, type });
      detach(track);
    });
    conf.on(E.USER_JOINED, (id) => { note('user-joined', { participant: id }); tile(id, id); });
    conf.on(E.USER_LEFT, (id) => {
      note('user-left', { participant: id });
      const t = document.getElementById('tile-' + id);
      if (t) t.remove();
    });
    conf.on(E.CONNECTION_INTERRUPTED, () => note('media-interrupted'));
    conf.on(E.CONNECTION_RESTORED, () => note('media-restored'));
    conf.on(E.CONNECTION_ESTABLISHED, () => note('media-established'));
    conf.on(E.STARTED_MUTED, () => note('started-muted'));
    // After the join: e.g. `conference.focusLeft` when the focus goes away (the app reloads then).
    conf.on(E.CONFERENCE_FAILED, (e) => note('conference-failed', { error: String(e) }));
    conn.addEventListener(JM.events.connection.CONNECTION_FAILED, (e) => note('connection-failed', { error: String(e) }));
    conf.on(E.RECORDER_STATE_CHANGED, (session) => note('recorder-state', {
      status: session && session.getStatus ? session.getStatus() : null,
      error: session && session.getError ? session.getError() : null,
    }));
    // What the Jitsi Meet app does when the focus says the room needs a host (not-authorized →
    // AUTHENTICATION_REQUIRED): show "waiting for the host" and ask again a few seconds later.
    let hostWait = null;
    const waitForHost = () => {
      if (!cfg.waitForHost || hostWait) return false;
      note('waiting-for-host');
      hostWait = setTimeout(() => { hostWait = null; conf.join(); }, 5000);
      return true;
    };
    spyOnFocusRequests(conf, (rec) => {
      // The CI's 2021 build (@lyno/lib-jitsi-meet) emits its moderator events under an undefined
      // name (its XMPPEvents import is a named export read as a default), so AUTHENTICATION_REQUIRED
      // never becomes CONFERENCE_FAILED there: react to the focus's answer itself.
      if (rec.child === 'conference' && rec.answer === 'not-authorized') waitForHost();
    });
    for (const t of tracks) {
      await conf.addTrack(t);
      if (t.getType() === 'video') attach(t);
    }
    await new Promise((resolve, reject) => {
      conf.on(E.CONFERENCE_JOINED, resolve);
      conf.on(E.CONFERENCE_FAILED, (e) => {
        if (e === JM.errors.conference.AUTHENTICATION_REQUIRED && (hostWait || waitForHost())) return;
        reject(new Error('conference failed: ' + e));
      });
      conf.join();
    });
    note('joined', { id: conf.myUserId() });
    setInterval(() => { updateMediaStatus().catch(() => {}); }, 1000);
    // Ask the bridge for video (its default receive constraint is 0 = none).
    conf.setReceiverVideoConstraint(720);
    return conf.myUserId();
  };

  /** Mean luminance (0–255) of what a video element shows now; 0 when it shows nothing. */
  function luma(video) {
    if (!video.videoWidth) return 0;
    const c = document.createElement('canvas');
    c.width = 32;
    c.height = 24;
    const g = c.getContext('2d');
    g.drawImage(video, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    return sum / (d.length / 4);
  }

  /** Per remote participant and media type: inbound RTP counters of its track. */
  window.ljmStats = async function () {
    const conf = state.conf;
    if (!conf) return { me: null, remote: {}, removed: [], events: state.events };
    const session = conf.jvbJingleSession;
    const pc = session && session.peerconnection && session.peerconnection.peerconnection;
    const inbound = [];
    const outbound = [];
    // Every video stream the browser receives, matched to a remote track or not (a stream that
    // matches none is media on an SSRC this page was never told about).
    const inboundVideo = [];
    if (pc) {
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp') inbound.push(r);
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          inboundVideo.push({
            ssrc: r.ssrc,
            mid: r.mid || null,
            framesDecoded: r.framesDecoded || 0,
            frameHeight: r.frameHeight || 0,
            bytesReceived: r.bytesReceived || 0,
            trackIdentifier: r.trackIdentifier || null,
          });
        }
        if (r.type === 'outbound-rtp' && r.kind === 'video') {
          outbound.push({
            ssrc: r.ssrc,
            rid: r.rid || null,
            active: r.active,
            frameHeight: r.frameHeight || 0,
            framesEncoded: r.framesEncoded || 0,
            framesPerSecond: r.framesPerSecond || 0,
            bytesSent: r.bytesSent || 0,
            qualityLimitationReason: r.qualityLimitationReason || null,
          });
        }
      });
    }
    const remote = {};
    for (const [pid, byType] of Object.entries(state.remote)) {
      remote[pid] = {};
      for (const [type, track] of Object.entries(byType)) {
        const ssrc = track.getSSRC();
        const mst = track.getTrack();
        const s = inbound.find((r) => r.ssrc === ssrc) || inbound.find((r) => mst && r.trackIdentifier === mst.id) || {};
        remote[pid][type] = {
          ssrc,
          ended: !mst || mst.readyState === 'ended',
          bytesReceived: s.bytesReceived || 0,
          framesDecoded: s.framesDecoded || 0,
          totalSamplesReceived: s.totalSamplesReceived || 0,
          frameHeight: s.frameHeight || 0,
          keyFramesDecoded: s.keyFramesDecoded || 0,
          freezeCount: s.freezeCount || 0,
          pliCount: s.pliCount || 0,
        };
      }
    }
    const videos = Array.from(document.querySelectorAll('video')).map((v) => ({
      id: v.id,
      playing: !v.paused && v.currentTime > 0 && v.videoWidth > 0,
      width: v.videoWidth,
      height: v.videoHeight,
      time: v.currentTime,
      luma: luma(v),
    }));
    return {
      me: conf.myUserId(),
      // The Jingle session with the focus (changes when the focus moves us to another bridge).
      sid: session ? session.sid : null,
      remote,
      removed: state.removed,
      participants: conf.getParticipants().map((p) => p.getId()),
      ice: pc ? pc.iceConnectionState : null,
      // This page's own video as sent (one entry per simulcast encoding).
      outbound,
      inboundVideo,
      mediaStatus: window.ljmMediaStatus(),
      videos,
      events: state.events,
    };
  };

  /**
   * Stage view as the Jitsi Meet app asks for it: `participant` on stage (selected), the others as
   * thumbnails, at most `maxHeight` for the stage (lib-jitsi-meet sends ReceiverVideoConstraints).
   */
  window.ljmReceive = function (participant, maxHeight) {
    const conf = state.conf;
    if (!conf) throw new Error('not joined');
    conf.selectParticipants([participant]);
    conf.setReceiverVideoConstraint(maxHeight);
    return true;
  };

  /**
   * What the focus asked of this participant at the start (Jingle `startmuted`, which
   * lib-jitsi-meet obeys by muting its local tracks), and the local tracks' mute state now.
   */
  window.ljmLocal = function () {
    const conf = state.conf;
    if (!conf) throw new Error('not joined');
    const local = {};
    for (const t of conf.getLocalTracks()) local[t.getType()] = { muted: t.isMuted() };
    return {
      moderator: conf.isModerator(),
      startAudioMuted: conf.isStartAudioMuted(),
      startVideoMuted: conf.isStartVideoMuted(),
      startedMuted: state.events.some((e) => e.kind === 'started-muted'),
      local,
    };
  };

  /**
   * Records the answers to the requests the client sends the focus (conference, mute, Jibri, dial),
   * without changing them: `state.iqs` gets {child, ns, text, answer} with answer 'result', the error
   * condition, or 'timeout'; `onAnswer(record)` is called with each.
   */
  function spyOnFocusRequests(conf, onAnswer) {
    state.iqs = [];
    const c = conf.room && conf.room.connection;
    if (!c || c.__spied) return;
    c.__spied = true;
    const send = c.sendIQ.bind(c);
    c.sendIQ = function (elem, ok, fail, timeout) {
      const tree = elem && elem.tree ? elem.tree() : elem;
      const child = tree && tree.firstElementChild;
      const name = child ? child.tagName : null;
      if (!['conference', 'mute', 'jibri', 'dial'].includes(name)) return send(elem, ok, fail, timeout);
      const rec = { child: name, ns: child.getAttribute('xmlns'), text: child.textContent, answer: null };
      state.iqs.push(rec);
      // The client's own callbacks may throw (see ljmJoin): ours run regardless.
      return send(elem, (res) => {
        rec.answer = 'result';
        try { if (ok) ok(res); } finally { onAnswer(rec); }
      }, (err) => {
        const e = err && err.getElementsByTagName ? err.getElementsByTagName('error')[0] : null;
        rec.answer = e && e.children.length ? e.children[0].tagName : 'timeout';
        try { if (fail) fail(err); } finally { onAnswer(rec); }
      }, timeout);
    };
  }

  /** The answers the focus gave to this page's conference / mute / Jibri / dial requests. */
  window.ljmFocusAnswers = function () {
    return state.iqs || [];
  };

  /** A moderator's "Mute" on one participant's tile (`conference.muteParticipant`). */
  window.ljmMuteParticipant = function (participant, mediaType) {
    state.conf.muteParticipant(participant, mediaType);
    return true;
  };

  /** "Mute everyone" as the Jitsi Meet app does it: one mute per remote participant. */
  window.ljmMuteEveryone = function (mediaType) {
    const ids = state.conf.getParticipants().map((p) => p.getId());
    for (const id of ids) state.conf.muteParticipant(id, mediaType);
    return ids;
  };

  /** The user's own mute button for `type` (audio|video). */
  window.ljmSetMuted = async function (type, muted) {
    const t = state.conf.getLocalTracks().find((x) => x.getType() === type);
    if (!t) throw new Error('no local ' + type + ' track');
    if (muted) await t.mute(); else await t.unmute();
    return t.isMuted();
  };

  /**
   * A modified client: turns its microphone (or camera) back on (`on`) behind lib-jitsi-meet's back
   * after the focus muted it, without telling the focus — or stops doing so.
   */
  window.ljmCheat = function (type, on) {
    const t = state.conf.getLocalTracks().find((x) => x.getType() === type);
    const mst = t && t.getTrack();
    if (!mst) throw new Error('no local ' + type + ' track');
    mst.enabled = on;
    return mst.enabled;
  };

  /** Starts recording (`file`) or live streaming (`stream`, with a stream key); the outcome. */
  window.ljmStartRecording = async function (mode) {
    const options = mode === 'stream' ? { mode, streamId: 'abcd-efgh-ijkl-mnop' } : { mode };
    try {
      await state.conf.startRecording(options);
      return { started: true };
    } catch (e) {
      const err = e && e.getElementsByTagName ? e.getElementsByTagName('error')[0] : null;
      return { started: false, condition: err && err.children.length ? err.children[0].tagName : String(e) };
    }
  };

  /** Dial-out (Jigasi); the outcome. */
  window.ljmDial = async function (number) {
    try {
      await state.conf.dial(number);
      return { dialled: true };
    } catch (e) {
      const err = e && e.getElementsByTagName ? e.getElementsByTagName('error')[0] : null;
      return { dialled: false, condition: err && err.children.length ? err.children[0].tagName : String(e) };
    }
  };

  /** This page's outgoing audio: bytes the browser sent (to tell muted from silent). */
  window.ljmAudioSent = async function () {
    const session = state.conf && state.conf.jvbJingleSession;
    const pc = session && session.peerconnection && session.peerconnection.peerconnection;
    if (!pc) return 0;
    let bytes = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'audio') bytes += r.bytesSent || 0;
    });
    return bytes;
  };

  window.ljmLeave = async function () {
    if (state.conf) await state.conf.leave();
    if (state.conn) state.conn.disconnect();
  };
})();
