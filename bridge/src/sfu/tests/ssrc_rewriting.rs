//! SSRC rewriting through the whole core (`sfu::ssrc_slots`): a receiver created with the
//! `ssrc-rewriting` capability gets the others' media only on bridge-chosen SSRCs it was told
//! about in `VideoSourcesMap` / `AudioSourcesMap` first; a slot's new owner continues what the
//! receiver saw on it; its feedback on slot SSRCs reaches the owner; sources that go free their
//! slots.

use super::*;

const MID_ID: u8 = 10;

/// A rewriting receiver's params (base `b`), optionally with `rtp-mid-demux` and sdes:mid.
fn rewriting(h: &H, id: &str, b: u32, mid: bool) -> EndpointParams {
    let mut p = h.params(id, b);
    p.ssrc_rewriting = true;
    p.rtp_mid_demux = mid;
    if mid {
        for r in [&mut p.audio, &mut p.video] {
            r.header_extensions
                .push(RtpHdrExt::new(MID_ID, hdrext::MID));
        }
    }
    p
}

fn audio_pkt(seq: u16, ts: u32, ssrc: u32, level: u8) -> Vec<u8> {
    packet(
        OPUS,
        seq,
        ts,
        ssrc,
        &[(AUDIO_LEVEL_ID, &[level]), (TCC_ID, &[0, 1])],
        b"opus",
    )
}

/// The entries of every `class` message in `out` to `to`.
fn mapped(out: &[OwnedOutput], to: EndpointHandle, class: &str) -> Vec<Value> {
    of_class(&texts_to(out, to), class)
        .iter()
        .flat_map(|m| m["mappedSources"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn entry<'a>(v: &'a [Value], source: &str) -> &'a Value {
    v.iter()
        .find(|e| e["source"] == source)
        .unwrap_or_else(|| panic!("no mapping for {source} in {v:?}"))
}

fn ssrc_of(e: &Value) -> u32 {
    e["ssrc"].as_u64().unwrap() as u32
}

/// Index in `out` of the first output to `to` that is a text of `class` / an RTP packet on `ssrc`.
fn position(out: &[OwnedOutput], to: EndpointHandle, class: Option<&str>, ssrc: u32) -> usize {
    out.iter()
        .position(|o| match (o, class) {
            (OwnedOutput::Text { to: t, text }, Some(c)) => *t == to && text.contains(c),
            (OwnedOutput::Rtp { to: t, packet }, None) => {
                *t == to && RtpPacket::parse(packet).unwrap().ssrc() == ssrc
            }
            _ => false,
        })
        .unwrap_or_else(|| panic!("no {class:?}/{ssrc} to {to:?} in {out:?}"))
}

#[test]
fn a_rewriting_receiver_is_told_the_maps_and_gets_media_only_on_bridge_ssrcs() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let c = h.join("cccc", 3000);
    let p = rewriting(&h, "rrrr", 2000, false);
    let r = h.join_with(p);
    let out = h.take();
    // A's and C's camera were mapped when R joined, told when its channel opened.
    let video = mapped(&out, r, "VideoSourcesMap");
    let va = entry(&video, "aaaa-v0");
    assert_eq!(va["owner"], "aaaa");
    assert_eq!(va["videoType"], "CAMERA");
    assert!(
        va["rtx"]
            .as_u64()
            .is_some_and(|x| x != va["ssrc"].as_u64().unwrap())
    );
    assert!(va.get("mid").is_none(), "no mid without rtp-mid-demux");
    let vc = entry(&video, "cccc-v0");
    assert_ne!(ssrc_of(va), ssrc_of(vc));
    // No audio yet: audio slots are taken by the first packet.
    assert!(mapped(&out, r, "AudioSourcesMap").is_empty());

    let (sa, sc) = (ssrcs(1000), ssrcs(3000));
    let out = send_all(&mut h, &[a], &[1000], 7);
    let audio = mapped(&out, r, "AudioSourcesMap");
    let aa = entry(&audio, "aaaa-a0");
    assert_eq!(aa["owner"], "aaaa");
    let a_slot = ssrc_of(aa);
    assert!(!audio.iter().any(|e| e["source"] == "cccc-a0"));
    // The map first, then the packet on the slot.
    assert!(
        position(&out, r, Some("AudioSourcesMap"), 0) < position(&out, r, None, a_slot),
        "{out:?}"
    );
    assert_eq!(
        ssrcs_of(&rtp_to(&out, r)),
        sorted(vec![a_slot, ssrc_of(va)]),
        "only slot SSRCs"
    );
    // A non-rewriting receiver is unchanged: the sender's own SSRCs.
    assert_eq!(
        ssrcs_of(&rtp_to(&out, c)),
        sorted(vec![sa.audio, sa.sim[0]])
    );
    // The next packet: no new map.
    let out = send_all(&mut h, &[a, c], &[1000, 3000], 8);
    let audio = mapped(&out, r, "AudioSourcesMap");
    assert_eq!(audio.len(), 1, "only C's audio is new: {audio:?}");
    assert_eq!(audio[0]["source"], "cccc-a0");
    let got = ssrcs_of(&rtp_to(&out, r));
    assert!(
        !got.iter()
            .any(|s| [sa.audio, sa.sim[0], sc.audio, sc.sim[0]].contains(s))
    );
    assert_eq!(got.len(), 4);
    // The channel reopens: every mapping again.
    h.sfu
        .handle_transport_event(h.now, r, TransportEvent::DataChannelOpen, &mut h.out);
    let out = h.take();
    assert_eq!(mapped(&out, r, "VideoSourcesMap").len(), 2);
    assert_eq!(mapped(&out, r, "AudioSourcesMap").len(), 2);
}

