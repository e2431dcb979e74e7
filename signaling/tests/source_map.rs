//! The conference source map and the json-message encoding: both directions, equivalence with the XML
//! form, simulcast stripping and the validation rules the focus applies to what participants signal.

mod common;

use common::{mutations, payload};
use signaling::jingle::{Action, Jingle};
use signaling::json_sources;
use signaling::rtp_description::MediaType;
use signaling::source_map::{
    ConferenceSourceMap, EndpointSources, SourceEncoding, SourceLimits, ValidationError,
    check_owner, endpoint_id_of, validate_endpoint,
};
use signaling::sources::{Semantics, Source, SsrcGroup, VideoType};
use signaling::{ParseError, XmlElement};

const SESSION_ACCEPT: &str = include_str!("samples/session-accept.xml");
const SOURCE_ADD: &str = include_str!("samples/source-add.xml");
const SOURCE_REMOVE: &str = include_str!("samples/source-remove.xml");
const FROM_FOCUS_XML: &str = include_str!("samples/source-add-from-focus-xml.xml");
const FROM_FOCUS_JSON: &str = include_str!("samples/source-add-from-focus-json.xml");
const SESSION_INITIATE: &str = include_str!("samples/session-initiate.xml");

const EP: &str = "4a7c9e1f";
const VMSID: &str = "c1f3e5a7-9b2d-4f6e-8a0c-2e4d6f8a0b1c-1 3b5d7f9a-1c2e-4a6b-8d0f-2a4c6e8b0d1f-1";
const SIM: [u32; 3] = [1757014965, 1380612478, 3217658093];
const RTX: [u32; 3] = [2894712360, 404158257, 3907812364];

fn jingle(sample: &str) -> Jingle {
    Jingle::from_element(&payload(sample)).unwrap()
}

/// What the participant signalled in `sample`, owner-checked.
fn signalled(sample: &str) -> EndpointSources {
    let map = ConferenceSourceMap::from_jingle(&jingle(sample), Some(EP)).unwrap();
    check_owner(EP, map).unwrap()
}

fn source(ssrc: u32, name: &str, msid: Option<&str>) -> Source {
    let mut s = Source::named(ssrc, name);
    s.set_msid(msid);
    s
}

/// A conference where `EP` joined with the session-accept sample.
fn conference() -> ConferenceSourceMap {
    let mut map = ConferenceSourceMap::new();
    map.try_add(EP, &signalled(SESSION_ACCEPT), &SourceLimits::default())
        .unwrap();
    map
}

// ---------------------------------------------------------------- json-message

#[test]
fn json_encoding_omits_trailing_empty_arrays_and_marks_desktop() {
    let mut only_video = EndpointSources::default();
    only_video.add_source(MediaType::Video, &source(1, "a-v0", Some("s t")));
    let mut desktop = source(2, "a-v1", None);
    desktop.video_type = Some(VideoType::Desktop);
    only_video.add_source(MediaType::Video, &desktop);
    let mut only_audio = EndpointSources::default();
    only_audio.add_source(MediaType::Audio, &Source::new(3));
    let mut everything = EndpointSources::default();
    everything.add_source(MediaType::Audio, &source(4, "c-a0", Some("m a")));
    everything.add_source(MediaType::Audio, &source(5, "c-a0", Some("m a")));
    everything.add_group(MediaType::Audio, SsrcGroup::new(Semantics::Fid, vec![4, 5]));

    let mut map = ConferenceSourceMap::new();
    map.insert("a", only_video);
    map.insert("b", only_audio);
    map.insert("c", everything);
    let json = map.to_json();
    assert_eq!(
        json,
        concat!(
            r#"{"sources":{"a":[[{"s":1,"n":"a-v0","m":"s t"},{"s":2,"n":"a-v1","v":"d"}]],"#,
            r#""b":[[],[],[{"s":3}]],"#,
            r#""c":[[],[],[{"s":4,"n":"c-a0","m":"m a"},{"s":5,"n":"c-a0","m":"m a"}],[["f",4,5]]]}}"#
        )
    );
    assert_eq!(json_sources::decode(&json).unwrap(), Some(map));
}

