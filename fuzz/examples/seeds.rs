//! Writes the seed corpora of the binary and scripted targets into `fuzz/corpus/<target>/`:
//! `cargo run --example seeds` (from `fuzz/`). Seeds are built with the bridge's own writers and the
//! fixtures the targets use, so they stay in step with the code; the XML and JSON seeds of
//! `xml_stanzas` and `bridge_channel` are hand-written files, reused here for other targets.
//! Existing `seed-*` files of a target are replaced; other files (minimised crashes) are kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bridge::sfu::rtcp::{
    self, ReportBlock, SenderInfo, write_bye, write_fir, write_nack, write_pli, write_remb,
    write_rr, write_sdes_cname, write_sr,
};
use bridge::sfu::tcc_feedback::FeedbackBuilder;
use bridge::sfu::vp8::{Descriptor, write_frame_header};
use bridge::transport::sctp::{DcepOpen, encode_dcep_open};
use bridge::transport::stun::{Builder, Class, METHOD_BINDING, attr};
use jitsi_rs_fuzz::dtls_client::{DtlsClient, client_fingerprint};
use jitsi_rs_fuzz::focus_sim::{self, BREWERY, FocusSim, ROOM, esc};
use jitsi_rs_fuzz::records::join_text_ops;
use jitsi_rs_fuzz::sctp_client::CHANNEL_STREAM;
use jitsi_rs_fuzz::sfu_fixture::{AUDIO_LEVEL_ID, BASE_A, BASE_B, OPUS, RTX, TCC_ID, VP8};
use jitsi_rs_fuzz::stun_util::{
    LOCAL_PWD, LOCAL_UFRAG, PEER, REMOTE_PWD, REMOTE_UFRAG, remote, validated_endpoint,
};
use jitsi_rs_fuzz::{bridge_plane, push_record};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Replaces the `seed-*` files of `target` with `seeds`.
fn write(target: &str, seeds: Vec<(&str, Vec<u8>)>) {
    let dir = corpus().join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    for e in fs::read_dir(&dir).expect("read corpus dir").flatten() {
        if e.file_name().to_string_lossy().starts_with("seed-") {
            fs::remove_file(e.path()).expect("remove old seed");
        }
    }
    let n = seeds.len();
    for (name, bytes) in seeds {
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
    println!("{target}: {n} seeds");
}

/// The hand-written seeds of another target, by file name.
fn read_seeds(target: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(corpus().join(target))
        .expect("corpus dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).expect("utf-8 seed"),
            )
        })
        .collect();
    v.sort();
    v
}

fn records(rs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (t, p) in rs {
        push_record(&mut v, *t, p);
    }
    v
}

fn with_prefix(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(body);
    v
}

// ------------------------------------------------------------------------------------------- STUN

fn stun_check(user: &str, extra: impl FnOnce(&mut Builder<'_>), key: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[7; 12]);
    b.username(user).priority(1_853_824_767);
    extra(&mut b);
    b.integrity(key.as_bytes()).fingerprint();
    buf
}

fn stun_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let user = format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}");
    let nominate = stun_check(
        &user,
        |b| {
            b.ice_controlling(42).use_candidate();
        },
        LOCAL_PWD,
    );
    let controlled = stun_check(
        &user,
        |b| {
            b.ice_controlled(42);
        },
        LOCAL_PWD,
    );
    let mut success = Vec::new();
    Builder::new(&mut success, Class::Success, METHOD_BINDING, &[1; 12])
        .xor_mapped_address(PEER)
        .integrity(REMOTE_PWD.as_bytes())
        .fingerprint();
    let mut success6 = Vec::new();
    Builder::new(&mut success6, Class::Success, METHOD_BINDING, &[2; 12])
        .xor_mapped_address("[2001:db8::1]:40000".parse().expect("addr"))
        .integrity(REMOTE_PWD.as_bytes())
        .fingerprint();
    let mut conflict = Vec::new();
    Builder::new(&mut conflict, Class::Error, METHOD_BINDING, &[3; 12])
        .error_code(487, "Role Conflict")
        .integrity(REMOTE_PWD.as_bytes())
        .fingerprint();
    let mut indication = Vec::new();
    Builder::new(&mut indication, Class::Indication, METHOD_BINDING, &[4; 12]).fingerprint();
    let mut unknown = Vec::new();
    Builder::new(&mut unknown, Class::Request, METHOD_BINDING, &[5; 12])
        .username(&user)
        .attr(0x0003, &[0, 0, 0, 4])
        .attr(attr::SOFTWARE, b"fuzz")
        .integrity(LOCAL_PWD.as_bytes())
        .fingerprint();
    let no_user = stun_check("", |_| {}, LOCAL_PWD);
    vec![
        ("nominate-lite", with_prefix(&[0], &nominate)),
        ("nominate-resigned", with_prefix(&[1], &nominate)),
        ("nominate-full-remote", with_prefix(&[7], &nominate)),
        ("controlled-conflict", with_prefix(&[5], &controlled)),
        ("success-answer", with_prefix(&[14], &success)),
        ("success-answer-ipv6", with_prefix(&[14], &success6)),
        ("role-conflict-answer", with_prefix(&[14], &conflict)),
        ("indication", with_prefix(&[0], &indication)),
        ("unknown-attribute", with_prefix(&[1], &unknown)),
        ("empty-username", with_prefix(&[1], &no_user)),
    ]
}

// ------------------------------------------------------------------------------------------ demux

