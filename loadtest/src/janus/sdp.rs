//! The SDP a Janus participant writes (its publisher offer, its subscriber answers) and reads
//! (Janus's answer and offers), as pure functions. Only what a VideoRoom session uses: BUNDLE,
//! rtcp-mux, one ICE ufrag/pwd and DTLS fingerprint, host candidates, Opus and VP8 with their
//! header extensions, SSRCs (a SIM group for simulcast, as Chromium's munged SDP).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bridge::transport::{Fingerprint, IceCredentials, RemoteCandidate, RemoteTransport};

/// Our payload types (Chromium's usual numbers).
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;

/// Header extensions we offer, with the ids Chromium uses.
pub const EXT_AUDIO_LEVEL: (u8, &str) = (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level");
pub const EXT_ABS_SEND_TIME: (u8, &str) = (
    2,
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
);
pub const EXT_TRANSPORT_CC: (u8, &str) = (
    3,
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
);
pub const EXT_MID: (u8, &str) = (4, "urn:ietf:params:rtp-hdrext:sdes:mid");

/// Our side of a PeerConnection.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    pub ice: IceCredentials,
    pub fingerprint: Fingerprint,
    /// `actpass` (offer), `active` or `passive` (answer).
    pub setup: &'static str,
    /// Our socket: the one host candidate.
    pub addr: SocketAddr,
}

/// One m-line as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video` or `application`.
    pub kind: String,
    pub port: u16,
    pub mid: Option<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default sendrecv).
    pub direction: String,
    /// (payload type, encoding name, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    pub extmap: Vec<(u8, String)>,
    /// SSRCs in order of their first `a=ssrc` line.
    pub ssrcs: Vec<u32>,
    /// `a=ssrc-group:SIM` members, lowest layer first.
    pub simulcast: Vec<u32>,
}

impl MediaSection {
    pub fn ext(&self, uri: &str) -> Option<u8> {
        self.extmap
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }

    /// The payload type of `codec` (case-insensitive), if offered.
    pub fn payload_type(&self, codec: &str) -> Option<u8> {
        self.rtpmap
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(codec))
            .map(|(pt, _, _)| *pt)
    }

    /// Carries media (not rejected with port 0, not inactive).
    pub fn active(&self) -> bool {
        self.port != 0 && self.direction != "inactive"
    }
}

/// A parsed session description.
#[derive(Debug, Clone, Default)]
pub struct Sdp {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub fingerprints: Vec<Fingerprint>,
    pub setup: Option<String>,
    /// UDP candidates of component 1 (every section; BUNDLE), highest priority first.
    pub candidates: Vec<RemoteCandidate>,
    pub media: Vec<MediaSection>,
}

/// What is wrong with an SDP.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP without {0}")]
    Missing(&'static str),
    #[error("SDP offers the candidate {0}, not on Janus's own address {1} (refused)")]
    ForeignCandidate(SocketAddr, IpAddr),
}

