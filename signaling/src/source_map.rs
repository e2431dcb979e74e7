//! The conference source map: who (endpoint ID, or `jvb` for the bridge's feedback sources) sends which
//! RTP sources and SSRC groups, per media type.
//!
//! The focus keeps one map per conference. It fills it from what clients signal (session-accept,
//! source-add, source-remove — `ConferenceSourceMap::from_jingle` in `jingle_sources`, [`check_owner`],
//! [`ConferenceSourceMap::try_add`] / [`ConferenceSourceMap::try_remove`]), and tells every other
//! participant about changes as Jingle contents or the compact JSON (`Jingle::set_sources`, also in
//! `jingle_sources`), usually after [`ConferenceSourceMap::stripped_simulcast`].
//!
//! This file holds the map, its validation and its XML form (Jingle contents); the JSON form is
//! `json_sources`, and reading or writing a whole stanza's sources in either form is `jingle_sources`.
//!
//! Inside the map a [`Source`] is normalised to what both wire encodings carry: SSRC, name, video type and
//! the `msid` parameter; the owner is the map key, never the `owner` field. Validation is pure: the
//! `validate_*` functions say whether a change is acceptable and what it would change, without touching
//! the map; `try_*` apply it when valid.

use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use crate::error::ParseError;
use crate::jingle::{Content, RtpDescription};
use crate::rtp_description::MediaType;
use crate::sources::{Semantics, Source, SsrcGroup};

/// Owner of the bridge's own (feedback) sources.
pub const JVB_OWNER: &str = "jvb";

/// The endpoint ID in an `ssrc-info owner`: old focuses wrote the occupant's full MUC JID
/// (`room@muc/abcd1234`), current ones the bare endpoint ID.
pub fn endpoint_id_of(owner: &str) -> &str {
    owner
        .split_once('/')
        .map_or(owner, |(_, resource)| resource)
}

/// Keeps only what the map models (see the module docs).
fn normalize(source: &Source) -> Source {
    let mut s = Source {
        ssrc: source.ssrc,
        name: source.name.clone(),
        video_type: source.video_type,
        owner: None,
        parameters: Vec::new(),
    };
    s.set_msid(source.msid());
    s
}

/// Sources and SSRC groups of one media type of one owner.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaSources {
    pub sources: Vec<Source>,
    pub groups: Vec<SsrcGroup>,
}

impl MediaSources {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.groups.is_empty()
    }

    pub fn source(&self, ssrc: u32) -> Option<&Source> {
        self.sources.iter().find(|s| s.ssrc == ssrc)
    }

    pub fn contains_ssrc(&self, ssrc: u32) -> bool {
        self.source(ssrc).is_some()
    }

    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.sources.iter().map(|s| s.ssrc)
    }

    /// Adds a (normalised) source unless its SSRC is already present.
    fn push_source(&mut self, source: &Source) {
        if !self.contains_ssrc(source.ssrc) {
            self.sources.push(normalize(source));
        }
    }

    /// Adds a group unless an equal one is already present.
    fn push_group(&mut self, group: &SsrcGroup) {
        if !self.groups.contains(group) {
            self.groups.push(group.clone());
        }
    }

    fn add(&mut self, other: &MediaSources) {
        for s in &other.sources {
            self.push_source(s);
        }
        for g in &other.groups {
            self.push_group(g);
        }
    }

    /// Set difference: sources whose SSRC is in `other` and groups equal to one of `other`'s go.
    fn remove(&mut self, other: &MediaSources) {
        self.sources.retain(|s| !other.contains_ssrc(s.ssrc));
        self.groups.retain(|g| !other.groups.contains(g));
    }

    /// Keeps the first SSRC of each SIM group and its FID partner; drops the other layers, their RTX and
    /// the SIM groups. This is what receivers are told when the bridge forwards each simulcast stream
    /// under its first SSRC.
    fn stripped_simulcast(&self) -> MediaSources {
        let mut drop_ssrcs = HashSet::new();
        let mut drop_group = vec![false; self.groups.len()];
        for (i, g) in self.groups.iter().enumerate() {
            if g.semantics == Semantics::Sim {
                drop_group[i] = true;
                drop_ssrcs.extend(g.ssrcs.iter().skip(1).copied());
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.semantics == Semantics::Fid
                && g.ssrcs
                    .first()
                    .is_some_and(|primary| drop_ssrcs.contains(primary))
            {
                drop_group[i] = true;
                drop_ssrcs.extend(g.ssrcs.iter().skip(1).copied());
            }
        }
        MediaSources {
            sources: self
                .sources
                .iter()
                .filter(|s| !drop_ssrcs.contains(&s.ssrc))
                .cloned()
                .collect(),
            groups: self
                .groups
                .iter()
                .zip(drop_group)
                .filter(|(_, drop)| !drop)
                .map(|(g, _)| g.clone())
                .collect(),
        }
    }
}