fn demux_seeds(nominate: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // tag: low 3 bits op (0 register, 1 unregister, 2 learn, 3 filter, 4+ route), bits 4-5 key/addr.
    let dtls = [22u8, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9];
    let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2];
    let rtcp = [0x80u8, 200, 0, 1, 0, 0, 0, 7];
    vec![
        (
            "register-route-learn",
            records(&[
                (0x00, LOCAL_UFRAG.as_bytes()),
                (0x10, b"other"),
                (0x04, nominate),
                (0x02, &[0]),
                (0x04, &dtls),
                (0x04, &rtp),
                (0x04, &rtcp),
                (0x14, &rtp),
                (0x04, &[0xC0, 1]),
                (0x04, &[]),
                (0x01, &[]),
                (0x04, &rtp),
                (0x04, nominate),
            ]),
        ),
        (
            "filter-ipv6-foreign",
            records(&[
                (0x00, LOCAL_UFRAG.as_bytes()),
                (0x03, &[1]),
                (0x34, nominate),
                (0x24, nominate),
                (0x12, &[2]),
                (0x24, &dtls),
                (0x03, &[0]),
                (0x34, nominate),
            ]),
        ),
    ]
}

// ------------------------------------------------------------------------------------------- DTLS

/// The client's datagrams of a real handshake, flight by flight.
fn dtls_flights() -> Vec<Vec<Vec<u8>>> {
    let now = Instant::now();
    let (mut ep, _) = validated_endpoint(now);
    ep.set_remote(now, remote(vec![client_fingerprint()]));
    let mut client = DtlsClient::connect(now);
    let mut flights = Vec::new();
    for _ in 0..6 {
        let mut flight = Vec::new();
        while let Some(d) = client.poll_transmit() {
            ep.handle_datagram(now, PEER, &d);
            flight.push(d.to_vec());
        }
        while let Some(t) = ep.poll_transmit() {
            client.read(now, &t.data);
        }
        if flight.is_empty() {
            break;
        }
        flights.push(flight);
    }
    flights
}

fn sctp_packet(vtag: u32, chunks: &[u8]) -> Vec<u8> {
    let mut p = vec![0x13, 0x88, 0x13, 0x88];
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(chunks);
    let sum = crc32c::crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

fn chunk(typ: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let mut c = vec![typ, flags];
    c.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    c.extend_from_slice(value);
    while !c.len().is_multiple_of(4) {
        c.push(0);
    }
    c
}

fn sctp_init() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // initiate tag
    v.extend_from_slice(&131_072u32.to_be_bytes()); // a_rwnd
    v.extend_from_slice(&1024u16.to_be_bytes());
    v.extend_from_slice(&1024u16.to_be_bytes());
    v.extend_from_slice(&1000u32.to_be_bytes()); // initial TSN
    // Supported extensions: RE-CONFIG, FORWARD-TSN.
    v.extend_from_slice(&[0x80, 0x08, 0, 6, 130, 192, 0, 0]);
    // Forward-TSN supported.
    v.extend_from_slice(&[0xC0, 0x00, 0, 4]);
    sctp_packet(0, &chunk(1, 0, &v))
}

fn sctp_chunks() -> Vec<(&'static str, Vec<u8>)> {
    let data = |tsn: u32, stream: u16, ppi: u32, d: &[u8]| {
        let mut v = tsn.to_be_bytes().to_vec();
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(&0u16.to_be_bytes());
        v.extend_from_slice(&ppi.to_be_bytes());
        v.extend_from_slice(d);
        chunk(0, 0x03, &v)
    };
    let mut sack = 999u32.to_be_bytes().to_vec();
    sack.extend_from_slice(&131_072u32.to_be_bytes());
    sack.extend_from_slice(&[0, 1, 0, 1, 0, 2, 0, 4, 0, 0, 3, 0xe8]);
    let mut reconfig = vec![0, 13, 0, 18];
    reconfig.extend_from_slice(&1u32.to_be_bytes());
    reconfig.extend_from_slice(&0u32.to_be_bytes());
    reconfig.extend_from_slice(&999u32.to_be_bytes());
    reconfig.extend_from_slice(&CHANNEL_STREAM.to_be_bytes());
    let mut fwd = 1010u32.to_be_bytes().to_vec();
    fwd.extend_from_slice(&[0, 1, 0, 3]);
    let open = encode_dcep_open(&DcepOpen {
        channel_type: 0,
        priority: 256,
        reliability: 0,
        label: "JVB data channel".into(),
        protocol: String::new(),
    });
    vec![
        ("data-dcep", data(1000, 3, 50, &open)),
        (
            "data-text",
            data(
                1001,
                3,
                51,
                br#"{"colibriClass":"EndpointMessage","to":"","msgPayload":{}}"#,
            ),
        ),
        ("sack", chunk(3, 0, &sack)),
        (
            "heartbeat",
            chunk(4, 0, &[0, 1, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8]),
        ),
        ("abort", chunk(6, 0, &[])),
        ("shutdown", chunk(7, 0, &999u32.to_be_bytes())),
        ("cookie-echo", chunk(10, 0, &[0xAB; 64])),
        ("reconfig", chunk(130, 0, &reconfig)),
        ("forward-tsn", chunk(192, 0, &fwd)),
        ("error", chunk(9, 0, &[0, 1, 0, 8, 0, 5, 0, 0])),
    ]
}