#[test]
fn nothing_reaches_a_rewriting_receiver_before_its_channel_can_tell_it() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let p = rewriting(&h, "rrrr", 2000, false);
    let r = h.sfu.create_endpoint(h.now, h.conf, p, &mut h.out).unwrap();
    h.sfu
        .handle_transport_event(h.now, r, TransportEvent::Connected, &mut h.out);
    let out = send_all(&mut h, &[a], &[1000], 1);
    assert!(rtp_to(&out, r).is_empty(), "{out:?}");
    h.sfu
        .handle_transport_event(h.now, r, TransportEvent::DataChannelOpen, &mut h.out);
    let out = h.take();
    let v = ssrc_of(entry(&mapped(&out, r, "VideoSourcesMap"), "aaaa-v0"));
    let out = send_all(&mut h, &[a], &[1000], 2);
    let a_slot = ssrc_of(entry(&mapped(&out, r, "AudioSourcesMap"), "aaaa-a0"));
    assert_eq!(ssrcs_of(&rtp_to(&out, r)), sorted(vec![a_slot, v]));
}

#[test]
fn the_least_recently_used_audio_slot_changes_owner_and_continues_its_stream() {
    let mut h = H::with_config(SfuConfig {
        max_audio_ssrcs: 1,
        ..Default::default()
    });
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    let p = rewriting(&h, "rrrr", 3000, false);
    let r = h.join_with(p);
    h.take();
    let (sa, sb) = (ssrcs(1000), ssrcs(2000));
    let mut last = (0u16, 0u32);
    let mut slot = 0;
    for i in 0..5u16 {
        let out = h.rtp(
            a,
            &audio_pkt(100 + i, 48_000 + 960 * u32::from(i), sa.audio, 30),
        );
        if i == 0 {
            slot = ssrc_of(entry(&mapped(&out, r, "AudioSourcesMap"), "aaaa-a0"));
        }
        let pk = rtp_to(&out, r);
        let q = RtpPacket::parse(&pk[0]).unwrap();
        assert_eq!((q.ssrc(), q.sequence_number()), (slot, 100 + i));
        last = (q.sequence_number(), q.timestamp());
        h.now += Duration::from_millis(20);
    }
    // B speaks 200 ms after A's last packet: A's slot (the only one) is B's now, announced first.
    h.now += Duration::from_millis(180);
    let out = h.rtp(b, &audio_pkt(60_000, 7, sb.audio, 30));
    let m = mapped(&out, r, "AudioSourcesMap");
    assert_eq!(m.len(), 1);
    assert_eq!(
        (ssrc_of(&m[0]), m[0]["owner"].as_str()),
        (slot, Some("bbbb"))
    );
    assert!(position(&out, r, Some("AudioSourcesMap"), 0) < position(&out, r, None, slot));
    let q = RtpPacket::parse(&rtp_to(&out, r)[0]).unwrap().ssrc();
    assert_eq!(q, slot);
    let pk = rtp_to(&out, r);
    let q = RtpPacket::parse(&pk[0]).unwrap();
    // Sequence continues; the timestamp advances by the 200 ms since A's last packet (48 kHz).
    assert_eq!(q.sequence_number(), last.0.wrapping_add(1));
    assert_eq!(q.timestamp(), last.1.wrapping_add(200 * 48));
    let out = h.rtp(b, &audio_pkt(60_001, 967, sb.audio, 30));
    let pk = rtp_to(&out, r);
    let q = RtpPacket::parse(&pk[0]).unwrap();
    assert_eq!(q.sequence_number(), last.0.wrapping_add(2));
    assert_eq!(q.timestamp(), last.1.wrapping_add(200 * 48 + 960));
    // A again: takes the slot back (remapped, announced), B's packets are no longer forwarded.
    let out = h.rtp(a, &audio_pkt(105, 48_000 + 960 * 5, sa.audio, 30));
    assert_eq!(mapped(&out, r, "AudioSourcesMap")[0]["owner"], "aaaa");
    let out = h.rtp(b, &audio_pkt(60_002, 1927, sb.audio, 30));
    let m = mapped(&out, r, "AudioSourcesMap");
    assert_eq!(m[0]["owner"], "bbbb", "B takes it again when it speaks");
}