/// Parses `text` (CRLF or LF lines; unknown lines ignored).
pub fn parse(text: &str) -> Sdp {
    let mut sdp = Sdp::default();
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            sdp.media.push(MediaSection {
                kind,
                port,
                direction: "sendrecv".into(),
                ..MediaSection::default()
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        match name {
            "ice-ufrag" => {
                sdp.ufrag.get_or_insert_with(|| value.to_owned());
            }
            "ice-pwd" => {
                sdp.pwd.get_or_insert_with(|| value.to_owned());
            }
            "fingerprint" => {
                if let Some((alg, v)) = value.split_once(' ') {
                    let f = Fingerprint {
                        algorithm: alg.to_ascii_lowercase(),
                        value: v.trim().to_owned(),
                    };
                    if !sdp.fingerprints.contains(&f) {
                        sdp.fingerprints.push(f);
                    }
                }
            }
            "setup" => {
                sdp.setup.get_or_insert_with(|| value.to_owned());
            }
            "candidate" => {
                // foundation component transport priority address port typ …
                let f: Vec<&str> = value.split_whitespace().collect();
                if f.len() >= 6
                    && f[1] == "1"
                    && f[2].eq_ignore_ascii_case("udp")
                    && let (Ok(priority), Ok(ip), Ok(port)) = (
                        f[3].parse::<u32>(),
                        f[4].parse::<std::net::IpAddr>(),
                        f[5].parse::<u16>(),
                    )
                {
                    let addr = SocketAddr::new(ip, port);
                    if !sdp.candidates.iter().any(|c| c.addr == addr) {
                        sdp.candidates.push(RemoteCandidate { addr, priority });
                    }
                }
            }
            _ => {}
        }
        let Some(m) = sdp.media.last_mut() else {
            continue;
        };
        match name {
            "mid" => m.mid = Some(value.to_owned()),
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => m.direction = name.to_owned(),
            "rtpmap" => {
                if let Some((pt, enc)) = value.split_once(' ') {
                    let mut e = enc.split('/');
                    let codec = e.next().unwrap_or_default().to_owned();
                    let rate = e.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                    if let Ok(pt) = pt.parse() {
                        m.rtpmap.push((pt, codec, rate));
                    }
                }
            }
            "extmap" => {
                if let Some((id, uri)) = value.split_once(' ') {
                    // `id/direction` is allowed.
                    let id = id.split('/').next().unwrap_or(id);
                    if let Ok(id) = id.parse() {
                        let uri = uri.split_whitespace().next().unwrap_or(uri);
                        m.extmap.push((id, uri.to_owned()));
                    }
                }
            }
            "ssrc" => {
                if let Some(ssrc) = value
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u32>().ok())
                    && !m.ssrcs.contains(&ssrc)
                {
                    m.ssrcs.push(ssrc);
                }
            }
            "ssrc-group" => {
                if let Some(rest) = value.strip_prefix("SIM ") {
                    m.simulcast = rest
                        .split_whitespace()
                        .filter_map(|s| s.parse().ok())
                        .collect();
                }
            }
            _ => {}
        }
    }
    sdp.candidates
        .sort_by_key(|c| std::cmp::Reverse(c.priority));
    sdp
}

impl Sdp {
    /// The peer's transport, refusing any candidate on another address than `sfu`: Janus must
    /// offer only the address it was configured on (`ice_enforce_list`, see `janus::server`),
    /// 127.0.0.1 or the SFU's end of the split namespaces (`crate::netns`), so that no media
    /// goes anywhere else.
    pub fn remote_transport(&self, sfu: IpAddr) -> Result<RemoteTransport, SdpError> {
        let ufrag = self.ufrag.clone().ok_or(SdpError::Missing("a=ice-ufrag"))?;
        let pwd = self.pwd.clone().ok_or(SdpError::Missing("a=ice-pwd"))?;
        if self.fingerprints.is_empty() {
            return Err(SdpError::Missing("a=fingerprint"));
        }
        if let Some(c) = self.candidates.iter().find(|c| c.addr.ip() != sfu) {
            return Err(SdpError::ForeignCandidate(c.addr, sfu));
        }
        if self.candidates.is_empty() {
            return Err(SdpError::Missing("a UDP candidate"));
        }
        Ok(RemoteTransport {
            ice: IceCredentials { ufrag, pwd },
            fingerprints: self.fingerprints.clone(),
            candidates: self.candidates.clone(),
        })
    }

    pub fn section(&self, kind: &str) -> Option<&MediaSection> {
        self.media.iter().find(|m| m.kind == kind && m.active())
    }
}

fn transport_lines(o: &mut String, t: &LocalTransport) {
    let ip = t.addr.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        o,
        "c=IN {family} {ip}\r\n\
         a=rtcp:9 IN {family} {ip}\r\n\
         a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\n\
         a=end-of-candidates\r\n\
         a=ice-ufrag:{ufrag}\r\n\
         a=ice-pwd:{pwd}\r\n\
         a=fingerprint:{alg} {fp}\r\n\
         a=setup:{setup}\r\n\
         a=rtcp-mux\r\n",
        port = t.addr.port(),
        ufrag = t.ice.ufrag,
        pwd = t.ice.pwd,
        alg = t.fingerprint.algorithm,
        fp = t.fingerprint.value,
        setup = t.setup,
    );
}

