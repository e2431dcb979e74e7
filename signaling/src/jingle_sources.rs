//! A Jingle stanza's sources in either form Jicofo and lib-jitsi-meet use: `source` / `ssrc-group`
//! elements inside the contents' descriptions (the XML form, `source_map`) or one `json-message` child
//! (the compact JSON form, `json_sources`, for clients that advertise
//! `http://jitsi.org/json-encoded-sources`). Upstream: jitsi/jicofo
//! `jicofo-common/src/main/kotlin/org/jitsi/jicofo/conference/source/EndpointSourceSet.kt` (`toJingle`,
//! `compactJson`) and `jicofo-common/src/main/kotlin/org/jitsi/jicofo/xmpp/JsonMessage.kt`.
//!
//! Kept apart from both forms so that each depends only on the map, never on the other.

use crate::error::ParseError;
use crate::jingle::Jingle;
use crate::json_sources;
use crate::source_map::{ConferenceSourceMap, SourceEncoding};

impl ConferenceSourceMap {
    /// All sources a Jingle stanza carries: those in its contents and those of its `json-message`.
    pub fn from_jingle(
        jingle: &Jingle,
        default_owner: Option<&str>,
    ) -> Result<ConferenceSourceMap, ParseError> {
        let mut map = Self::from_contents(&jingle.contents, default_owner)?;
        if let Some(text) = &jingle.json_message
            && let Some(json) = json_sources::decode(text)?
        {
            map.add(&json);
        }
        Ok(map)
    }
}

impl Jingle {
    /// Puts `sources` into this stanza: as a `json-message` (replacing any) or appended to the contents.
    pub fn set_sources(&mut self, sources: &ConferenceSourceMap, encoding: SourceEncoding) {
        match encoding {
            SourceEncoding::Json => self.json_message = Some(json_sources::encode(sources)),
            SourceEncoding::Xml => sources.add_to_contents(&mut self.contents),
        }
    }
}