fn dtls_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let flights = dtls_flights();
    let client_hello = flights[0][0].clone();
    let mut seeds = Vec::new();
    // Mode 0: the real ClientHello, then garbage of every kind.
    let truncated = client_hello[..client_hello.len() / 2].to_vec();
    let app = [23u8, 254, 253, 0, 1, 0, 0, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4];
    let alert = [21u8, 254, 253, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40];
    seeds.push((
        "raw-client-hello",
        with_prefix(
            &[0],
            &records(&[
                (0, &client_hello),
                (0, &truncated),
                (0, &app),
                (0, &alert),
                (0x85, &[]),
            ]),
        ),
    ));
    // Mode 1: the second flight of another session arrives at a server waiting for it.
    let later: Vec<(u8, &[u8])> = flights
        .iter()
        .skip(2)
        .flatten()
        .map(|d| (0u8, d.as_slice()))
        .collect();
    seeds.push(("stale-second-flight", with_prefix(&[1], &records(&later))));
    // Mode 2: one flipped byte in one of the client's datagrams.
    for (name, which, at) in [
        ("tamper-hello-cipher", 0usize, 60usize),
        ("tamper-cookie-hello", 1, 80),
        ("tamper-certificate", 2, 40),
        ("tamper-key-exchange", 2, 400),
        ("tamper-finished", 2, 600),
    ] {
        let total: usize = flights.iter().map(Vec::len).sum();
        let mut masks: Vec<Vec<u8>> = vec![Vec::new(); total];
        let idx: usize = flights.iter().take(which).map(Vec::len).sum();
        let target = &flights[which.min(flights.len() - 1)][0];
        let mut m = vec![0u8; target.len()];
        m[at.min(target.len() - 1)] = 0x5a;
        masks[idx.min(total - 1)] = m;
        let rs: Vec<(u8, &[u8])> = masks.iter().map(|m| (0u8, m.as_slice())).collect();
        seeds.push((name, with_prefix(&[2], &records(&rs))));
    }
    // Mode 3: SCTP through the client's DTLS session (tag bit 0), and raw records.
    let init = sctp_init();
    let mut rs: Vec<(u8, Vec<u8>)> = vec![(1, init.clone())];
    for (_, c) in sctp_chunks() {
        rs.push((1, sctp_packet(0x0102_0304, &c)));
    }
    rs.push((0, app.to_vec()));
    rs.push((0x81, alert.to_vec()));
    let rs: Vec<(u8, &[u8])> = rs.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    seeds.push(("sctp-through-dtls", with_prefix(&[3], &records(&rs))));
    seeds
}

// ------------------------------------------------------------------------------------------- SCTP

fn sctp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Tags: bit0 vtag, bit1 crc, bit2 via client (bits 4-5 PPI: 0 string, 1 binary, 2 DCEP, 3
    // empty), bit3 advance time (tag >> 6) x 200 ms.
    let chunks = sctp_chunks();
    let pkt = |c: &[u8]| sctp_packet(0, c);
    let mut seeds = Vec::new();
    seeds.push((
        "nothing-init",
        with_prefix(
            &[0],
            &records(&[(0, &sctp_init()), (2, &pkt(&chunks[6].1)), (0x48, &[])]),
        ),
    ));
    let fixed: Vec<(u8, Vec<u8>)> = chunks.iter().map(|(_, c)| (3u8, pkt(c))).collect();
    let fixed: Vec<(u8, &[u8])> = fixed.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    seeds.push(("init-sent-chunks", with_prefix(&[1], &records(&fixed))));
    seeds.push(("established-chunks", with_prefix(&[2], &records(&fixed))));
    let open = encode_dcep_open(&DcepOpen {
        channel_type: 0,
        priority: 256,
        reliability: 0,
        label: "JVB data channel".into(),
        protocol: String::new(),
    });
    let text = br#"{"colibriClass":"ReceiverVideoConstraints","lastN":2}"#;
    seeds.push((
        "established-open-and-talk",
        with_prefix(
            &[2],
            &records(&[
                (0x24, &open),
                (0x04, text),
                (0x14, &[1, 2, 3]),
                (0x34, &[0]),
                (0xCC, text),
            ]),
        ),
    ));
    let reconfig = &chunks
        .iter()
        .find(|(n, _)| *n == "reconfig")
        .expect("reconfig")
        .1;
    seeds.push((
        "channel-open-reset",
        with_prefix(
            &[3],
            &records(&[
                (0x04, text),
                (3, &pkt(reconfig)),
                (0x04, text),
                (0x48, &[]),
                (0x88, &[]),
            ]),
        ),
    ));
    seeds.push((
        "channel-open-abort",
        with_prefix(&[3], &records(&[(3, &pkt(&chunks[4].1)), (0x04, text)])),
    ));
    seeds
}

// -------------------------------------------------------------------------------------- RTP/RTCP

/// An RTP packet: `ext` = (profile, element bytes unpadded). One argument per header field.
#[allow(clippy::too_many_arguments)]
fn rtp_packet(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    csrcs: &[u32],
    ext: Option<(u16, &[u8])>,
    payload: &[u8],
    padding: u8,
) -> Vec<u8> {
    let mut v = vec![
        0x80 | if ext.is_some() { 0x10 } else { 0 }
            | if padding > 0 { 0x20 } else { 0 }
            | csrcs.len() as u8,
        pt,
    ];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    for c in csrcs {
        v.extend_from_slice(&c.to_be_bytes());
    }
    if let Some((profile, data)) = ext {
        let mut d = data.to_vec();
        while !d.len().is_multiple_of(4) {
            d.push(0);
        }
        v.extend_from_slice(&profile.to_be_bytes());
        v.extend_from_slice(&((d.len() / 4) as u16).to_be_bytes());
        v.extend_from_slice(&d);
    }
    v.extend_from_slice(payload);
    if padding > 0 {
        v.resize(v.len() + usize::from(padding) - 1, 0);
        v.push(padding);
    }
    v
}

/// One-byte extensions: audio level (id 1) and transport-cc (id 5).
fn audio_exts(level: u8, tcc: u16) -> Vec<u8> {
    let t = tcc.to_be_bytes();
    vec![
        (AUDIO_LEVEL_ID << 4),
        0x80 | level,
        (TCC_ID << 4) | 1,
        t[0],
        t[1],
    ]
}

