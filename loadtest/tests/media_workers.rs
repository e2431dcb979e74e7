//! The bridge's media plane with two media workers (in process, real UDP on loopback), and three
//! loadtest participants in one conference whose sockets the kernel maps to *different* workers'
//! sockets of the one port: they connect (ICE, DTLS, bridge channel) and receive each other's
//! audio and video, so datagrams that land on the worker not owning the conference are handed to
//! the owner, which answers from its own socket.
//!
//! Which worker's socket a participant's 4-tuple reaches is the kernel's `SO_REUSEPORT` hash, not
//! ours to choose: the test probes it (one garbage datagram from a candidate socket, counted as
//! dropped by the worker that got it) and keeps sockets until it has participants on both.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::health::HealthRegistry;
use bridge::lifecycle::Admission;
use bridge::media::{MediaPlane, MediaSettings};
use bridge::sfu::SfuConfig;
use bridge::transport::signal::remote_transport;
use bridge::transport::{
    DropCounters, DtlsIdentity, EndpointTransport, IceCredentials, TransportConfig,
};
use loadtest::media::{MediaEndpoint, ReceiveView};
use loadtest::receiver::{Kind, MediaReceiver, RemoteSource};
use loadtest::sender::{AudioConfig, LayerConfig, MediaSender, Speaking, VideoConfig};
use loadtest::session::{LocalSources, local_transport};
use signaling::colibri2::{
    self, ConferenceModified, ConferenceModify, Endpoint, MediaSource, Sctp, Sources, Transport,
};
use signaling::rtp_description::{MediaType, PayloadType, RtpHdrExt, RtpParameters, hdrext};

const OPUS: u8 = 111;
const VP8: u8 = 100;
const AUDIO_LEVEL_EXT: u8 = 1;

fn media() -> Vec<colibri2::Media> {
    vec![
        colibri2::Media {
            media_type: MediaType::Audio,
            rtp: RtpParameters {
                payload_types: vec![PayloadType::new(OPUS, "opus", 48000, Some(2))],
                header_extensions: vec![RtpHdrExt::new(AUDIO_LEVEL_EXT, hdrext::AUDIO_LEVEL)],
                extmap_allow_mixed: false,
            },
        },
        colibri2::Media {
            media_type: MediaType::Video,
            rtp: RtpParameters {
                payload_types: vec![
                    PayloadType::new(VP8, "VP8", 90000, None)
                        .with_rtcp_fb("nack", None)
                        .with_rtcp_fb("nack", Some("pli")),
                    PayloadType::new(96, "rtx", 90000, None).with_parameter("apt", "100"),
                ],
                header_extensions: Vec::new(),
                extmap_allow_mixed: false,
            },
        },
    ]
}

fn colibri_sources(s: &LocalSources) -> Sources {
    let mut a = MediaSource::new(MediaType::Audio, s.audio_name());
    a.sources = s.audio_sources();
    let mut v = MediaSource::new(MediaType::Video, s.video_name());
    let (sources, groups) = s.video_sources();
    v.sources = sources;
    v.ssrc_groups = groups;
    Sources {
        media_sources: vec![a, v],
    }
}

async fn modify(plane: &MediaPlane, r: ConferenceModify) -> ConferenceModified {
    let answer = plane.handle().conference_modify(r, Admission::Accept).await;
    answer.await.expect("conference-modify")
}

/// A loopback socket whose datagrams to `port` the kernel gives to worker `want` (probed with a
/// garbage datagram each, which that worker counts as `unknown_protocol`).
async fn socket_for_worker(plane: &MediaPlane, port: SocketAddr, want: usize) -> UdpSocket {
    let garbage = |p: &MediaPlane, w: usize| {
        p.stats()
            .worker_sample(w)
            .dropped_packets
            .get("unknown_protocol")
            .copied()
            .unwrap_or(0)
    };
    for _ in 0..64 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before: Vec<u64> = (0..2).map(|w| garbage(plane, w)).collect();
        s.send_to(&[0xFF], port).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now: Vec<u64> = (0..2).map(|w| garbage(plane, w)).collect();
            if let Some(w) = (0..2).find(|&w| now[w] > before[w]) {
                if w == want {
                    return s;
                }
                break;
            }
            assert!(Instant::now() < deadline, "the probe reached no worker");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("64 sockets and none hashed to worker {want}");
}