/// Everything one owner sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointSources {
    pub audio: MediaSources,
    pub video: MediaSources,
}

impl EndpointSources {
    /// The sources of `media`; `None` for application (data), which has no RTP sources.
    pub fn media(&self, media: MediaType) -> Option<&MediaSources> {
        match media {
            MediaType::Audio => Some(&self.audio),
            MediaType::Video => Some(&self.video),
            MediaType::Application => None,
        }
    }

    pub fn media_mut(&mut self, media: MediaType) -> Option<&mut MediaSources> {
        match media {
            MediaType::Audio => Some(&mut self.audio),
            MediaType::Video => Some(&mut self.video),
            MediaType::Application => None,
        }
    }

    fn by_media(&self) -> [(MediaType, &MediaSources); 2] {
        [
            (MediaType::Audio, &self.audio),
            (MediaType::Video, &self.video),
        ]
    }

    /// Adds a source (normalised; ignored if its SSRC is present or `media` is application).
    pub fn add_source(&mut self, media: MediaType, source: &Source) {
        if let Some(m) = self.media_mut(media) {
            m.push_source(source);
        }
    }

    /// Adds a group (ignored if an equal one is present or `media` is application).
    pub fn add_group(&mut self, media: MediaType, group: SsrcGroup) {
        if let Some(m) = self.media_mut(media) {
            m.push_group(&group);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.audio.is_empty() && self.video.is_empty()
    }

    pub fn ssrc_count(&self) -> usize {
        self.audio.sources.len() + self.video.sources.len()
    }

    pub fn group_count(&self) -> usize {
        self.audio.groups.len() + self.video.groups.len()
    }

    /// Every source with its media type, audio first.
    pub fn sources(&self) -> impl Iterator<Item = (MediaType, &Source)> + '_ {
        self.by_media()
            .into_iter()
            .flat_map(|(m, ms)| ms.sources.iter().map(move |s| (m, s)))
    }

    /// Every group with its media type, audio first.
    pub fn groups(&self) -> impl Iterator<Item = (MediaType, &SsrcGroup)> + '_ {
        self.by_media()
            .into_iter()
            .flat_map(|(m, ms)| ms.groups.iter().map(move |g| (m, g)))
    }

    /// The source with `ssrc`, whatever its media type.
    pub fn find_source(&self, ssrc: u32) -> Option<(MediaType, &Source)> {
        self.sources().find(|(_, s)| s.ssrc == ssrc)
    }

    /// Union (sources deduplicated by SSRC, groups by equality).
    pub fn add(&mut self, other: &EndpointSources) {
        self.audio.add(&other.audio);
        self.video.add(&other.video);
    }

    /// Set difference: sources whose SSRC `other` lists and groups equal to `other`'s are removed. Groups
    /// that reference removed SSRCs stay unless `other` lists them (see
    /// [`ConferenceSourceMap::validate_remove`], which lists them).
    pub fn remove(&mut self, other: &EndpointSources) {
        self.audio.remove(&other.audio);
        self.video.remove(&other.video);
    }

    pub fn minus(&self, other: &EndpointSources) -> EndpointSources {
        let mut out = self.clone();
        out.remove(other);
        out
    }

    /// See [`ConferenceSourceMap::stripped_simulcast`].
    pub fn stripped_simulcast(&self) -> EndpointSources {
        EndpointSources {
            audio: self.audio.stripped_simulcast(),
            video: self.video.stripped_simulcast(),
        }
    }

    /// The sources of Jingle contents, ignoring any `owner` they carry (use
    /// [`ConferenceSourceMap::from_contents`] and [`check_owner`] to enforce it).
    pub fn from_contents(contents: &[Content]) -> Result<EndpointSources, ParseError> {
        let mut out = EndpointSources::default();
        for (media, description) in rtp_descriptions(contents)? {
            for s in &description.sources {
                out.add_source(media, s);
            }
            for g in &description.ssrc_groups {
                out.add_group(media, g.clone());
            }
        }
        Ok(out)
    }
}

