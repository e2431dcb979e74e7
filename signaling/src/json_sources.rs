//! The compact JSON source encoding carried in `<json-message xmlns='http://jitsi.org/jitmeet'>`:
//!
//! ```text
//! {"sources":{"<owner>":[[videoSources],[videoGroups],[audioSources],[audioGroups]], …}}
//! source = {"s":ssrc,"n":"name","m":"msid","v":"d"}     "v" only for desktop video
//! group  = ["s"|"f", ssrc, ssrc, …]                       SIM | FID
//! ```
//!
//! Trailing empty arrays may be left out. lib-jitsi-meet expands this back into `source` / `ssrc-group`
//! elements with `ssrc-info owner`; the focus uses it (clients advertise
//! `http://jitsi.org/json-encoded-sources`) because it is several times smaller than the XML.
//!
//! The encoding is narrower than the XML: it carries no video type other than desktop (a camera source
//! decodes with no video type, a high-fps desktop one as desktop) and only SIM and FID groups (other
//! semantics are left out when encoding).

use serde_json::Value;

use crate::error::ParseError;
use crate::rtp_description::MediaType;
use crate::source_map::{ConferenceSourceMap, EndpointSources, MediaSources};
use crate::sources::{Semantics, Source, SsrcGroup, VideoType};
use crate::xml::{MAX_REPEATED, MAX_STANZA_BYTES};

const E: &str = "json-message";

impl ConferenceSourceMap {
    /// The compact JSON encoding, `{"sources":{…}}` (see [`encode`]).
    pub fn to_json(&self) -> String {
        encode(self)
    }
}

/// A JSON string literal (quoted and escaped).
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn encode_source(s: &Source, out: &mut String) {
    out.push_str("{\"s\":");
    out.push_str(&s.ssrc.to_string());
    if let Some(n) = &s.name {
        out.push_str(",\"n\":");
        out.push_str(&quoted(n));
    }
    if let Some(m) = s.msid() {
        out.push_str(",\"m\":");
        out.push_str(&quoted(m));
    }
    if matches!(
        s.video_type,
        Some(VideoType::Desktop | VideoType::DesktopHighFps)
    ) {
        out.push_str(",\"v\":\"d\"");
    }
    out.push('}');
}

fn encode_group(g: &SsrcGroup, out: &mut String) -> bool {
    let tag = match g.semantics {
        Semantics::Sim => "\"s\"",
        Semantics::Fid => "\"f\"",
        _ => return false,
    };
    out.push('[');
    out.push_str(tag);
    for ssrc in &g.ssrcs {
        out.push(',');
        out.push_str(&ssrc.to_string());
    }
    out.push(']');
    true
}

fn encode_sources(sources: &[Source]) -> String {
    let mut out = String::from("[");
    for (i, s) in sources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_source(s, &mut out);
    }
    out.push(']');
    out
}

fn encode_groups(groups: &[SsrcGroup]) -> String {
    let mut out = String::from("[");
    let mut first = true;
    for g in groups {
        let mut item = String::new();
        if encode_group(g, &mut item) {
            if !first {
                out.push(',');
            }
            out.push_str(&item);
            first = false;
        }
    }
    out.push(']');
    out
}

/// The four arrays of one owner, trailing empty ones left out.
fn encode_endpoint(es: &EndpointSources) -> String {
    let parts = [
        encode_sources(&es.video.sources),
        encode_groups(&es.video.groups),
        encode_sources(&es.audio.sources),
        encode_groups(&es.audio.groups),
    ];
    let keep = parts.iter().rposition(|p| p != "[]").map_or(0, |i| i + 1);
    let mut out = String::from("[");
    for (i, p) in parts.iter().take(keep).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(p);
    }
    out.push(']');
    out
}

/// Encodes `map` as the text of a `json-message`: `{"sources":{…}}`.
pub fn encode(map: &ConferenceSourceMap) -> String {
    let mut out = String::from("{\"sources\":{");
    for (i, (owner, es)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quoted(owner));
        out.push(':');
        out.push_str(&encode_endpoint(es));
    }
    out.push_str("}}");
    out
}

fn invalid(reason: String) -> ParseError {
    ParseError::Invalid { element: E, reason }
}

/// A JSON value shortened for an error message.
fn show(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(32) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s,
    }
}

fn array<'a>(v: &'a Value, what: &dyn Fn() -> String) -> Result<&'a Vec<Value>, ParseError> {
    let a = v
        .as_array()
        .ok_or_else(|| invalid(format!("{} must be an array, found {}", what(), show(v))))?;
    if a.len() > MAX_REPEATED {
        return Err(invalid(format!(
            "{} has {} entries (limit {MAX_REPEATED})",
            what(),
            a.len()
        )));
    }
    Ok(a)
}