#[test]
fn json_decodes_with_and_without_trailing_arrays() {
    let full = r#"{"sources":{"x":[[{"s":10,"n":"x-v0","m":"a b"},{"s":11,"n":"x-v0","m":"a b"}],[["f",10,11]],[{"s":12}],[]]}}"#;
    let short = r#"{"sources":{"x":[[{"s":10,"n":"x-v0","m":"a b"},{"s":11,"n":"x-v0","m":"a b"}],[["f",10,11]],[{"s":12}]]}}"#;
    let a = json_sources::decode(full).unwrap().unwrap();
    let b = json_sources::decode(short).unwrap().unwrap();
    assert_eq!(a, b);
    let x = a.get("x").unwrap();
    assert_eq!(
        x.video.sources,
        [
            source(10, "x-v0", Some("a b")),
            source(11, "x-v0", Some("a b"))
        ]
    );
    assert_eq!(
        x.video.groups,
        [SsrcGroup::new(Semantics::Fid, vec![10, 11])]
    );
    assert_eq!(x.audio.sources, [Source::new(12)]);
    // Owners with nothing are not kept; names with JSON escapes survive.
    let odd = json_sources::decode(r#"{"sources":{"e":[],"q\"uote":[[{"s":7,"n":"a\\b"}]]}}"#)
        .unwrap()
        .unwrap();
    assert_eq!(odd.owners().collect::<Vec<_>>(), ["q\"uote"]);
    assert_eq!(json_sources::decode(&odd.to_json()).unwrap(), Some(odd));
    // Another kind of json-message is not an error.
    assert_eq!(
        json_sources::decode(r#"{"type":"something-else"}"#),
        Ok(None)
    );
}

#[test]
fn json_and_xml_forms_describe_the_same_sources() {
    let from_xml = ConferenceSourceMap::from_jingle(&jingle(FROM_FOCUS_XML), None).unwrap();
    let from_json = ConferenceSourceMap::from_jingle(&jingle(FROM_FOCUS_JSON), None).unwrap();
    assert_eq!(from_xml, from_json);
    let ep = from_xml.get(EP).unwrap();
    assert_eq!(ep.ssrc_count(), 4);
    assert_eq!(ep.video.sources[2].video_type, Some(VideoType::Desktop));

    // And back: the map written either way reads as the same map.
    for encoding in [SourceEncoding::Xml, SourceEncoding::Json] {
        let mut j = Jingle::new(Action::SourceAdd, "b3k9d0s2m5p1q");
        j.set_sources(&from_xml, encoding);
        let reparsed = Jingle::from_xml(&j.to_xml()).unwrap();
        assert_eq!(
            ConferenceSourceMap::from_jingle(&reparsed, None).unwrap(),
            from_xml,
            "{encoding:?}"
        );
    }
    // The XML the map writes is the sample's XML, up to element order inside each description.
    let contents = from_xml.to_contents();
    let sample = jingle(FROM_FOCUS_XML);
    for (ours, theirs) in contents.iter().zip(&sample.contents) {
        let (o, t) = (
            ours.description.as_ref().unwrap(),
            theirs.description.as_ref().unwrap(),
        );
        assert_eq!(o.sources, t.sources);
        assert_eq!(o.ssrc_groups, t.ssrc_groups);
    }
}

#[test]
fn session_initiate_feedback_sources_reencode_identically() {
    let j = jingle(SESSION_INITIATE);
    let map = ConferenceSourceMap::from_jingle(&j, None).unwrap();
    // Our encoder writes Jicofo's layout, so the sample's text comes back byte for byte.
    assert_eq!(map.to_json(), j.json_message.unwrap());
}

#[test]
fn bad_json_messages_are_named() {
    let invalid = |text: &str| match json_sources::decode(text) {
        Err(ParseError::Invalid {
            element: "json-message",
            reason,
        }) => reason,
        other => panic!("expected Invalid for {text}, got {other:?}"),
    };
    assert!(matches!(
        json_sources::decode("{\"sources\":"),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        json_sources::decode("not json"),
        Err(ParseError::Json(_))
    ));
    assert!(invalid("[1,2]").contains("JSON object"));
    assert!(invalid(r#"{"sources":[]}"#).contains("'sources' must be an object"));
    assert!(invalid(r#"{"sources":{"a":{"s":1}}}"#).contains("sources of 'a' must be an array"));
    assert!(invalid(r#"{"sources":{"a":[[],[],[],[],[]]}}"#).contains("at most 4"));
    assert!(
        invalid(r#"{"sources":{"a":[[1]]}}"#).contains("video sources #0 of 'a' must be an object")
    );
    assert!(invalid(r#"{"sources":{"a":[[{"n":"x"}]]}}"#).contains("has no 's'"));
    assert!(invalid(r#"{"sources":{"a":[[{"s":"abc"}]]}}"#).contains("must be an SSRC"));
    assert!(
        invalid(r#"{"sources":{"a":[[],[],[{"s":4294967296}]]}}"#).contains("audio sources #0")
    );
    assert!(invalid(r#"{"sources":{"a":[[{"s":-1}]]}}"#).contains("must be an SSRC"));
    assert!(invalid(r#"{"sources":{"a":[[{"s":1.5}]]}}"#).contains("must be an SSRC"));
    assert!(invalid(r#"{"sources":{"a":[[{"s":1,"m":7}]]}}"#).contains("'m' must be a string"));
    assert!(invalid(r#"{"sources":{"a":[[],[["x",1,2]]]}}"#).contains("semantics"));
    assert!(invalid(r#"{"sources":{"a":[[],[[]]]}}"#).contains("is empty"));
    assert!(invalid(r#"{"sources":{"a":[[],[["f"]]]}}"#).contains("no SSRCs"));
    assert!(invalid(r#"{"sources":{"a":[[],[["s",1,"2"]]]}}"#).contains("SSRC #1"));
    assert!(invalid(r#"{"sources":{"":[[{"s":1}]]}}"#).contains("empty"));
    let huge = format!(
        r#"{{"sources":{{"a":[[{{"s":1,"n":"{}"}}]]}}}}"#,
        "n".repeat(300_000)
    );
    assert!(matches!(
        json_sources::decode(&huge),
        Err(ParseError::Oversized {
            what: "json-message",
            ..
        })
    ));
    let many: Vec<String> = (1..=600).map(|i| format!(r#"{{"s":{i}}}"#)).collect();
    let text = format!(r#"{{"sources":{{"a":[[{}]]}}}}"#, many.join(","));
    assert!(invalid(&text).contains("limit"));
    // Errors surface through the Jingle path too.
    let mut j = Jingle::new(Action::SourceAdd, "s");
    j.json_message = Some(r#"{"sources":{"a":[[{"s":99999999999}]]}}"#.into());
    assert!(ConferenceSourceMap::from_jingle(&j, None).is_err());
}

#[test]
fn mutated_json_never_panics() {
    let j = jingle(SESSION_INITIATE);
    let text = j.json_message.unwrap();
    let mut decoded = 0;
    for m in mutations(&text, 2000) {
        if let Ok(Some(map)) = json_sources::decode(&m) {
            decoded += 1;
            assert_eq!(json_sources::decode(&map.to_json()), Ok(Some(map)));
        }
    }
    assert!(decoded > 50, "got {decoded}");
}

// ---------------------------------------------------------------- from Jingle

#[test]
fn participant_sources_from_session_accept() {
    let s = signalled(SESSION_ACCEPT);
    assert_eq!(s.audio.sources.len(), 1);
    assert_eq!(s.video.ssrcs().collect::<Vec<_>>(), [SIM, RTX].concat());
    assert_eq!(s.video.groups.len(), 4);
    assert!(
        s.video
            .sources
            .iter()
            .all(|x| x.owner.is_none() && x.msid() == Some(VMSID))
    );
    assert_eq!(
        EndpointSources::from_contents(&jingle(SESSION_ACCEPT).contents).unwrap(),
        s
    );
}

#[test]
fn owner_attribute_must_be_absent_or_the_sender() {
    let with_owner = |owner: &str| {
        SESSION_ACCEPT.replace(
            "</source>",
            &format!(r#"<ssrc-info xmlns="http://jitsi.org/jitmeet" owner="{owner}"/></source>"#),
        )
    };
    for own in [EP.to_owned(), format!("bluewhale42@muc.meet.jitsi/{EP}")] {
        let map = ConferenceSourceMap::from_jingle(&jingle(&with_owner(&own)), Some(EP)).unwrap();
        assert_eq!(check_owner(EP, map).unwrap(), signalled(SESSION_ACCEPT));
    }
    let map = ConferenceSourceMap::from_jingle(&jingle(&with_owner("deadbeef")), Some(EP)).unwrap();
    assert_eq!(
        check_owner(EP, map).unwrap_err(),
        ValidationError::ForeignOwner {
            endpoint: EP.into(),
            owner: "deadbeef".into()
        }
    );
    assert_eq!(endpoint_id_of("room@muc.example/abcd"), "abcd");
    assert_eq!(endpoint_id_of("abcd"), "abcd");
}

#[test]
fn unowned_sources_need_a_default_owner() {
    let err = ConferenceSourceMap::from_jingle(&jingle(SOURCE_ADD), None).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::Invalid {
                element: "source",
                ..
            }
        ),
        "{err:?}"
    );
    // A group whose SSRCs are not in the stanza cannot be attributed without a default owner.
    let group_only = r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-remove" sid="s"><content name="video">
        <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video"><ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="1"/><source ssrc="2"/></ssrc-group></description></content></jingle>"#;
    let j = Jingle::from_xml(group_only).unwrap();
    assert!(matches!(
        ConferenceSourceMap::from_jingle(&j, None).unwrap_err(),
        ParseError::Invalid {
            element: "ssrc-group",
            ..
        }
    ));
    assert_eq!(
        ConferenceSourceMap::from_jingle(&j, Some(EP))
            .unwrap()
            .get(EP)
            .unwrap()
            .video
            .groups
            .len(),
        1
    );
    // Sources in the data description make no sense.
    let data = r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s"><content name="data">
        <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="application"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="1"/></description></content></jingle>"#;
    assert!(matches!(
        ConferenceSourceMap::from_jingle(&Jingle::from_xml(data).unwrap(), Some(EP)).unwrap_err(),
        ParseError::Invalid {
            element: "description",
            ..
        }
    ));
}

// ---------------------------------------------------------------- transformations

#[test]
fn strip_simulcast_keeps_the_first_layer_and_its_rtx() {
    let map = conference();
    let stripped = map.stripped_simulcast();
    let ep = stripped.get(EP).unwrap();
    assert_eq!(ep.video.ssrcs().collect::<Vec<_>>(), [SIM[0], RTX[0]]);
    assert_eq!(
        ep.video.groups,
        [SsrcGroup::new(Semantics::Fid, vec![SIM[0], RTX[0]])]
    );
    assert_eq!(ep.audio, map.get(EP).unwrap().audio);
    // What another participant receives as JSON.
    assert_eq!(
        stripped.to_json(),
        format!(
            r#"{{"sources":{{"{EP}":[[{{"s":{},"n":"{EP}-v0","m":"{VMSID}"}},{{"s":{},"n":"{EP}-v0","m":"{VMSID}"}}],[["f",{},{}]],[{{"s":2471947208,"n":"{EP}-a0","m":"c1f3e5a7-9b2d-4f6e-8a0c-2e4d6f8a0b1c-1 7e9a1c3b-5d7f-4b9d-a1c3-e5f7a9b1c3d5-1"}}]]}}}}"#,
            SIM[0], RTX[0], SIM[0], RTX[0]
        )
    );
    // Idempotent, and harmless without simulcast.
    assert_eq!(stripped.stripped_simulcast(), stripped);
    let mut screen = ConferenceSourceMap::new();
    screen.insert(EP, signalled(SOURCE_ADD));
    assert_eq!(screen.stripped_simulcast(), screen);
}

#[test]
fn add_remove_diff_and_without() {
    let joined = conference();
    let mut with_screen = joined.clone();
    with_screen.add(&ConferenceSourceMap::single(EP, signalled(SOURCE_ADD)));
    assert_eq!(with_screen.get(EP).unwrap().ssrc_count(), 9);

    let diff = joined.diff(&with_screen);
    assert_eq!(
        diff.added,
        ConferenceSourceMap::single(EP, signalled(SOURCE_ADD))
    );
    assert!(diff.removed.is_empty());
    let back = with_screen.diff(&joined);
    assert_eq!(back.removed, diff.added);
    assert_eq!(with_screen.minus(&diff.added), joined);

    let mut other = EndpointSources::default();
    other.add_source(MediaType::Audio, &source(77, "bbbbbbbb-a0", Some("x y")));
    let mut two = joined.clone();
    two.insert("bbbbbbbb", other.clone());
    assert_eq!(two.owner_of(77), Some("bbbbbbbb"));
    assert_eq!(two.owner_of(SIM[1]), Some(EP));
    assert_eq!(
        two.without(EP),
        ConferenceSourceMap::single("bbbbbbbb", other)
    );
    assert_eq!(
        two.remove_owner("bbbbbbbb").map(|s| s.ssrc_count()),
        Some(1)
    );
    assert_eq!(two, joined);
}

// ---------------------------------------------------------------- validation

#[test]
fn validation_accepts_a_real_join_and_screenshare() {
    let mut map = conference();
    let accepted = map
        .try_add(EP, &signalled(SOURCE_ADD), &SourceLimits::default())
        .unwrap();
    assert_eq!(accepted, signalled(SOURCE_ADD));
    // Removing the screenshare by SSRC alone also removes its FID group.
    let mut by_ssrc = EndpointSources::default();
    by_ssrc.add_source(MediaType::Video, &Source::new(2640913357));
    let removed = map.validate_remove(EP, &by_ssrc).unwrap();
    assert_eq!(
        removed.video.groups,
        [SsrcGroup::new(Semantics::Fid, vec![2640913357, 1188237406])]
    );
    // The client's source-remove names everything; the map returns to the joined state.
    let removed = map.try_remove(EP, &signalled(SOURCE_REMOVE)).unwrap();
    assert_eq!(removed, signalled(SOURCE_ADD));
    assert_eq!(map, conference());
}

#[test]
fn validation_rejects_ssrc_conflicts() {
    let mut map = conference();
    let before = map.clone();
    let mut thief = EndpointSources::default();
    thief.add_source(
        MediaType::Video,
        &source(SIM[1], "bbbbbbbb-v0", Some("b v")),
    );
    assert_eq!(
        map.try_add("bbbbbbbb", &thief, &SourceLimits::default())
            .unwrap_err(),
        ValidationError::SsrcConflict {
            ssrc: SIM[1],
            owner: EP.into()
        }
    );
    // Signalling one's own SSRC twice is refused too.
    assert_eq!(
        map.try_add(EP, &signalled(SESSION_ACCEPT), &SourceLimits::default())
            .unwrap_err(),
        ValidationError::SsrcConflict {
            ssrc: 2471947208,
            owner: EP.into()
        }
    );
    // The same SSRC as audio and video in one request.
    let mut twice = EndpointSources::default();
    twice.add_source(MediaType::Audio, &Source::new(5));
    twice.add_source(MediaType::Video, &Source::new(5));
    assert_eq!(
        map.validate_add("cccccccc", &twice, &SourceLimits::default())
            .unwrap_err(),
        ValidationError::SsrcConflict {
            ssrc: 5,
            owner: "cccccccc".into()
        }
    );
    let mut msid_thief = EndpointSources::default();
    msid_thief.add_source(MediaType::Video, &source(1234, "bbbbbbbb-v0", Some(VMSID)));
    assert_eq!(
        map.validate_add("bbbbbbbb", &msid_thief, &SourceLimits::default())
            .unwrap_err(),
        ValidationError::MsidConflict {
            msid: VMSID.into(),
            owner: EP.into()
        }
    );
    let mut zero = EndpointSources::default();
    zero.add_source(MediaType::Audio, &Source::new(0));
    assert_eq!(
        map.validate_add("bbbbbbbb", &zero, &SourceLimits::default())
            .unwrap_err(),
        ValidationError::InvalidSsrc(0)
    );
    assert_eq!(map, before, "a refused change leaves the map alone");
}

#[test]
fn validation_enforces_limits() {
    let mut many = EndpointSources::default();
    for i in 1..=21 {
        many.add_source(MediaType::Audio, &source(i, "x", Some(&format!("s t{i}"))));
    }
    let map = ConferenceSourceMap::new();
    assert_eq!(
        map.validate_add(EP, &many, &SourceLimits::default())
            .unwrap_err(),
        ValidationError::TooManySsrcs {
            owner: EP.into(),
            limit: 20
        }
    );
    // Limits are configurable: 7 SSRCs and 4 groups in a simulcast join.
    let join = signalled(SESSION_ACCEPT);
    let tight = SourceLimits {
        max_ssrcs: 6,
        max_groups: 20,
    };
    assert_eq!(
        map.validate_add(EP, &join, &tight).unwrap_err(),
        ValidationError::TooManySsrcs {
            owner: EP.into(),
            limit: 6
        }
    );
    let few_groups = SourceLimits {
        max_ssrcs: 20,
        max_groups: 3,
    };
    assert_eq!(
        map.validate_add(EP, &join, &few_groups).unwrap_err(),
        ValidationError::TooManyGroups {
            owner: EP.into(),
            limit: 3
        }
    );
    // Limits count what the owner already has.
    let joined = conference();
    let limits = SourceLimits {
        max_ssrcs: 8,
        max_groups: 20,
    };
    assert_eq!(
        joined
            .validate_add(EP, &signalled(SOURCE_ADD), &limits)
            .unwrap_err(),
        ValidationError::TooManySsrcs {
            owner: EP.into(),
            limit: 8
        }
    );
}

#[test]
fn validation_rejects_groups_with_unknown_ssrcs_and_inconsistent_groups() {
    let map = conference();
    let limits = SourceLimits::default();
    let bad_group = SOURCE_ADD.replace(r#"<source ssrc="1188237406"/>"#, r#"<source ssrc="999"/>"#);
    assert_eq!(
        map.validate_add(EP, &signalled(&bad_group), &limits)
            .unwrap_err(),
        ValidationError::GroupUnknownSsrc {
            semantics: Semantics::Fid,
            ssrcs: vec![2640913357, 999],
            ssrc: 999
        }
    );
    let msid = |ssrc: u32, m: &str| source(ssrc, "n", Some(m));
    let mut fid3 = EndpointSources::default();
    for s in [1, 2, 3] {
        fid3.add_source(MediaType::Video, &msid(s, "a b"));
    }
    fid3.add_group(
        MediaType::Video,
        SsrcGroup::new(Semantics::Fid, vec![1, 2, 3]),
    );
    assert_eq!(
        map.validate_add("bbbbbbbb", &fid3, &limits).unwrap_err(),
        ValidationError::InvalidFidGroup {
            ssrcs: vec![1, 2, 3]
        }
    );
    let mut no_msid = EndpointSources::default();
    no_msid.add_source(MediaType::Video, &Source::new(1));
    no_msid.add_source(MediaType::Video, &Source::new(2));
    no_msid.add_group(MediaType::Video, SsrcGroup::new(Semantics::Fid, vec![1, 2]));
    assert_eq!(
        map.validate_add("bbbbbbbb", &no_msid, &limits).unwrap_err(),
        ValidationError::MissingMsid { ssrc: 1 }
    );
    let mut mixed = EndpointSources::default();
    mixed.add_source(MediaType::Video, &msid(1, "a b"));
    mixed.add_source(MediaType::Video, &msid(2, "a c"));
    mixed.add_group(MediaType::Video, SsrcGroup::new(Semantics::Fid, vec![1, 2]));
    assert_eq!(
        map.validate_add("bbbbbbbb", &mixed, &limits).unwrap_err(),
        ValidationError::GroupMsidMismatch {
            semantics: Semantics::Fid,
            ssrcs: vec![1, 2]
        }
    );
    let mut two_tracks_one_msid = EndpointSources::default();
    two_tracks_one_msid.add_source(MediaType::Video, &msid(1, "a b"));
    two_tracks_one_msid.add_source(MediaType::Video, &msid(2, "a b"));
    assert_eq!(
        map.validate_add("bbbbbbbb", &two_tracks_one_msid, &limits)
            .unwrap_err(),
        ValidationError::MsidConflict {
            msid: "a b".into(),
            owner: "bbbbbbbb".into()
        }
    );
    // Audio and video may share an MSID; empty and repeated groups are ignored, not refused.
    let mut fine = EndpointSources::default();
    fine.add_source(MediaType::Audio, &msid(1, "a b"));
    fine.add_source(MediaType::Video, &msid(2, "a b"));
    fine.video
        .groups
        .push(SsrcGroup::new(Semantics::Sim, vec![]));
    let accepted = map.validate_add("bbbbbbbb", &fine, &limits).unwrap();
    assert!(accepted.video.groups.is_empty());
    let already = map
        .validate_add(
            EP,
            &{
                let mut g = EndpointSources::default();
                g.add_group(
                    MediaType::Video,
                    SsrcGroup::new(Semantics::Sim, SIM.to_vec()),
                );
                g
            },
            &limits,
        )
        .unwrap();
    assert!(already.is_empty());
    assert_eq!(validate_endpoint(EP, map.get(EP).unwrap()), Ok(()));
}

#[test]
fn validation_of_removal() {
    let mut map = conference();
    let mut unknown = EndpointSources::default();
    unknown.add_source(MediaType::Video, &Source::new(42));
    assert_eq!(
        map.validate_remove(EP, &unknown).unwrap_err(),
        ValidationError::SourceNotFound {
            owner: EP.into(),
            ssrc: 42
        }
    );
    // One participant cannot remove another's source.
    let mut theirs = EndpointSources::default();
    theirs.add_source(MediaType::Video, &Source::new(SIM[0]));
    assert_eq!(
        map.validate_remove("bbbbbbbb", &theirs).unwrap_err(),
        ValidationError::SourceNotFound {
            owner: "bbbbbbbb".into(),
            ssrc: SIM[0]
        }
    );
    let mut group = EndpointSources::default();
    group.add_group(
        MediaType::Video,
        SsrcGroup::new(Semantics::Fid, vec![SIM[0], 1]),
    );
    assert!(matches!(
        map.validate_remove(EP, &group).unwrap_err(),
        ValidationError::GroupNotFound { .. }
    ));
    // Removing everything leaves no owner behind.
    let removed = map.try_remove(EP, &signalled(SESSION_ACCEPT)).unwrap();
    assert_eq!(removed, signalled(SESSION_ACCEPT));
    assert!(map.is_empty());
}