/// The RTP descriptions of `contents` that may carry sources, refusing sources in a data description.
fn rtp_descriptions(
    contents: &[Content],
) -> Result<impl Iterator<Item = (MediaType, &RtpDescription)>, ParseError> {
    for d in contents.iter().filter_map(|c| c.description.as_ref()) {
        if d.media == MediaType::Application && !(d.sources.is_empty() && d.ssrc_groups.is_empty())
        {
            return Err(ParseError::invalid(
                "description",
                "an application description cannot carry RTP sources",
            ));
        }
    }
    Ok(contents
        .iter()
        .filter_map(|c| c.description.as_ref())
        .filter(|d| d.media != MediaType::Application)
        .map(|d| (d.media, d)))
}

/// How a Jingle stanza carries sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEncoding {
    /// `source`/`ssrc-group` elements with `ssrc-info owner` inside the contents' descriptions.
    Xml,
    /// One `json-message` child (clients that advertise `http://jitsi.org/json-encoded-sources`).
    Json,
}

/// What changed between two maps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceDiff {
    pub added: ConferenceSourceMap,
    pub removed: ConferenceSourceMap,
}

/// Limits on what one endpoint may signal (Jicofo's `max-ssrcs-per-user`, `max-ssrc-groups-per-user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    pub max_ssrcs: usize,
    pub max_groups: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_ssrcs: 20,
            max_groups: 20,
        }
    }
}

/// Why a participant's source change is refused. The focus answers the Jingle IQ with `bad-request` and
/// this text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("SSRC {0} is invalid")]
    InvalidSsrc(u32),
    /// `owner` may be the requester itself (the SSRC was already signalled).
    #[error("SSRC {ssrc} is already used by {owner}")]
    SsrcConflict { ssrc: u32, owner: String },
    #[error("MSID '{msid}' is already used by {owner}")]
    MsidConflict { msid: String, owner: String },
    #[error("{owner} would have more than {limit} SSRCs")]
    TooManySsrcs { owner: String, limit: usize },
    #[error("{owner} would have more than {limit} SSRC groups")]
    TooManyGroups { owner: String, limit: usize },
    #[error("{semantics} group {ssrcs:?} contains SSRC {ssrc}, which is not a signalled source")]
    GroupUnknownSsrc {
        semantics: Semantics,
        ssrcs: Vec<u32>,
        ssrc: u32,
    },
    #[error("FID group {ssrcs:?} must have exactly 2 SSRCs")]
    InvalidFidGroup { ssrcs: Vec<u32> },
    #[error("grouped source {ssrc} has no msid")]
    MissingMsid { ssrc: u32 },
    #[error("{semantics} group {ssrcs:?} mixes sources with different MSIDs")]
    GroupMsidMismatch {
        semantics: Semantics,
        ssrcs: Vec<u32>,
    },
    #[error("{endpoint} may not signal sources owned by {owner}")]
    ForeignOwner { endpoint: String, owner: String },
    #[error("{owner} has no source with SSRC {ssrc}")]
    SourceNotFound { owner: String, ssrc: u32 },
    #[error("{owner} has no {semantics} group {ssrcs:?}")]
    GroupNotFound {
        owner: String,
        semantics: Semantics,
        ssrcs: Vec<u32>,
    },
}