fn tcc_ext(tcc: u16) -> Vec<u8> {
    let t = tcc.to_be_bytes();
    vec![(TCC_ID << 4) | 1, t[0], t[1]]
}

/// A VP8 payload: descriptor with PictureID (15 bit), TL0PICIDX and TID, and a frame header.
fn vp8_payload(pid: u16, tl0: u8, tid: u8, start: bool, key: bool) -> Vec<u8> {
    let mut p = Vec::new();
    Descriptor {
        start_of_partition: start,
        partition_id: 0,
        non_reference: false,
        picture_id: Some((pid, true)),
        tl0picidx: Some(tl0),
        tid: Some((tid, tid > 0)),
        key_idx: None,
    }
    .write(&mut p);
    if start {
        write_frame_header(&mut p, key, 640, 360);
    }
    p.extend_from_slice(&[0xAA; 40]);
    p
}

fn rtp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // cfg: keep (1->1), (5->3); tcc_out; flags; padding; RTX PT; tcc number.
    let cfg = |tcc_out: u8, two: u8| [1, 1, 5, 3, tcc_out, two, 4, RTX, 0x12, 0x34];
    let mut two_byte = vec![20u8, 20];
    two_byte.extend_from_slice(&[7; 20]);
    two_byte.extend_from_slice(&[5, 2, 0, 9]);
    vec![
        (
            "opus-levels",
            with_prefix(
                &cfg(5, 0),
                &rtp_packet(
                    OPUS,
                    1,
                    960,
                    BASE_A + 1,
                    &[],
                    Some((0xBEDE, &audio_exts(30, 7))),
                    &[1; 60],
                    0,
                ),
            ),
        ),
        (
            "vp8-two-byte",
            with_prefix(
                &cfg(20, 1),
                &rtp_packet(
                    VP8,
                    2,
                    3000,
                    BASE_A + 10,
                    &[],
                    Some((0x1000, &two_byte)),
                    &vp8_payload(5, 1, 0, true, true),
                    0,
                ),
            ),
        ),
        (
            "csrcs-padding",
            with_prefix(
                &cfg(5, 0),
                &rtp_packet(
                    VP8,
                    3,
                    3000,
                    BASE_A + 11,
                    &[9, 10],
                    Some((0xBEDE, &tcc_ext(8))),
                    &[2; 30],
                    7,
                ),
            ),
        ),
        (
            "other-profile",
            with_prefix(
                &cfg(0, 0),
                &rtp_packet(VP8, 4, 0, 5, &[], Some((0xABCD, &[1, 2, 3, 4])), &[3; 8], 0),
            ),
        ),
        (
            "padding-only",
            with_prefix(
                &cfg(15, 1),
                &rtp_packet(
                    RTX,
                    5,
                    0,
                    BASE_A + 20,
                    &[],
                    Some((0xBEDE, &tcc_ext(9))),
                    &[],
                    200,
                ),
            ),
        ),
        (
            "reserved-id-15",
            with_prefix(
                &cfg(5, 0),
                &rtp_packet(
                    OPUS,
                    6,
                    0,
                    7,
                    &[],
                    Some((0xBEDE, &[0x10, 1, 0xF0, 0, 0, 0, 0x51, 2])),
                    &[4],
                    0,
                ),
            ),
        ),
        (
            "bare",
            with_prefix(&cfg(0, 0), &rtp_packet(0, 0, 0, 0, &[], None, &[], 0)),
        ),
    ]
}

fn tcc_feedback(base: u16, arrivals: &[(u16, i64)]) -> Vec<u8> {
    let mut b = FeedbackBuilder::new(1200);
    b.reset(1, BASE_A + 10, base, 128_000, 3);
    for &(seq, t) in arrivals {
        b.add_received(seq, t);
    }
    let mut out = Vec::new();
    b.write(&mut out);
    out
}

fn rtcp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let block = |ssrc: u32| ReportBlock {
        ssrc,
        fraction_lost: 12,
        cumulative_lost: -3,
        extended_highest_seq: 70_000,
        jitter: 40,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 655,
    };
    let mut sr = Vec::new();
    write_sr(
        &mut sr,
        &SenderInfo {
            ssrc: BASE_A + 1,
            ntp: 0xE000_0000_8000_0000,
            rtp_timestamp: 48_000,
            packet_count: 50,
            octet_count: 4000,
        },
        &[block(BASE_B + 1)],
    );
    write_sdes_cname(&mut sr, BASE_A + 1, "cname-a");
    let mut rr = Vec::new();
    write_rr(
        &mut rr,
        BASE_B + 1,
        &[block(BASE_A + 1), block(BASE_A + 10)],
    );
    let mut nack = Vec::new();
    write_nack(
        &mut nack,
        BASE_B + 1,
        BASE_A + 10,
        &[100, 101, 105, 130, 65535, 2],
    );
    let mut pli = Vec::new();
    write_pli(&mut pli, BASE_B + 1, BASE_A + 10);
    let mut fir = Vec::new();
    write_fir(&mut fir, BASE_B + 1, BASE_A + 11, 4);
    let mut remb = Vec::new();
    write_remb(
        &mut remb,
        BASE_B + 1,
        1_500_000,
        &[BASE_A + 10, BASE_A + 11],
    );
    let tcc = tcc_feedback(
        10,
        &[
            (10, 128_000),
            (11, 129_000),
            (14, 200_000),
            (15, 140_000),
            (300, 3_000_000),
        ],
    );
    let mut bye = Vec::new();
    write_bye(&mut bye, &[BASE_A + 1, BASE_A + 10]);
    let xr = vec![0x80, rtcp::PT_XR, 0, 2, 0, 0, 0, 1, 4, 0, 0, 0];
    let app = vec![0x81, rtcp::PT_APP, 0, 2, 0, 0, 0, 1, b'q', b'o', b'e', b'!'];
    let padded = vec![0xA0, rtcp::PT_RR, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
    let mut all = sr.clone();
    for p in [&rr, &nack, &pli, &fir, &remb, &tcc, &bye, &xr, &app] {
        all.extend_from_slice(p);
    }
    vec![
        ("sr-sdes", sr),
        ("rr", rr),
        ("nack", nack),
        ("pli", pli),
        ("fir", fir),
        ("remb", remb),
        ("transport-cc", tcc),
        ("bye", bye),
        ("xr", xr),
        ("app", app),
        ("padding", padded),
        ("compound-all", all),
    ]
}