/// R (one video slot) watches A, then puts B on stage.
fn one_video_slot() -> (H, [EndpointHandle; 3], u32) {
    let mut h = H::with_config(SfuConfig {
        max_video_ssrcs: 1,
        ..Default::default()
    });
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    let p = rewriting(&h, "rrrr", 3000, false);
    let r = h.join_with(p);
    let out = h.take();
    let v = mapped(&out, r, "VideoSourcesMap");
    assert_eq!(v.len(), 1, "one slot: {v:?}");
    assert_eq!(v[0]["source"], "aaaa-v0");
    (h, [a, b, r], ssrc_of(&v[0]))
}

#[test]
fn a_video_slot_changes_owner_at_a_keyframe_without_a_jump_for_the_receiver() {
    let (mut h, [a, b, r], slot) = one_video_slot();
    let (sa, sb) = (ssrcs(1000), ssrcs(2000));
    let mut last = None;
    for i in 0..5u16 {
        let out = h.rtp(
            a,
            &vp8_frame(
                200 + i,
                90_000 + 3000 * u32::from(i),
                sa.sim[0],
                &[],
                b"a",
                i == 0,
            ),
        );
        let pk = rtp_to(&out, r);
        let q = RtpPacket::parse(&pk[0]).unwrap();
        assert_eq!(q.ssrc(), slot);
        let d = super::super::vp8::parse(q.payload()).unwrap();
        last = Some((
            q.sequence_number(),
            q.timestamp(),
            d.picture_id,
            d.tl0picidx,
        ));
        h.now += Duration::from_millis(33);
    }
    let (seq, ts, pic, tl0) = last.unwrap();
    // B on stage with last-N 1: the slot is B's now.
    let out = h.msg(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","lastN":1,
               "onStageSources":["bbbb-v0"],"defaultConstraints":{"maxHeight":180}}),
    );
    let m = mapped(&out, r, "VideoSourcesMap");
    assert_eq!(m.len(), 1);
    assert_eq!(
        (ssrc_of(&m[0]), m[0]["source"].as_str()),
        (slot, Some("bbbb-v0"))
    );
    // A's packets no longer reach R; B's delta frame neither (a keyframe starts the mapping).
    h.now += Duration::from_millis(67);
    assert!(
        rtp_to(
            &h.rtp(a, &vp8_frame(205, 105_000, sa.sim[0], &[], b"a", false)),
            r
        )
        .is_empty()
    );
    assert!(
        rtp_to(
            &h.rtp(b, &vp8_frame(9000, 5, sb.sim[0], &[], b"b", false)),
            r
        )
        .is_empty()
    );
    let out = h.rtp(b, &vp8_frame(9001, 3005, sb.sim[0], &[], b"b", true));
    let pk = rtp_to(&out, r);
    let q = RtpPacket::parse(&pk[0]).unwrap();
    let d = super::super::vp8::parse(q.payload()).unwrap();
    assert_eq!(q.ssrc(), slot);
    assert_eq!(q.sequence_number(), seq.wrapping_add(1));
    assert_eq!(
        q.timestamp(),
        ts.wrapping_add(100 * 90),
        "100 ms later at 90 kHz"
    );
    assert_eq!(d.picture_id, pic.map(|p| (p + 1) & 0x7fff));
    assert_eq!(d.tl0picidx, tl0.map(|t| t.wrapping_add(1)));
    // The next frame follows on.
    let out = h.rtp(b, &vp8_frame(9002, 6005, sb.sim[0], &[], b"b", false));
    let pk = rtp_to(&out, r);
    let q = RtpPacket::parse(&pk[0]).unwrap();
    assert_eq!(q.sequence_number(), seq.wrapping_add(2));
    assert_eq!(q.timestamp(), ts.wrapping_add(100 * 90 + 3000));
}