fn session_header(o: &mut String, session_id: u64, mids: &[String]) {
    let _ = write!(
        o,
        "v=0\r\no=- {session_id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n\
         a=msid-semantic: WMS loadtest\r\n",
        mids.join(" ")
    );
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct PublishMedia {
    pub cname: String,
    pub audio_ssrc: u32,
    /// One SSRC, or three (lowest layer first) for simulcast.
    pub video_ssrcs: Vec<u32>,
}

/// Our publisher offer: `m=audio` (Opus, sendonly) and `m=video` (VP8, sendonly), as Chromium's
/// but with only the codecs we send.
pub fn publisher_offer(session_id: u64, t: &LocalTransport, m: &PublishMedia) -> String {
    let mut o = String::new();
    session_header(&mut o, session_id, &["0".into(), "1".into()]);
    let _ = write!(o, "m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}\r\n");
    transport_lines(&mut o, t);
    let _ = write!(
        o,
        "a=mid:0\r\na=extmap:{} {}\r\na=extmap:{} {}\r\na=extmap:{} {}\r\na=sendonly\r\n\
         a=msid:loadtest audio0\r\n\
         a=rtpmap:{OPUS_PT} opus/48000/2\r\na=rtcp-fb:{OPUS_PT} transport-cc\r\n\
         a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1\r\n\
         a=ssrc:{} cname:{}\r\na=ssrc:{} msid:loadtest audio0\r\n",
        EXT_AUDIO_LEVEL.0,
        EXT_AUDIO_LEVEL.1,
        EXT_TRANSPORT_CC.0,
        EXT_TRANSPORT_CC.1,
        EXT_MID.0,
        EXT_MID.1,
        m.audio_ssrc,
        m.cname,
        m.audio_ssrc,
    );
    let _ = write!(o, "m=video 9 UDP/TLS/RTP/SAVPF {VP8_PT}\r\n");
    transport_lines(&mut o, t);
    let _ = write!(
        o,
        "a=mid:1\r\na=extmap:{} {}\r\na=extmap:{} {}\r\na=extmap:{} {}\r\na=sendonly\r\n\
         a=msid:loadtest video0\r\n\
         a=rtpmap:{VP8_PT} VP8/90000\r\n\
         a=rtcp-fb:{VP8_PT} goog-remb\r\na=rtcp-fb:{VP8_PT} transport-cc\r\n\
         a=rtcp-fb:{VP8_PT} ccm fir\r\na=rtcp-fb:{VP8_PT} nack\r\na=rtcp-fb:{VP8_PT} nack pli\r\n",
        EXT_ABS_SEND_TIME.0,
        EXT_ABS_SEND_TIME.1,
        EXT_TRANSPORT_CC.0,
        EXT_TRANSPORT_CC.1,
        EXT_MID.0,
        EXT_MID.1,
    );
    if m.video_ssrcs.len() > 1 {
        let list: Vec<String> = m.video_ssrcs.iter().map(u32::to_string).collect();
        let _ = write!(o, "a=ssrc-group:SIM {}\r\n", list.join(" "));
    }
    for s in &m.video_ssrcs {
        let _ = write!(
            o,
            "a=ssrc:{s} cname:{}\r\na=ssrc:{s} msid:loadtest video0\r\n",
            m.cname
        );
    }
    o
}

/// Our answer to a subscriber offer: every offered section received (`recvonly`) with the codec
/// we handle (Opus, VP8) and the header extensions Janus offered; others rejected (port 0).
pub fn subscriber_answer(
    session_id: u64,
    offer: &Sdp,
    t: &LocalTransport,
    rtcp_ssrc: u32,
) -> String {
    let mut o = String::new();
    let mids: Vec<String> = offer
        .media
        .iter()
        .filter(|m| m.active())
        .filter_map(|m| m.mid.clone())
        .collect();
    session_header(&mut o, session_id, &mids);
    for m in &offer.media {
        let codec = match m.kind.as_str() {
            "audio" => m.payload_type("opus"),
            "video" => m.payload_type("VP8"),
            _ => None,
        };
        let Some(pt) = codec.filter(|_| m.active()) else {
            let _ = write!(o, "m={} 0 UDP/TLS/RTP/SAVPF 0\r\n", m.kind);
            if let Some(mid) = &m.mid {
                let _ = write!(o, "a=mid:{mid}\r\n");
            }
            let _ = write!(o, "a=inactive\r\n");
            continue;
        };
        let _ = write!(o, "m={} 9 UDP/TLS/RTP/SAVPF {pt}\r\n", m.kind);
        transport_lines(&mut o, t);
        if let Some(mid) = &m.mid {
            let _ = write!(o, "a=mid:{mid}\r\n");
        }
        for (id, uri) in &m.extmap {
            let _ = write!(o, "a=extmap:{id} {uri}\r\n");
        }
        let _ = write!(o, "a=recvonly\r\n");
        if m.kind == "audio" {
            let _ = write!(
                o,
                "a=rtpmap:{pt} opus/48000/2\r\na=rtcp-fb:{pt} transport-cc\r\n\
                 a=fmtp:{pt} minptime=10;useinbandfec=1\r\n"
            );
        } else {
            let _ = write!(
                o,
                "a=rtpmap:{pt} VP8/90000\r\na=rtcp-fb:{pt} goog-remb\r\na=rtcp-fb:{pt} transport-cc\r\n\
                 a=rtcp-fb:{pt} ccm fir\r\na=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n"
            );
        }
        let _ = write!(o, "a=ssrc:{rtcp_ssrc} cname:loadtest\r\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn local(setup: &'static str) -> LocalTransport {
        LocalTransport {
            ice: IceCredentials {
                ufrag: "abcd".into(),
                pwd: "0123456789012345678901".into(),
            },
            fingerprint: Fingerprint {
                algorithm: "sha-256".into(),
                value: "AA:BB".into(),
            },
            setup,
            addr: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[test]
    fn the_publisher_offer_parses_back() {
        let m = PublishMedia {
            cname: "c".into(),
            audio_ssrc: 10,
            video_ssrcs: vec![1, 2, 3],
        };
        let sdp = parse(&publisher_offer(7, &local("actpass"), &m));
        let t = sdp.remote_transport(LO).unwrap();
        assert_eq!(t.ice.ufrag, "abcd");
        assert_eq!(
            t.candidates[0].addr,
            "127.0.0.1:5000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(sdp.setup.as_deref(), Some("actpass"));
        let v = sdp.section("video").unwrap();
        assert_eq!(v.simulcast, vec![1, 2, 3]);
        assert_eq!(v.payload_type("vp8"), Some(VP8_PT));
        assert_eq!(v.ext(EXT_TRANSPORT_CC.1), Some(3));
        assert_eq!(v.direction, "sendonly");
        assert_eq!(sdp.section("audio").unwrap().ssrcs, vec![10]);
    }

    #[test]
    fn a_janus_style_offer_is_read_and_answered_recvonly() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=VideoRoom 1\r\nt=0 0\r\n\
            a=group:BUNDLE 0 1 2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\na=mid:0\r\n\
            a=rtcp-mux\r\na=ice-ufrag:uf\r\na=ice-pwd:pw\r\na=ice-options:trickle\r\n\
            a=fingerprint:sha-256 01:02\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n\
            a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
            a=ssrc:555 cname:janus\r\n\
            a=candidate:1 1 udp 2015363327 127.0.0.1 40001 typ host\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 127.0.0.1\r\na=sendonly\r\na=mid:1\r\n\
            a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=ssrc:666 cname:janus\r\n\
            m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=inactive\r\n";
        let sdp = parse(offer);
        let t = sdp.remote_transport(LO).unwrap();
        assert_eq!(t.ice.pwd, "pw");
        assert_eq!(t.candidates.len(), 1);
        assert_eq!(sdp.media.len(), 3);
        assert_eq!(sdp.media[1].ssrcs, vec![666]);
        let answer = subscriber_answer(9, &sdp, &local("passive"), 42);
        let a = parse(&answer);
        assert_eq!(a.media.len(), 3);
        assert_eq!(a.media[0].direction, "recvonly");
        assert_eq!(a.media[1].rtpmap, vec![(96, "VP8".into(), 90000)]);
        assert_eq!(a.media[2].port, 0);
        assert_eq!(a.setup.as_deref(), Some("passive"));
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"), "{answer}");

        // Only the configured address: another one, even on loopback, is refused.
        for other in ["10.1.2.3", "127.0.0.2"] {
            let bad = offer.replace("127.0.0.1 40001", &format!("{other} 40001"));
            assert_eq!(
                parse(&bad).remote_transport(LO).unwrap_err(),
                SdpError::ForeignCandidate(format!("{other}:40001").parse().unwrap(), LO)
            );
        }
        // The split namespaces' SFU address is accepted when it is the configured one, and
        // 127.0.0.1 is then refused.
        let sfu = IpAddr::from([10, 213, 0, 2]);
        let split = offer.replace("127.0.0.1 40001", "10.213.0.2 40001");
        assert_eq!(
            parse(&split).remote_transport(sfu).unwrap().candidates[0].addr,
            "10.213.0.2:40001".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse(offer).remote_transport(sfu).unwrap_err(),
            SdpError::ForeignCandidate("127.0.0.1:40001".parse().unwrap(), sfu)
        );
    }
}