fn vp8_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let d = |pic: Option<(u16, bool)>,
             tl0: Option<u8>,
             tid: Option<(u8, bool)>,
             key_idx: Option<u8>| {
        let mut p = Vec::new();
        Descriptor {
            start_of_partition: true,
            partition_id: 0,
            non_reference: false,
            picture_id: pic,
            tl0picidx: tl0,
            tid,
            key_idx,
        }
        .write(&mut p);
        write_frame_header(&mut p, true, 1280, 720);
        p.extend_from_slice(&[0; 8]);
        p
    };
    let cfg = [0x12u8, 0x34, 9];
    vec![
        (
            "chrome-keyframe",
            with_prefix(
                &cfg,
                &d(Some((0x1234, true)), Some(77), Some((2, true)), None),
            ),
        ),
        (
            "short-pid",
            with_prefix(&cfg, &d(Some((5, false)), None, None, None)),
        ),
        (
            "key-idx-only",
            with_prefix(&cfg, &d(None, None, None, Some(3))),
        ),
        (
            "no-extension",
            with_prefix(&cfg, &d(None, None, None, None)),
        ),
        (
            "delta-frame",
            with_prefix(&cfg, &vp8_payload(7, 2, 1, true, false)),
        ),
        (
            "continuation",
            with_prefix(&cfg, &vp8_payload(7, 2, 1, false, false)),
        ),
        (
            "h264-stap-a",
            with_prefix(&cfg, &[0x18, 0, 2, 0x67, 0x00, 0, 1, 0x68]),
        ),
        ("h264-fu-a", with_prefix(&cfg, &[0x7c, 0x85, 1])),
        ("x-only", with_prefix(&cfg, &[0x90, 0x00, 0x9d])),
    ]
}

fn dcep_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let open = |channel_type: u8, reliability: u32, label: &str, protocol: &str| {
        encode_dcep_open(&DcepOpen {
            channel_type,
            priority: 256,
            reliability,
            label: label.into(),
            protocol: protocol.into(),
        })
    };
    vec![
        ("jvb", open(0, 0, "JVB data channel", "")),
        (
            "protocol",
            open(
                0,
                0,
                "JVB data channel",
                "http://jitsi.org/protocols/colibri",
            ),
        ),
        ("unordered-partial", open(0x81, 3, "x", "")),
        ("empty", open(0, 0, "", "")),
    ]
}

// -------------------------------------------------------------------------------------------- SFU

fn sfu_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Tags: low 3 bits op (0 rtp, 1 rtp with SSRC pick, 2 rtcp, 3 text, 4 time, 5 event, 6 bwe),
    // bit 3 = from b.
    let pick = |i: u8, pkt: Vec<u8>| with_prefix(&[i], &pkt);
    let mut simulcast = Vec::new();
    for seq in 0..6u16 {
        for (layer, i) in [(0u16, 1u8), (1, 2), (2, 3)] {
            let p = rtp_packet(
                VP8,
                seq + 100 * layer,
                3000 * u32::from(seq),
                0,
                &[],
                Some((0xBEDE, &tcc_ext(seq * 3 + layer))),
                &vp8_payload(seq, seq as u8, 0, true, seq == 0),
                0,
            );
            simulcast.push((1u8, pick(i, p)));
        }
        let audio = rtp_packet(
            OPUS,
            seq,
            960 * u32::from(seq),
            0,
            &[],
            Some((0xBEDE, &audio_exts(20, 50 + seq))),
            &[9; 40],
            0,
        );
        simulcast.push((1, pick(0, audio)));
        simulcast.push((4, 20u16.to_be_bytes().to_vec()));
    }
    let constraints = br#"{"colibriClass":"ReceiverVideoConstraints","lastN":-1,"onStageSources":["aaaa1111-v0"],"defaultConstraints":{"maxHeight":720},"constraints":{}}"#;
    let mut nack = Vec::new();
    write_nack(&mut nack, BASE_B + 1, BASE_A + 10, &[1, 2, 3]);
    let mut pli = Vec::new();
    write_pli(&mut pli, BASE_B + 1, BASE_A + 10);
    let mut remb = Vec::new();
    write_remb(&mut remb, BASE_B + 1, 300_000, &[BASE_A + 10]);
    let tcc = tcc_feedback(0, &[(0, 128_000), (1, 130_000), (2, 131_000), (5, 140_000)]);
    let mut rr = Vec::new();
    write_rr(
        &mut rr,
        BASE_B + 1,
        &[ReportBlock {
            ssrc: BASE_A + 1,
            ..ReportBlock::default()
        }],
    );
    let rtx = rtp_packet(
        RTX,
        7,
        3000,
        0,
        &[],
        Some((0xBEDE, &tcc_ext(90))),
        &[0, 1, 0x90, 0x80, 0, 1, 2, 3],
        0,
    );
    let mut ops: Vec<(u8, Vec<u8>)> = vec![(8 | 3, constraints.to_vec())];
    ops.extend(simulcast);
    ops.extend([
        (8 | 2, nack),
        (8 | 2, pli),
        (8 | 2, remb),
        (8 | 2, tcc),
        (8 | 2, rr),
        (1, pick(4, rtx)),
        (4, 1000u16.to_be_bytes().to_vec()),
        (8 | 6, 250_000u32.to_be_bytes().to_vec()),
        (
            3,
            br#"{"colibriClass":"EndpointMessage","to":"bbbb2222","msgPayload":{"x":1}}"#.to_vec(),
        ),
        (
            3,
            br#"{"colibriClass":"LastNChangedEvent","lastN":0}"#.to_vec(),
        ),
        (8 | 5, vec![2]),
        (4, 60_000u16.to_be_bytes().to_vec()),
        (5, vec![3]),
        (4, 65_000u16.to_be_bytes().to_vec()),
    ]);
    let forward: Vec<(u8, &[u8])> = ops.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let channel: Vec<(u8, Vec<u8>)> = read_seeds("bridge_channel")
        .into_iter()
        .map(|(_, j)| (8 | 3, j.into_bytes()))
        .collect();
    let channel: Vec<(u8, &[u8])> = channel.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    let rtcp: Vec<(u8, Vec<u8>)> = rtcp_seeds().into_iter().map(|(_, p)| (8 | 2, p)).collect();
    let rtcp: Vec<(u8, &[u8])> = rtcp.iter().map(|(t, p)| (*t, p.as_slice())).collect();
    vec![
        ("forwarding", records(&forward)),
        ("channel-messages", records(&channel)),
        ("rtcp-from-b", records(&rtcp)),
    ]
}

