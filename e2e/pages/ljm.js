// A lib-jitsi-meet participant: connects to Prosody, asks the focus for the conference, joins with fake
// camera and microphone, shows and measures every remote track. Used by the demo (scripts/run.sh) and by
// the browser tests (driven through e2e/ljm-peer.js).
'use strict';

(function () {
  const state = { conn: null, conf: null, remote: {}, removed: [], events: [] };
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
      el.appendChild(v);
      el.appendChild(l);
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
      serviceUrl: cfg.serviceUrl,
    };
    const conn = new JM.JitsiConnection(null, null, options);
    state.conn = conn;
    await new Promise((resolve, reject) => {
      conn.addEventListener(JM.events.connection.CONNECTION_ESTABLISHED, resolve);
      conn.addEventListener(JM.events.connection.CONNECTION_FAILED, (e) => reject(new Error('connection failed: ' + e)));
      conn.connect();
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
    conf.on(E.USER_JOINED, (id) => note('user-joined', { participant: id }));
    conf.on(E.USER_LEFT, (id) => note('user-left', { participant: id }));
    conf.on(E.CONNECTION_INTERRUPTED, () => note('media-interrupted'));
    conf.on(E.CONNECTION_RESTORED, () => note('media-restored'));
    conf.on(E.CONNECTION_ESTABLISHED, () => note('media-established'));
    conf.on(E.STARTED_MUTED, () => note('started-muted'));
    // After the join: e.g. `conference.focusLeft` when the focus goes away (the app reloads then).
    conf.on(E.CONFERENCE_FAILED, (e) => note('conference-failed', { error: String(e) }));
    conn.addEventListener(JM.events.connection.CONNECTION_FAILED, (e) => note('connection-failed', { error: String(e) }));
    for (const t of tracks) {
      await conf.addTrack(t);
      if (t.getType() === 'video') attach(t);
    }
    await new Promise((resolve, reject) => {
      conf.on(E.CONFERENCE_JOINED, resolve);
      conf.on(E.CONFERENCE_FAILED, (e) => reject(new Error('conference failed: ' + e)));
      conf.join();
    });
    note('joined', { id: conf.myUserId() });
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
    if (pc) {
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.type === 'inbound-rtp') inbound.push(r);
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
      startAudioMuted: conf.isStartAudioMuted(),
      startVideoMuted: conf.isStartVideoMuted(),
      startedMuted: state.events.some((e) => e.kind === 'started-muted'),
      local,
    };
  };

  window.ljmLeave = async function () {
    if (state.conf) await state.conf.leave();
    if (state.conn) state.conn.disconnect();
  };
})();
