//! XEP-0115 entity capabilities: the features of client builds, learned from disco#info and kept by
//! the `node#ver` their presences advertise, so that each build is asked once.
//!
//! Both key and answer come from clients, so the cache trusts neither: an entry is stored only when the
//! disco#info answer hashes to the advertised `ver` (XEP-0115 §5.1 verification string, SHA-1, as
//! lib-jitsi-meet's `Caps.js` computes it) — otherwise one client could advertise another build's
//! `ver` with a forged answer and strip audio from everyone's offer — and the cache holds at most
//! [`CAPS_CACHE_CAPACITY`] entries, evicting the least recently used (Smack, which Jicofo uses, keeps
//! 1000 likewise).

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use minidom::Element;

use super::offer::Features;

/// XEP-0030 service discovery, the query XEP-0115 capabilities are answers to.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Entries kept; one per client build in use, so a few dozen in practice.
pub const CAPS_CACHE_CAPACITY: usize = 1000;
/// Longer `node#ver` keys are not cached (real ones are a URL and a 28-character hash).
pub const MAX_CAPS_KEY_LEN: usize = 256;
const NS_DATA_FORMS: &str = "jabber:x:data";
/// The namespace of `xml:lang`.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The `<c xmlns='http://jabber.org/protocol/caps' hash node ver/>` of a presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub hash: Option<String>,
    pub node: String,
    pub ver: String,
}

impl Caps {
    /// The cache key, `node#ver`.
    pub fn key(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }

    /// Whether `query` (a disco#info answer) is what `ver` claims: `hash='sha-1'` and the base64 SHA-1
    /// of its verification string equals `ver`.
    pub fn verifies(&self, query: &Element) -> bool {
        if !self
            .hash
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case("sha-1"))
        {
            return false;
        }
        ver_of(query) == self.ver
    }
}

/// The XEP-0115 §5.1 verification string of a disco#info answer: identities
/// (`category/type/lang/name<`, sorted), features (`var<`, sorted), then extended data forms (sorted by
/// FORM_TYPE: the FORM_TYPE, then each field sorted by `var` with its values sorted).
pub fn verification_string(query: &Element) -> String {
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.is("identity", NS_DISCO_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}<",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr_ns(XML_NS, "lang").unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<String> = query
        .children()
        .filter(|c| c.is("feature", NS_DISCO_INFO))
        .filter_map(|f| f.attr("var"))
        .map(|v| format!("{v}<"))
        .collect();
    features.sort();
    let mut forms: Vec<(String, String)> = query
        .children()
        .filter(|c| c.is("x", NS_DATA_FORMS))
        .filter_map(form_string)
        .collect();
    forms.sort();
    let mut s = identities.concat();
    s.push_str(&features.concat());
    for (_, f) in forms {
        s.push_str(&f);
    }
    s
}

/// One extended form: `(FORM_TYPE, its part of the verification string)`; forms without a FORM_TYPE
/// are skipped (XEP-0115 §5.4).
fn form_string(form: &Element) -> Option<(String, String)> {
    let values = |f: &Element| -> Vec<String> {
        let mut v: Vec<String> = f
            .children()
            .filter(|c| c.is("value", NS_DATA_FORMS))
            .map(|c| c.text())
            .collect();
        v.sort();
        v
    };
    let fields: Vec<&Element> = form
        .children()
        .filter(|c| c.is("field", NS_DATA_FORMS))
        .collect();
    let form_type = fields
        .iter()
        .find(|f| f.attr("var") == Some("FORM_TYPE"))
        .and_then(|f| values(f).into_iter().next())?;
    let mut rest: Vec<(String, Vec<String>)> = fields
        .iter()
        .filter_map(|f| {
            let var = f.attr("var")?;
            (var != "FORM_TYPE").then(|| (var.to_owned(), values(f)))
        })
        .collect();
    rest.sort();
    let mut s = format!("{form_type}<");
    for (var, vals) in rest {
        s.push_str(&var);
        s.push('<');
        for v in vals {
            s.push_str(&v);
            s.push('<');
        }
    }
    Some((form_type, s))
}

/// The SHA-1 `ver` a client computes for its own disco#info answer `query`.
pub fn ver_of(query: &Element) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        verification_string(query).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Features by `node#ver`, least recently used evicted beyond the capacity.
#[derive(Debug, Clone)]
pub struct CapsCache {
    capacity: usize,
    entries: HashMap<String, (Features, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl Default for CapsCache {
    fn default() -> Self {
        Self::new(CAPS_CACHE_CAPACITY)
    }
}

impl CapsCache {
    pub fn new(capacity: usize) -> Self {
        CapsCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, used)) = self.entries.get_mut(key) {
            self.order.remove(used);
            *used = tick;
            self.order.insert(tick, key.to_owned());
        }
    }

    /// The features of the build advertising `caps`, if known.
    pub fn get(&mut self, caps: &Caps) -> Option<Features> {
        let key = caps.key();
        let features = self.entries.get(&key).map(|(f, _)| *f)?;
        self.touch(&key);
        Some(features)
    }