// ----------------------------------------------------------------------------------------- XMPP

fn colibri2_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let m = bridge_plane::MEETING_ID;
    let c = |xml: String| ('C', xml);
    let transport = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><endpoint id="aaaa1111"><transport><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="peer" pwd="peerpasswordpeerpassword"><rtcp-mux/><fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">DB:9D:FA:6D:7D:E8:B3:A5:C0:CD:14:56:E8:A3:87:FE:D7:9F:19:29:B9:55:92:46:5A:B1:54:FD:4D:47:08:03</fingerprint><candidate component="1" foundation="1" generation="0" id="h1" ip="127.0.0.1" network="0" port="40000" priority="2130706431" protocol="udp" type="host"/><candidate component="1" foundation="2" generation="0" id="h2" ip="224.0.0.1" network="0" port="40000" priority="2130706430" protocol="udp" type="host"/><candidate component="1" foundation="3" generation="0" id="h3" ip="0.0.0.0" network="0" port="1" priority="1" protocol="udp" type="host"/><candidate component="1" foundation="4" generation="0" id="h4" ip="::1" network="0" port="40001" priority="2" protocol="tcp" type="host" tcptype="passive"/></transport></transport></endpoint></conference-modify>"#
    );
    let sources = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><endpoint id="bbbb2222"><sources><media-source type="audio" id="bbbb2222-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="2001" name="bbbb2222-a0"/></media-source></sources><force-mute audio="true" video="false"/></endpoint></conference-modify>"#
    );
    let third = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><endpoint id="cccc3333" create="true" muc-role="visitor"><media type="audio"><payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="111" name="opus" clockrate="48000" channels="2"/></media><transport ice-controlling="true"/><initial-last-n value="1"/></endpoint></conference-modify>"#
    );
    let expire_third = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><endpoint id="cccc3333" expire="true"/></conference-modify>"#
    );
    let expire_both = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><endpoint id="aaaa1111" expire="true"/><endpoint id="bbbb2222" expire="true"/></conference-modify>"#
    );
    let expire_conf =
        format!(r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}" expire="true"/>"#);
    let relay = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{m}"><relay id="relay1" create="true"><transport/></relay></conference-modify>"#
    );
    let unknown = r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="nope"><endpoint id="x" expire="true"/></conference-modify>"#.to_owned();
    let mut seeds = vec![
        ("transport-update", join_text_ops([c(transport.clone())])),
        ("sources-mute", join_text_ops([c(sources)])),
        (
            "third-endpoint",
            join_text_ops([c(third.clone()), c(expire_third)]),
        ),
        (
            "expire-endpoints",
            join_text_ops([c(expire_both), c(third.clone())]),
        ),
        (
            "expire-conference",
            join_text_ops([c(expire_conf), c(transport)]),
        ),
        ("relay-unknown", join_text_ops([c(relay), c(unknown)])),
        (
            "shutting-down",
            join_text_ops([
                (
                    'S',
                    bridge_plane::create_requests("other-meeting")[0].clone(),
                ),
                ('S', third),
            ]),
        ),
    ];
    let (_, create) = read_seeds("xml_stanzas")
        .into_iter()
        .find(|(n, _)| n.contains("endpoint_create"))
        .expect("endpoint_create seed");
    seeds.push(("focus-create", join_text_ops([('C', create)])));
    seeds
        .into_iter()
        .map(|(n, s)| (n, s.into_bytes()))
        .collect()
}