struct Participant {
    id: String,
    socket: tokio::net::UdpSocket,
    media: MediaEndpoint,
}

/// Drives one participant until `until`: its datagrams, timers and transmits.
async fn drive(mut p: Participant, until: Instant) -> Participant {
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= until {
            return p;
        }
        while let Some((to, data)) = p.media.poll_transmit() {
            let _ = p.socket.send_to(&data, to).await;
        }
        let wake = p.media.poll_timeout().unwrap_or(until).min(until).max(now);
        tokio::select! {
            r = p.socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    p.media.handle_datagram(Instant::now(), from, &buf[..n]);
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                p.media.handle_timeout(Instant::now());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_media_workers_forward_between_participants_on_either_socket() {
    let settings = MediaSettings::loopback(2);
    let plane = MediaPlane::start(
        settings,
        SfuConfig::default(),
        Arc::new(HealthRegistry::new()),
    )
    .await
    .expect("media plane");
    assert_eq!(plane.workers, 2);
    let port = plane.local_addr;
    let identity = DtlsIdentity::generate_named("loadtest").unwrap();
    // The conference is created on worker 0 (both idle: the lowest index). One participant on
    // its socket, two on the other worker's: everything they send is handed over.
    let placed_on = [0usize, 1, 1];
    let mut participants = Vec::new();
    let mut all_sources = Vec::new();
    for (i, &w) in placed_on.iter().enumerate() {
        let id = format!("p{i}");
        let socket = socket_for_worker(&plane, port, w).await;
        let local = socket.local_addr().unwrap();
        let mut seed = 0x9E37_79B9u32.wrapping_mul(i as u32 + 1);
        let sources = LocalSources::new(&id, true, 1, || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        });
        let mut ep = Endpoint {
            create: true,
            media: media(),
            transport: Some(Transport {
                ice_controlling: true,
                sctp: Some(Sctp::default()),
                ..Transport::default()
            }),
            capabilities: vec![colibri2::capability::SOURCE_NAMES.into()],
            ..Endpoint::new(id.clone())
        };
        ep.stats_id = Some(id.clone());
        let answer = modify(
            &plane,
            ConferenceModify {
                create: i == 0,
                name: Some("room@conference.meet.example".into()),
                endpoints: vec![ep],
                ..ConferenceModify::new("workers-test")
            },
        )
        .await;
        let bridge_transport = answer
            .endpoint(&id)
            .and_then(|e| e.transport.as_ref())
            .and_then(|t| t.ice_udp.as_ref())
            .expect("the bridge's transport");
        let remote = remote_transport(bridge_transport).expect("credentials");
        let now = Instant::now();
        let mut transport = EndpointTransport::new(
            IceCredentials::random(),
            &identity,
            TransportConfig::client(),
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        transport.set_remote(now, remote);
        // The client's transport and sources, as the focus relays them from session-accept.
        let mut update = Endpoint::new(id.clone());
        update.transport = Some(Transport {
            ice_udp: Some(local_transport(&transport, local)),
            ..Transport::default()
        });
        update.sources = Some(colibri_sources(&sources));
        modify(
            &plane,
            ConferenceModify {
                endpoints: vec![update],
                ..ConferenceModify::new("workers-test")
            },
        )
        .await;
        let sender = MediaSender::new(
            now,
            sources.audio.map(|ssrc| AudioConfig {
                ssrc,
                payload_type: OPUS,
                audio_level_ext: Some(AUDIO_LEVEL_EXT),
                transport_cc_ext: None,
                payload_bytes: 80,
            }),
            Some(VideoConfig {
                codec: loadtest::sender::VideoCodec::Vp8,
                payload_type: VP8,
                layers: vec![LayerConfig {
                    ssrc: sources.video[0],
                    width: 640,
                    height: 360,
                    bitrate_bps: 500_000,
                }],
                fps: 30,
                keyframe_interval: Duration::from_secs(1),
                transport_cc_ext: None,
                abs_send_time_ext: None,
            }),
            Speaking {
                index: i as u32,
                count: 3,
                slot: Duration::from_secs(1),
            },
            &id,
            i as u64 + 1,
        );
        let receiver = MediaReceiver::new(now, sources.audio.unwrap_or(1), None);
        let media = MediaEndpoint::new(
            transport,
            sender,
            receiver,
            &id,
            ReceiveView {
                stage_height: 360,
                thumbnail_height: 180,
                tile_view: false,
            },
        );
        socket.set_nonblocking(true).unwrap();
        participants.push(Participant {
            id,
            socket: tokio::net::UdpSocket::from_std(socket).unwrap(),
            media,
        });
        all_sources.push(sources);
    }
    assert_eq!(plane.placement().get("workers-test"), Some(0));
    // Everyone learns the others' sources (the focus's source-add).
    let now = Instant::now();
    for p in &mut participants {
        let mut remote = Vec::new();
        for s in all_sources.iter().filter(|s| s.endpoint != p.id) {
            let src = |kind, name: String, clock_rate| RemoteSource {
                owner: s.endpoint.clone(),
                kind,
                name: Some(name),
                clock_rate,
            };
            if let Some(a) = s.audio {
                remote.push((a, src(Kind::Audio, s.audio_name(), 48_000)));
            }
            for &v in &s.video {
                remote.push((v, src(Kind::Video, s.video_name(), 90_000)));
            }
        }
        p.media.add_sources(now, remote);
    }
    // Run everyone for 6 s.
    let until = Instant::now() + Duration::from_secs(6);
    let tasks: Vec<_> = participants
        .into_iter()
        .map(|p| tokio::spawn(drive(p, until)))
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    for p in &done {
        let m = &p.media.milestones;
        assert!(m.ice_connected.is_some(), "{}: ICE did not connect", p.id);
        assert!(m.dtls_connected.is_some(), "{}: DTLS did not connect", p.id);
        assert!(m.channel_open.is_some(), "{}: no bridge channel", p.id);
        // Audio and video from each of the others, decrypted and parsed.
        let mut got: HashMap<(String, Kind), u64> = HashMap::new();
        for t in p.media.receiver().tracks() {
            *got.entry((t.source.owner.clone(), t.source.kind))
                .or_default() += t.counters.packets;
        }
        for other in done.iter().filter(|o| o.id != p.id) {
            for kind in [Kind::Audio, Kind::Video] {
                let n = got.get(&(other.id.clone(), kind)).copied().unwrap_or(0);
                // ≥ 2 s of 50 audio / ≈ 40 video packets a second.
                assert!(
                    n >= 80,
                    "{} got {n} {kind:?} packets from {}",
                    p.id,
                    other.id
                );
            }
        }
    }
    // Worker 1's socket received the two participants' datagrams and handed them to worker 0.
    let s = plane.stats();
    let w1 = s.worker_sample(1);
    assert!(w1.datagrams_handed_off > 500, "{w1:?}");
    assert_eq!(s.worker_sample(0).datagrams_handed_off, 0);
    assert_eq!(w1.local_endpoints, 0, "the conference lives on worker 0");
    // The bridge's statistics add the workers up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let total = s.sample();
    assert_eq!(total.media_workers, 2);
    assert_eq!(total.local_endpoints, 3);
    assert_eq!(total.conference_sizes, vec![3]);
    assert!(total.datagrams_handed_off >= w1.datagrams_handed_off);
    assert!(total.packets_sent > 1000, "{total:?}");
    assert_eq!(total.dropped_packets.get("handoff_full"), None);
    plane.stop().await;
}