#[test]
fn feedback_on_a_slot_reaches_its_current_owner() {
    let (mut h, [a, b, r], slot) = one_video_slot();
    let (sa, sb) = (ssrcs(1000), ssrcs(2000));
    let mut to_r = Vec::new();
    for i in 0..3u16 {
        let out = h.rtp(
            a,
            &vp8_frame(
                300 + i,
                3000 * u32::from(i),
                sa.sim[0],
                &[(TCC_ID, &[0, 1])],
                b"a",
                i == 0,
            ),
        );
        to_r.extend(rtp_to(&out, r));
    }
    h.advance(Duration::from_secs(1));
    h.take();
    // PLI on the slot: to A, for A's SSRC.
    let mut pli = Vec::new();
    rtcp::write_pli(&mut pli, 0x3333, slot);
    let out = h.rtcp(r, &pli);
    let to_a = rtcp_to(&out, a);
    assert_eq!(to_a.len(), 1, "{out:?}");
    assert!(matches!(
        Compound::parse(&to_a[0]).unwrap().packets().next(),
        Some(Packet::Pli(p)) if p.media_ssrc == sa.sim[0]
    ));
    // NACK on the slot: RTX on the slot's RTX SSRC with the sequence number R saw.
    let rtx_slot = {
        let st = h.sfu.conf(h.conf).unwrap();
        let rw = st
            .endpoint(r)
            .unwrap()
            .downlink
            .rewriting
            .as_deref()
            .unwrap();
        rw.video.slots()[0].rtx
    };
    let seen = RtpPacket::parse(&to_r[1]).unwrap().sequence_number();
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 0x3333, slot, &[seen]);
    let out = h.rtcp(r, &nack);
    let re = rtp_to(&out, r);
    assert_eq!(re.len(), 1);
    let q = RtpPacket::parse(&re[0]).unwrap();
    assert_eq!(q.ssrc(), rtx_slot);
    assert_eq!(&q.payload()[..2], &seen.to_be_bytes());
    let rtx_seq = q.sequence_number();
    // A sender report of A: on the slot, A's timestamp as R got it.
    let mut sr = Vec::new();
    rtcp::write_sr(
        &mut sr,
        &rtcp::SenderInfo {
            ssrc: sa.sim[0],
            ntp: 1 << 40,
            rtp_timestamp: 3000,
            packet_count: 3,
            octet_count: 30,
        },
        &[],
    );
    let out = h.rtcp(a, &sr);
    let got = rtcp_to(&out, r);
    let Some(Packet::SenderReport(s)) = Compound::parse(&got[0]).unwrap().packets().next() else {
        panic!("{out:?}")
    };
    let ts1 = RtpPacket::parse(&to_r[1]).unwrap().timestamp();
    assert_eq!((s.ssrc(), s.rtp_timestamp()), (slot, ts1));

    // B takes the slot: R's feedback on it goes to B now.
    h.msg(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","lastN":1,"onStageSources":["bbbb-v0"]}),
    );
    h.now += Duration::from_millis(500);
    let out = h.rtp(
        b,
        &vp8_frame(50, 1, sb.sim[0], &[(TCC_ID, &[0, 2])], b"b", true),
    );
    let b_pk = rtp_to(&out, r);
    let b_first = RtpPacket::parse(&b_pk[0]).unwrap();
    h.now += Duration::from_millis(500);
    h.take();
    let out = h.rtcp(r, &pli);
    assert!(rtcp_to(&out, a).is_empty());
    assert!(matches!(
        Compound::parse(&rtcp_to(&out, b)[0]).unwrap().packets().next(),
        Some(Packet::Pli(p)) if p.media_ssrc == sb.sim[0]
    ));
    // A NACK for A's packet on the slot: superseded; for B's: answered, the RTX sequence goes on.
    h.now += Duration::from_millis(100);
    let before = h.drop_count(DropReason::NackSuperseded);
    let out = h.rtcp(r, &nack);
    assert!(rtp_to(&out, r).is_empty());
    assert_eq!(h.drop_count(DropReason::NackSuperseded), before + 1);
    let mut nack_b = Vec::new();
    rtcp::write_nack(&mut nack_b, 0x3333, slot, &[b_first.sequence_number()]);
    let re = rtp_to(&h.rtcp(r, &nack_b), r);
    let q = RtpPacket::parse(&re[0]).unwrap();
    assert_eq!(
        (q.ssrc(), q.sequence_number()),
        (rtx_slot, rtx_seq.wrapping_add(1))
    );
    // B's SR: on B's timeline as R gets it.
    let mut sr = Vec::new();
    rtcp::write_sr(
        &mut sr,
        &rtcp::SenderInfo {
            ssrc: sb.sim[0],
            ntp: 2 << 40,
            rtp_timestamp: 1,
            ..Default::default()
        },
        &[],
    );
    let got = rtcp_to(&h.rtcp(b, &sr), r);
    let Some(Packet::SenderReport(s)) = Compound::parse(&got[0]).unwrap().packets().next() else {
        panic!()
    };
    assert_eq!((s.ssrc(), s.rtp_timestamp()), (slot, b_first.timestamp()));
}