fn ssrc(v: &Value, what: &dyn Fn() -> String) -> Result<u32, ParseError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(format!(
                "{} must be an SSRC (0..=4294967295), found {}",
                what(),
                show(v)
            ))
        })
}

fn opt_string(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    what: &dyn Fn() -> String,
) -> Result<Option<String>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!(
            "{} '{key}' must be a string, found {}",
            what(),
            show(other)
        ))),
    }
}

fn decode_source(v: &Value, what: &dyn Fn() -> String) -> Result<Source, ParseError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{} must be an object, found {}", what(), show(v))))?;
    let s = obj
        .get("s")
        .ok_or_else(|| invalid(format!("{} has no 's' (SSRC)", what())))?;
    let mut source = Source::new(ssrc(s, &|| format!("{} 's'", what()))?);
    source.name = opt_string(obj, "n", what)?;
    source.set_msid(opt_string(obj, "m", what)?.as_deref());
    // "d" is the only value Jicofo writes; anything else carries no information we can use.
    if opt_string(obj, "v", what)?.as_deref() == Some("d") {
        source.video_type = Some(VideoType::Desktop);
    }
    Ok(source)
}

fn decode_group(v: &Value, what: &dyn Fn() -> String) -> Result<SsrcGroup, ParseError> {
    let items = array(v, what)?;
    let (tag, ssrcs) = items
        .split_first()
        .ok_or_else(|| invalid(format!("{} is empty", what())))?;
    let semantics = match tag.as_str() {
        Some("s") => Semantics::Sim,
        Some("f") => Semantics::Fid,
        _ => {
            return Err(invalid(format!(
                "{} semantics must be \"s\" or \"f\", found {}",
                what(),
                show(tag)
            )));
        }
    };
    if ssrcs.is_empty() {
        return Err(invalid(format!("{} has no SSRCs", what())));
    }
    let ssrcs = ssrcs
        .iter()
        .enumerate()
        .map(|(i, s)| ssrc(s, &|| format!("{} SSRC #{i}", what())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SsrcGroup::new(semantics, ssrcs))
}

fn decode_endpoint(owner: &str, v: &Value) -> Result<EndpointSources, ParseError> {
    let parts = array(v, &|| format!("sources of '{owner}'"))?;
    if parts.len() > 4 {
        return Err(invalid(format!(
            "sources of '{owner}' has {} arrays, expected at most 4",
            parts.len()
        )));
    }
    let mut es = EndpointSources::default();
    for (index, part) in parts.iter().enumerate() {
        let (media, groups) = match index {
            0 => (MediaType::Video, false),
            1 => (MediaType::Video, true),
            2 => (MediaType::Audio, false),
            _ => (MediaType::Audio, true),
        };
        let kind = if groups { "groups" } else { "sources" };
        let items = array(part, &|| format!("{media} {kind} of '{owner}'"))?;
        let target: &mut MediaSources = match media {
            MediaType::Audio => &mut es.audio,
            _ => &mut es.video,
        };
        for (i, item) in items.iter().enumerate() {
            let what = || format!("{media} {kind} #{i} of '{owner}'");
            if groups {
                let g = decode_group(item, &what)?;
                if !target.groups.contains(&g) {
                    target.groups.push(g);
                }
            } else {
                let s = decode_source(item, &what)?;
                if !target.contains_ssrc(s.ssrc) {
                    target.sources.push(s);
                }
            }
        }
    }
    Ok(es)
}

/// Decodes the text of a `json-message`. `Ok(None)` when it is a JSON object without `sources` (another
/// kind of message); an error when it is not JSON, not an object, or the sources are malformed.
pub fn decode(text: &str) -> Result<Option<ConferenceSourceMap>, ParseError> {
    if text.len() > MAX_STANZA_BYTES {
        return Err(ParseError::Oversized {
            what: E,
            size: text.len(),
            limit: MAX_STANZA_BYTES,
        });
    }
    let v: Value = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("must be a JSON object, found {}", show(&v))))?;
    let Some(sources) = obj.get("sources") else {
        return Ok(None);
    };
    let owners = sources.as_object().ok_or_else(|| {
        invalid(format!(
            "'sources' must be an object of owners, found {}",
            show(sources)
        ))
    })?;
    if owners.len() > MAX_REPEATED {
        return Err(invalid(format!(
            "'sources' has {} owners (limit {MAX_REPEATED})",
            owners.len()
        )));
    }
    let mut map = ConferenceSourceMap::new();
    for (owner, v) in owners {
        if owner.is_empty() {
            return Err(invalid("an owner ID is empty".into()));
        }
        map.add_endpoint(owner, &decode_endpoint(owner, v)?);
    }
    Ok(Some(map))
}