    /// Remembers `features` (read from `query`) for `caps` if `query` verifies against it; returns
    /// whether it was stored.
    pub fn insert_verified(&mut self, caps: &Caps, query: &Element, features: Features) -> bool {
        let key = caps.key();
        if key.len() > MAX_CAPS_KEY_LEN || !caps.verifies(query) {
            return false;
        }
        if let Some((f, _)) = self.entries.get_mut(&key) {
            *f = features;
            self.touch(&key);
            return true;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (features, self.tick));
        true
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    /// XEP-0115 §5.2, the simple example.
    const SIMPLE: &str = r#"<query xmlns="http://jabber.org/protocol/disco#info" node="http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0=">
        <identity category="client" name="Exodus 0.9.1" type="pc"/>
        <feature var="http://jabber.org/protocol/caps"/><feature var="http://jabber.org/protocol/disco#info"/>
        <feature var="http://jabber.org/protocol/disco#items"/><feature var="http://jabber.org/protocol/muc"/></query>"#;

    /// XEP-0115 §5.3, the complex example (two identities, an extended form).
    const COMPLEX: &str = r#"<query xmlns="http://jabber.org/protocol/disco#info" node="http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w=">
        <identity xml:lang="en" category="client" name="Psi 0.11" type="pc"/>
        <identity xml:lang="el" category="client" name="Ψ 0.11" type="pc"/>
        <feature var="http://jabber.org/protocol/caps"/><feature var="http://jabber.org/protocol/disco#info"/>
        <feature var="http://jabber.org/protocol/disco#items"/><feature var="http://jabber.org/protocol/muc"/>
        <x xmlns="jabber:x:data" type="result">
          <field var="FORM_TYPE" type="hidden"><value>urn:xmpp:dataforms:softwareinfo</value></field>
          <field var="ip_version"><value>ipv4</value><value>ipv6</value></field>
          <field var="os"><value>Mac</value></field><field var="os_version"><value>10.5.1</value></field>
          <field var="software"><value>Psi</value></field><field var="software_version"><value>0.11</value></field>
        </x></query>"#;

    #[test]
    fn ver_matches_the_xep_examples() {
        assert_eq!(ver_of(&el(SIMPLE)), "QgayPKawpkPSDYmwT/WM94uAlu0=");
        assert_eq!(ver_of(&el(COMPLEX)), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }

    fn caps(ver: &str) -> Caps {
        Caps {
            hash: Some("sha-1".into()),
            node: "https://jitsi.org/jitsi-meet".into(),
            ver: ver.into(),
        }
    }

    #[test]
    fn only_answers_that_hash_to_the_advertised_ver_are_cached() {
        let mut cache = CapsCache::new(10);
        let query = el(SIMPLE);
        let honest = caps(&ver_of(&query));
        let forged_features = Features {
            audio: false,
            ..Features::default()
        };
        // A client advertising the honest build's ver with another answer.
        let forged = el(
            r#"<query xmlns="http://jabber.org/protocol/disco#info"><identity category="client" type="web"/></query>"#,
        );
        assert!(!cache.insert_verified(&honest, &forged, forged_features));
        assert_eq!(cache.get(&honest), None);
        // Wrong or missing hash algorithm.
        let mut md5 = honest.clone();
        md5.hash = Some("md5".into());
        assert!(!cache.insert_verified(&md5, &query, Features::default()));
        let mut legacy = honest.clone();
        legacy.hash = None;
        assert!(!cache.insert_verified(&legacy, &query, Features::default()));
        // The real answer is cached.
        assert!(cache.insert_verified(&honest, &query, Features::default()));
        assert_eq!(cache.get(&honest), Some(Features::default()));
        // An absurdly long node is not.
        let mut long = honest.clone();
        long.node = "x".repeat(MAX_CAPS_KEY_LEN);
        assert!(!cache.insert_verified(&long, &query, Features::default()));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let mut cache = CapsCache::new(3);
        let answers: Vec<Element> = (0..5)
            .map(|i| {
                el(&format!(
                    r#"<query xmlns="http://jabber.org/protocol/disco#info"><identity category="client" type="web" name="build-{i}"/></query>"#
                ))
            })
            .collect();
        let keys: Vec<Caps> = answers.iter().map(|q| caps(&ver_of(q))).collect();
        for i in 0..3 {
            assert!(cache.insert_verified(&keys[i], &answers[i], Features::default()));
        }
        // Using build 0 makes build 1 the oldest.
        assert!(cache.get(&keys[0]).is_some());
        assert!(cache.insert_verified(&keys[3], &answers[3], Features::default()));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&keys[1]).is_none(), "least recently used evicted");
        assert!(cache.get(&keys[0]).is_some() && cache.get(&keys[2]).is_some());
        // Any number of distinct builds keeps it at the capacity.
        for i in 0..2000 {
            let q = el(&format!(
                r#"<query xmlns="http://jabber.org/protocol/disco#info"><feature var="urn:x:{i}"/></query>"#
            ));
            cache.insert_verified(&caps(&ver_of(&q)), &q, Features::default());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.order.len(), cache.len());
    }
}