#[test]
fn a_source_that_goes_frees_its_slot_for_the_next() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let p = rewriting(&h, "rrrr", 2000, false);
    let r = h.join_with(p);
    let out = h.take();
    let va = ssrc_of(entry(&mapped(&out, r, "VideoSourcesMap"), "aaaa-v0"));
    let out = send_all(&mut h, &[a], &[1000], 1);
    let aa = ssrc_of(entry(&mapped(&out, r, "AudioSourcesMap"), "aaaa-a0"));
    h.sfu.expire_endpoint(h.now, a, &mut h.out);
    h.take();
    let (st, rw) = {
        let c = h.sfu.conf(h.conf).unwrap();
        let rw = c.endpoint(r).unwrap().downlink.rewriting.clone().unwrap();
        (c.source_count(), rw)
    };
    assert_eq!(st, 2, "only R's sources left");
    assert!(rw.video.slots().iter().all(|s| s.owner.is_none()));
    assert!(rw.audio.slots().iter().all(|s| s.owner.is_none()));
    // C joins: its sources get the freed slots (the client reuses their tracks).
    let c = h.join("cccc", 3000);
    let out = h.take();
    assert_eq!(
        ssrc_of(entry(&mapped(&out, r, "VideoSourcesMap"), "cccc-v0")),
        va
    );
    let out = send_all(&mut h, &[c], &[3000], 1);
    assert_eq!(
        ssrc_of(entry(&mapped(&out, r, "AudioSourcesMap"), "cccc-a0")),
        aa
    );
    assert_eq!(ssrcs_of(&rtp_to(&out, r)), sorted(vec![aa, va]));
}

#[test]
fn with_rtp_mid_demux_each_slot_has_a_mid_announced_and_stamped() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let p = rewriting(&h, "rrrr", 2000, true);
    let r = h.join_with(p);
    let out = h.take();
    let v = mapped(&out, r, "VideoSourcesMap");
    assert_eq!(v[0]["mid"], "v0");
    let out = send_all(&mut h, &[a], &[1000], 1);
    let au = mapped(&out, r, "AudioSourcesMap");
    assert_eq!(au[0]["mid"], "a0");
    for p in rtp_to(&out, r) {
        let q = RtpPacket::parse(&p).unwrap();
        let want: &[u8] = if q.ssrc() == ssrc_of(&au[0]) {
            b"a0"
        } else {
            b"v0"
        };
        assert_eq!(q.extension(MID_ID), Some(want));
    }
    // Retransmissions carry it too (RTX on the slot's RTX SSRC).
    let slot = ssrc_of(&v[0]);
    let sent = rtp_to(&out, r)
        .into_iter()
        .map(|p| RtpPacket::parse(&p).unwrap().sequence_number())
        .next()
        .unwrap();
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 1, slot, &[sent]);
    let re = rtp_to(&h.rtcp(r, &nack), r);
    assert_eq!(
        RtpPacket::parse(&re[0]).unwrap().extension(MID_ID),
        Some(&b"v0"[..])
    );
    // A receiver without the capability never gets the extension.
    let c = h.join("cccc", 3000);
    let out = send_all(&mut h, &[a], &[1000], 2);
    for p in rtp_to(&out, c) {
        assert_eq!(RtpPacket::parse(&p).unwrap().extension(MID_ID), None);
    }
}