/// Checks that everything in `map` (parsed from what `endpoint_id` sent, with it as default owner)
/// belongs to `endpoint_id`, and returns those sources. A participant may leave `owner` out or name
/// itself (as endpoint ID or occupant JID), nothing else.
pub fn check_owner(
    endpoint_id: &str,
    map: ConferenceSourceMap,
) -> Result<EndpointSources, ValidationError> {
    let mut out = EndpointSources::default();
    for (owner, sources) in map.endpoints {
        if owner != endpoint_id {
            return Err(ValidationError::ForeignOwner {
                endpoint: endpoint_id.to_owned(),
                owner,
            });
        }
        out = sources;
    }
    Ok(out)
}

/// Owner → sources for a whole conference. Owners iterate in a stable (sorted) order; owners with no
/// sources are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConferenceSourceMap {
    endpoints: BTreeMap<String, EndpointSources>,
}

impl ConferenceSourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map with one owner.
    pub fn single(owner: &str, sources: EndpointSources) -> Self {
        let mut map = Self::new();
        map.insert(owner, sources);
        map
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Number of owners.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn get(&self, owner: &str) -> Option<&EndpointSources> {
        self.endpoints.get(owner)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &EndpointSources)> + '_ {
        self.endpoints.iter().map(|(o, s)| (o.as_str(), s))
    }

    pub fn owners(&self) -> impl Iterator<Item = &str> + '_ {
        self.endpoints.keys().map(String::as_str)
    }

    /// Replaces `owner`'s sources (removes the owner if `sources` is empty).
    pub fn insert(&mut self, owner: &str, sources: EndpointSources) {
        if sources.is_empty() {
            self.endpoints.remove(owner);
        } else {
            self.endpoints.insert(owner.to_owned(), sources);
        }
    }

    /// Forgets an owner (e.g. the participant left), returning what it had.
    pub fn remove_owner(&mut self, owner: &str) -> Option<EndpointSources> {
        self.endpoints.remove(owner)
    }

    /// The owner of `ssrc`, if any.
    pub fn owner_of(&self, ssrc: u32) -> Option<&str> {
        self.iter()
            .find(|(_, s)| s.find_source(ssrc).is_some())
            .map(|(o, _)| o)
    }

    /// The owner of a source of `media` with `ssrc`.
    fn owner_of_media(&self, media: MediaType, ssrc: u32) -> Option<&str> {
        self.iter()
            .find(|(_, s)| s.media(media).is_some_and(|m| m.contains_ssrc(ssrc)))
            .map(|(o, _)| o)
    }

    /// The owner of a source (of any media type) with `msid`, if any.
    fn owner_of_msid(&self, msid: &str) -> Option<&str> {
        self.iter()
            .find(|(_, s)| s.sources().any(|(_, src)| src.msid() == Some(msid)))
            .map(|(o, _)| o)
    }

    /// Adds `sources` to `owner`'s.
    pub fn add_endpoint(&mut self, owner: &str, sources: &EndpointSources) {
        if sources.is_empty() {
            return;
        }
        self.endpoints
            .entry(owner.to_owned())
            .or_default()
            .add(sources);
    }

    /// Union with `other`.
    pub fn add(&mut self, other: &ConferenceSourceMap) {
        for (owner, sources) in other.iter() {
            self.add_endpoint(owner, sources);
        }
    }

    /// Removes `sources` from `owner`'s (set difference, see [`EndpointSources::remove`]).
    pub fn remove_endpoint(&mut self, owner: &str, sources: &EndpointSources) {
        if let Some(existing) = self.endpoints.get_mut(owner) {
            existing.remove(sources);
            if existing.is_empty() {
                self.endpoints.remove(owner);
            }
        }
    }

    /// Set difference with `other`, owner by owner.
    pub fn remove(&mut self, other: &ConferenceSourceMap) {
        for (owner, sources) in other.iter() {
            self.remove_endpoint(owner, sources);
        }
    }

    pub fn minus(&self, other: &ConferenceSourceMap) -> ConferenceSourceMap {
        let mut out = self.clone();
        out.remove(other);
        out
    }

    /// What `newer` adds to and removes from `self`.
    pub fn diff(&self, newer: &ConferenceSourceMap) -> SourceDiff {
        SourceDiff {
            added: newer.minus(self),
            removed: self.minus(newer),
        }
    }

    /// Every owner's sources with simulcast stripped: the first SSRC of each SIM group and its FID
    /// partner stay, the other layers, their RTX SSRCs and the SIM groups go.
    pub fn stripped_simulcast(&self) -> ConferenceSourceMap {
        let mut out = ConferenceSourceMap::new();
        for (owner, sources) in self.iter() {
            out.insert(owner, sources.stripped_simulcast());
        }
        out
    }

    /// The map without `owner`: what that participant is told about the others.
    pub fn without(&self, owner: &str) -> ConferenceSourceMap {
        let mut out = self.clone();
        out.endpoints.remove(owner);
        out
    }

    /// Reads the sources of Jingle contents. Each source belongs to its `ssrc-info owner` (reduced to the
    /// endpoint ID) or else to `default_owner`; each group to the owner of its first SSRC among the same
    /// stanza's sources, or else to `default_owner`. Without a default, an unowned source is an error.
    pub fn from_contents(
        contents: &[Content],
        default_owner: Option<&str>,
    ) -> Result<ConferenceSourceMap, ParseError> {
        let mut map = ConferenceSourceMap::new();
        for (media, description) in rtp_descriptions(contents)? {
            for s in &description.sources {
                let owner = match (s.owner.as_deref(), default_owner) {
                    (Some(o), _) => endpoint_id_of(o),
                    (None, Some(d)) => d,
                    (None, None) => {
                        return Err(ParseError::invalid(
                            "source",
                            format!("source {} has no ssrc-info owner", s.ssrc),
                        ));
                    }
                };
                map.endpoints
                    .entry(owner.to_owned())
                    .or_default()
                    .add_source(media, s);
            }
            for g in &description.ssrc_groups {
                let owner = g
                    .ssrcs
                    .first()
                    .and_then(|first| map.owner_of_media(media, *first))
                    .or(default_owner)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ParseError::invalid(
                            "ssrc-group",
                            format!(
                                "cannot tell the owner of {} group {:?}: its first SSRC is not a source of this stanza",
                                g.semantics, g.ssrcs
                            ),
                        )
                    })?;
                map.endpoints
                    .entry(owner)
                    .or_default()
                    .add_group(media, g.clone());
            }
        }
        map.endpoints.retain(|_, s| !s.is_empty());
        Ok(map)
    }

    /// Contents named `audio` / `video` (only those with sources) whose descriptions list every source
    /// with its `ssrc-info owner`, then the groups: the XML form of source-add / source-remove.
    pub fn to_contents(&self) -> Vec<Content> {
        let mut contents = Vec::new();
        self.add_to_contents(&mut contents);
        contents
    }

    /// Appends the sources to the `audio` / `video` contents of `contents` (the offer's, in a
    /// session-initiate), creating contents or descriptions that are missing.
    pub fn add_to_contents(&self, contents: &mut Vec<Content>) {
        for media in [MediaType::Audio, MediaType::Video] {
            let mut sources = Vec::new();
            let mut groups = Vec::new();
            for (owner, es) in self.iter() {
                let Some(ms) = es.media(media) else { continue };
                sources.extend(ms.sources.iter().map(|s| Source {
                    owner: Some(owner.to_owned()),
                    ..s.clone()
                }));
                groups.extend(ms.groups.iter().cloned());
            }
            if sources.is_empty() && groups.is_empty() {
                continue;
            }
            let name = media.to_string();
            let index = match contents
                .iter()
                .position(|c| c.media() == Some(media) || c.name == name)
            {
                Some(i) => i,
                None => {
                    contents.push(Content::named(&name));
                    contents.len() - 1
                }
            };
            if let Some(content) = contents.get_mut(index) {
                let description = content
                    .description
                    .get_or_insert_with(|| RtpDescription::new(media));
                description.sources.extend(sources);
                description.ssrc_groups.extend(groups);
            }
        }
    }

    /// Checks whether `owner` may add `sources`, and returns what would be added: the sources, and the
    /// groups minus empty ones and ones already signalled (ignored, as Jicofo does).
    ///
    /// Refused: SSRC 0; an SSRC used by anybody (including `owner` itself); an MSID another owner uses;
    /// more than `limits` SSRCs or groups for `owner`; a group naming an SSRC that is not a source of
    /// `owner`; and a result that [`validate_endpoint`] refuses.
    pub fn validate_add(
        &self,
        owner: &str,
        sources: &EndpointSources,
        limits: &SourceLimits,
    ) -> Result<EndpointSources, ValidationError> {
        let existing = self.get(owner).cloned().unwrap_or_default();
        let mut accepted = EndpointSources::default();
        let mut seen = HashSet::new();
        for (media, s) in sources.sources() {
            if s.ssrc == 0 {
                return Err(ValidationError::InvalidSsrc(s.ssrc));
            }
            if let Some(o) = self.owner_of(s.ssrc) {
                return Err(ValidationError::SsrcConflict {
                    ssrc: s.ssrc,
                    owner: o.to_owned(),
                });
            }
            if !seen.insert(s.ssrc) {
                return Err(ValidationError::SsrcConflict {
                    ssrc: s.ssrc,
                    owner: owner.to_owned(),
                });
            }
            if let Some(msid) = s.msid()
                && let Some(o) = self.owner_of_msid(msid)
                && o != owner
            {
                return Err(ValidationError::MsidConflict {
                    msid: msid.to_owned(),
                    owner: o.to_owned(),
                });
            }
            accepted.add_source(media, s);
        }
        if existing.ssrc_count() + accepted.ssrc_count() > limits.max_ssrcs {
            return Err(ValidationError::TooManySsrcs {
                owner: owner.to_owned(),
                limit: limits.max_ssrcs,
            });
        }

        let mut resulting = existing.clone();
        resulting.add(&accepted);
        for (media, g) in sources.groups() {
            let already = existing.media(media).is_some_and(|m| m.groups.contains(g));
            if g.ssrcs.is_empty() || already {
                continue;
            }
            let known = resulting.media(media);
            if let Some(unknown) = g
                .ssrcs
                .iter()
                .find(|s| !known.is_some_and(|m| m.contains_ssrc(**s)))
            {
                return Err(ValidationError::GroupUnknownSsrc {
                    semantics: g.semantics.clone(),
                    ssrcs: g.ssrcs.clone(),
                    ssrc: *unknown,
                });
            }
            accepted.add_group(media, g.clone());
        }
        if existing.group_count() + accepted.group_count() > limits.max_groups {
            return Err(ValidationError::TooManyGroups {
                owner: owner.to_owned(),
                limit: limits.max_groups,
            });
        }
        resulting.add(&accepted);
        validate_endpoint(owner, &resulting)?;
        Ok(accepted)
    }

    /// [`validate_add`](Self::validate_add), then adds; returns what was added. On error the map is
    /// unchanged.
    pub fn try_add(
        &mut self,
        owner: &str,
        sources: &EndpointSources,
        limits: &SourceLimits,
    ) -> Result<EndpointSources, ValidationError> {
        let accepted = self.validate_add(owner, sources, limits)?;
        self.add_endpoint(owner, &accepted);
        Ok(accepted)
    }

    /// Checks whether `owner` may remove `sources`, and returns what would be removed: `owner`'s own
    /// version of each source (matched by SSRC alone, as clients name only the SSRC), the listed groups,
    /// and every group that contains a removed SSRC.
    pub fn validate_remove(
        &self,
        owner: &str,
        sources: &EndpointSources,
    ) -> Result<EndpointSources, ValidationError> {
        let existing = self.get(owner).cloned().unwrap_or_default();
        let mut removed = EndpointSources::default();
        for (_, s) in sources.sources() {
            let (media, found) =
                existing
                    .find_source(s.ssrc)
                    .ok_or_else(|| ValidationError::SourceNotFound {
                        owner: owner.to_owned(),
                        ssrc: s.ssrc,
                    })?;
            removed.add_source(media, found);
        }
        for (media, g) in sources.groups() {
            if !existing.media(media).is_some_and(|m| m.groups.contains(g)) {
                return Err(ValidationError::GroupNotFound {
                    owner: owner.to_owned(),
                    semantics: g.semantics.clone(),
                    ssrcs: g.ssrcs.clone(),
                });
            }
            removed.add_group(media, g.clone());
        }
        for (media, g) in existing.groups() {
            let touched = removed
                .media(media)
                .is_some_and(|m| g.ssrcs.iter().any(|s| m.contains_ssrc(*s)));
            if touched {
                removed.add_group(media, g.clone());
            }
        }
        validate_endpoint(owner, &existing.minus(&removed))?;
        Ok(removed)
    }

    /// [`validate_remove`](Self::validate_remove), then removes; returns what was removed. On error the
    /// map is unchanged.
    pub fn try_remove(
        &mut self,
        owner: &str,
        sources: &EndpointSources,
    ) -> Result<EndpointSources, ValidationError> {
        let removed = self.validate_remove(owner, sources)?;
        self.remove_endpoint(owner, &removed);
        Ok(removed)
    }
}