fn presence(room: &str, nick: &str, kind: Option<&str>, inner: &str) -> String {
    let t = kind.map(|k| format!(r#" type="{k}""#)).unwrap_or_default();
    format!(
        r#"<presence xmlns="jabber:client"{t} from="{room}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="{nick}@meet.example/res"/></x>{inner}</presence>"#
    )
}

fn focus_presence_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let p = |s: String| ('P', s);
    let t = |n: &'static str| ('T', n.to_owned());
    let self_gone = format!(
        r#"<presence xmlns="jabber:client" type="unavailable" from="{ROOM}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="none"/><status code="110"/><status code="307"/></x></presence>"#
    );
    let brewery_focus_gone = format!(
        r#"<presence xmlns="jabber:client" type="unavailable" from="{BREWERY}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="none"/><status code="110"/></x></presence>"#
    );
    let shutting = focus_sim::bridge_presence("jvb1", 0.2).replace(
        r#"name="shutting_down" value="false""#,
        r#"name="shutting_down" value="true""#,
    );
    let owner_startmuted = format!(
        r#"<presence xmlns="jabber:client" from="{ROOM}/alice"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator"/></x><startmuted xmlns="http://jitsi.org/jitmeet/start-muted" audio="true" video="true"/></presence>"#
    );
    let error = format!(
        r#"<presence xmlns="jabber:client" type="error" from="{ROOM}/carol"><error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>"#
    );
    let many: Vec<(char, String)> = (0..40)
        .map(|i| p(focus_sim::member_presence(ROOM, &format!("m{i}"))))
        .collect();
    let seeds: Vec<(&str, Vec<(char, String)>)> = vec![
        (
            "join-leave",
            vec![
                p(focus_sim::member_presence(ROOM, "carol")),
                t("2"),
                p(presence(ROOM, "carol", Some("unavailable"), "")),
            ],
        ),
        (
            "alone",
            vec![
                p(presence(ROOM, "bob", Some("unavailable"), "")),
                t("30"),
                t("60"),
            ],
        ),
        (
            "bridge-leaves",
            vec![
                p(presence(BREWERY, "jvb1", Some("unavailable"), "")),
                t("1"),
                p(focus_sim::bridge_presence("jvb2", 0.5)),
                t("5"),
            ],
        ),
        ("bridge-shutting-down", vec![p(shutting), t("10")]),
        ("kicked", vec![p(self_gone), t("20")]),
        (
            "brewery-left",
            vec![
                p(brewery_focus_gone),
                t("15"),
                p(focus_sim::bridge_presence("jvb1", 0.1)),
            ],
        ),
        (
            "owner-startmuted",
            vec![
                p(owner_startmuted),
                p(focus_sim::member_presence(ROOM, "dave")),
            ],
        ),
        ("error-presence", vec![p(error)]),
        (
            "other-room",
            vec![p(focus_sim::member_presence(
                "elsewhere@conference.meet.example",
                "x",
            ))],
        ),
        ("many-members", many),
        ("time", vec![t("3600")]),
    ];
    seeds
        .into_iter()
        .map(|(n, ops)| {
            (
                n,
                join_text_ops(ops.iter().map(|(c, s)| (*c, s.as_str()))).into_bytes(),
            )
        })
        .collect()
}

fn focus_iq_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sim = FocusSim::with_conference();
    let sid = sim.sids.get("alice").cloned().unwrap_or_default();
    let from = format!("{ROOM}/alice");
    // The Jingle seeds of xml_stanzas, addressed to this conference from alice.
    let jingle: Vec<(String, String)> = read_seeds("xml_stanzas")
        .into_iter()
        .filter(|(_, x)| x.contains("<jingle"))
        .map(|(n, x)| {
            let x = x
                .replace("bluewhale42@muc.meet.jitsi", ROOM)
                .replace("9cnd1l8u2l3ta", &esc(&sid))
                .replace("focus@auth.meet.jitsi", "focus@auth.meet.example")
                .replace(
                    r#"<iq xmlns="jabber:client""#,
                    &format!(r#"<iq xmlns="jabber:client" from="{from}""#),
                );
            (n, x)
        })
        .collect();
    let iq = |from: &str, kind: &str, id: &str, payload: &str| {
        format!(
            r#"<iq xmlns="jabber:client" type="{kind}" id="{id}" from="{from}" to="focus@auth.meet.example/focus">{payload}</iq>"#
        )
    };
    let conference = |room: &str| {
        format!(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m2"><property name="startAudioMuted" value="1"/></conference>"#
        )
    };
    let mute = iq(
        &from,
        "set",
        "m1",
        &format!(r#"<mute xmlns="http://jitsi.org/jitmeet/audio" jid="{ROOM}/bob">true</mute>"#),
    );
    let mute_video = iq(
        &from,
        "set",
        "m2",
        &format!(
            r#"<mute-video xmlns="http://jitsi.org/jitmeet/video" jid="{ROOM}/bob">true</mute-video>"#
        ),
    );
    let disco = iq(
        &from,
        "get",
        "d1",
        r#"<query xmlns="http://jabber.org/protocol/disco#info"/>"#,
    );
    let ping = iq(&from, "get", "p1", r#"<ping xmlns="urn:xmpp:ping"/>"#);
    let brewery_request = iq("u9@meet.example/x", "set", "b1", &conference(BREWERY));
    let new_room = "room2@conference.meet.example";
    let new_request = iq("u2@meet.example/y", "set", "r2", &conference(new_room));
    let bad_alloc = r#"<conference-modified xmlns="jitsi:colibri2" meeting-id="m"><endpoint id="carol"/></conference-modified>"#;
    let error = r#"<error type="wait"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">busy</text></error>"#;
    let carol = focus_sim::member_presence(ROOM, "carol");
    let mut seeds: Vec<(String, Vec<(char, String)>)> = jingle
        .into_iter()
        .map(|(n, x)| {
            (
                n.trim_start_matches("seed-")
                    .trim_end_matches(".xml")
                    .to_owned(),
                vec![('I', x)],
            )
        })
        .collect();
    seeds.extend([
        ("mute".to_owned(), vec![('I', mute), ('I', mute_video)]),
        ("disco-ping".to_owned(), vec![('I', disco), ('I', ping)]),
        (
            "brewery-conference".to_owned(),
            vec![('C', brewery_request.clone()), ('I', brewery_request)],
        ),
        (
            "new-room".to_owned(),
            vec![
                ('C', new_request),
                ('P', focus_sim::member_presence(new_room, "u2")),
                ('P', focus_sim::member_presence(new_room, "u3")),
            ],
        ),
        (
            "bad-allocation".to_owned(),
            vec![('A', bad_alloc.to_owned()), ('P', carol.clone())],
        ),
        (
            "allocation-error".to_owned(),
            vec![('E', error.to_owned()), ('P', carol.clone())],
        ),
        (
            "allocation-timeout".to_owned(),
            vec![
                ('X', String::new()),
                ('P', carol.clone()),
                ('T', "20".into()),
            ],
        ),
        (
            "reconnect".to_owned(),
            vec![
                ('o', String::new()),
                ('T', "5".into()),
                ('O', String::new()),
            ],
        ),
        (
            "health".to_owned(),
            vec![
                ('E', error.to_owned()),
                ('T', "11".into()),
                ('X', String::new()),
                ('X', String::new()),
                ('T', "30".into()),
            ],
        ),
    ]);
    seeds
        .into_iter()
        .map(|(n, ops)| {
            let name: &'static str = Box::leak(n.into_boxed_str());
            (
                name,
                join_text_ops(ops.iter().map(|(c, s)| (*c, s.as_str()))).into_bytes(),
            )
        })
        .collect()
}

fn xml_extra_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let iq = |payload: &str| {
        format!(
            r#"<iq xmlns="jabber:client" type="set" id="x1" from="focus@auth.meet.example/focus" to="jvb@auth.meet.example/jvb">{payload}</iq>"#
        )
    };
    vec![
        ("presence-member.xml", focus_sim::member_presence(ROOM, "alice")),
        ("presence-bridge.xml", focus_sim::bridge_presence("jvb1", 0.3)),
        ("iq-healthcheck.xml", iq(r#"<healthcheck xmlns="http://jitsi.org/protocol/healthcheck"/>"#)),
        ("iq-graceful-shutdown.xml", iq(r#"<graceful-shutdown xmlns="http://jitsi.org/protocol/colibri"/>"#)),
        ("iq-force-shutdown.xml", iq(r#"<force-shutdown xmlns="http://jitsi.org/protocol/colibri"/>"#)),
        (
            "iq-colibri2-error.xml",
            r#"<iq xmlns="jabber:client" type="error" id="x2"><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><error xmlns="jitsi:colibri2" reason="conference_not_found"/></error></iq>"#.to_owned(),
        ),
        ("iq-mute.xml", iq(&format!(r#"<mute xmlns="http://jitsi.org/jitmeet/audio" jid="{ROOM}/bob">true</mute>"#))),
        ("startmuted.xml", r#"<startmuted xmlns="http://jitsi.org/jitmeet/start-muted" audio="true" video="false"/>"#.to_owned()),
        ("sctpmap.xml", r#"<sctpmap xmlns="urn:xmpp:jingle:transports:dtls-sctp:1" number="5000" protocol="webrtc-datachannel" streams="1024"/>"#.to_owned()),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect()
}

fn colibri_ws_seeds() -> Vec<(&'static str, Vec<u8>)> {
    /// A masked client frame with a zero key (so the payload stays readable).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n < 65536 => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }
    let mut seeds: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut all = Vec::new();
    for (n, json) in read_seeds("bridge_channel") {
        let f = frame(true, 1, json.as_bytes());
        all.extend_from_slice(&f);
        let name: &'static str = Box::leak(
            n.trim_start_matches("seed-")
                .trim_end_matches(".json")
                .to_owned()
                .into_boxed_str(),
        );
        seeds.push((name, f));
    }
    seeds.push(("all-messages", all));
    let relay = br#"{"colibriClass":"EndpointMessage","to":"bbbb2222","msgPayload":{"hello":1}}"#;
    let mut fragmented = frame(false, 1, &relay[..20]);
    fragmented.extend(frame(true, 0, &relay[20..]));
    seeds.push(("fragmented", fragmented));
    let mut control = frame(true, 9, b"ping");
    control.extend(frame(true, 2, &[1, 2, 3]));
    control.extend(frame(true, 1, &[0xff, 0xfe]));
    control.extend(frame(true, 8, &[0x03, 0xe8]));
    seeds.push(("control-frames", control));
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0, b'{']);
    seeds.push(("huge-length", huge));
    seeds.push(("unmasked", vec![0x81, 0x02, b'{', b'}']));
    seeds
}

fn main() {
    let stun = stun_seeds();
    let nominate = stun[0].1[1..].to_vec();
    write("stun", stun);
    write("demux", demux_seeds(&nominate));
    write("dtls", dtls_seeds());
    write("sctp", sctp_seeds());
    write("rtp", rtp_seeds());
    write("rtcp", rtcp_seeds());
    write("vp8", vp8_seeds());
    write("dcep", dcep_seeds());
    write("sfu", sfu_seeds());
    write("bridge_colibri2", colibri2_seeds());
    write("focus_presence", focus_presence_seeds());
    write("focus_iq", focus_iq_seeds());
    write("colibri_ws", colibri_ws_seeds());
    // xml_stanzas keeps its hand-written seeds; these are added next to them.
    let dir = corpus().join("xml_stanzas");
    for (name, bytes) in xml_extra_seeds() {
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
    println!("xml_stanzas: {} seeds", read_seeds("xml_stanzas").len());
}