/// Which MSID-bearing unit a source belongs to: a SIM group with its FID partners, a lone FID group, or
/// the source alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Group(usize),
    Single(u32),
}

fn unit_of(ssrc: u32, groups: &[SsrcGroup]) -> Unit {
    let sim_containing = |s: u32| {
        groups
            .iter()
            .position(|g| g.semantics == Semantics::Sim && g.ssrcs.contains(&s))
    };
    if let Some(i) = sim_containing(ssrc) {
        return Unit::Group(i);
    }
    if let Some(i) = groups
        .iter()
        .position(|g| g.semantics == Semantics::Fid && g.ssrcs.contains(&ssrc))
    {
        let primary = groups
            .get(i)
            .and_then(|g| g.ssrcs.first())
            .copied()
            .unwrap_or(ssrc);
        return sim_containing(primary).map_or(Unit::Group(i), Unit::Group);
    }
    Unit::Single(ssrc)
}

/// The internal consistency rules of one owner's sources: FID groups have exactly two SSRCs; every
/// grouped SSRC is a source with an MSID; a group's sources share one MSID; and, per media type, distinct
/// units (simulcast stream with its RTX, lone FID pair, lone source) have distinct MSIDs.
pub fn validate_endpoint(owner: &str, sources: &EndpointSources) -> Result<(), ValidationError> {
    for (_, ms) in sources.by_media() {
        for g in &ms.groups {
            if g.semantics == Semantics::Fid && g.ssrcs.len() != 2 {
                return Err(ValidationError::InvalidFidGroup {
                    ssrcs: g.ssrcs.clone(),
                });
            }
            let mut group_msid = None;
            for ssrc in &g.ssrcs {
                let source = ms
                    .source(*ssrc)
                    .ok_or_else(|| ValidationError::GroupUnknownSsrc {
                        semantics: g.semantics.clone(),
                        ssrcs: g.ssrcs.clone(),
                        ssrc: *ssrc,
                    })?;
                let msid = source
                    .msid()
                    .ok_or(ValidationError::MissingMsid { ssrc: *ssrc })?;
                match group_msid {
                    None => group_msid = Some(msid),
                    Some(m) if m != msid => {
                        return Err(ValidationError::GroupMsidMismatch {
                            semantics: g.semantics.clone(),
                            ssrcs: g.ssrcs.clone(),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let mut unit_by_msid: HashMap<&str, Unit> = HashMap::new();
        for s in &ms.sources {
            let Some(msid) = s.msid() else { continue };
            let unit = unit_of(s.ssrc, &ms.groups);
            match unit_by_msid.get(msid) {
                Some(u) if *u != unit => {
                    return Err(ValidationError::MsidConflict {
                        msid: msid.to_owned(),
                        owner: owner.to_owned(),
                    });
                }
                Some(_) => {}
                None => {
                    unit_by_msid.insert(msid, unit);
                }
            }
        }
    }
    Ok(())
}
