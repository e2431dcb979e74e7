//! Multi-user chat as the focus uses it (XEP-0045): reading occupant presence of conference rooms and of
//! the brewery, and writing the focus's own join/update/leave presence and room-owner IQs.

use jid::{BareJid, Jid};
use minidom::Element;
use signaling::ns;
use signaling::xml::Builder;

use super::caps::Caps;

/// XEP-0115 entity capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
pub use super::caps::NS_DISCO_INFO;
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

/// An occupant's presence, as far as the focus cares.
#[derive(Debug, Clone)]
pub struct MucPresence {
    pub room: BareJid,
    /// The occupant's nickname: the endpoint ID for clients, `focus` for us, the bridge's MUC nickname.
    pub nick: String,
    /// `false` for `type='unavailable'`.
    pub available: bool,
    /// `type='error'` (e.g. a refused join).
    pub error: bool,
    /// The real JID from `<item jid=…>` (visible with whois=anyone, or to moderators).
    pub real_jid: Option<String>,
    pub role: Option<String>,
    pub affiliation: Option<String>,
    /// Status codes: 110 = this is our own presence, 201 = the room was just created.
    pub status_codes: Vec<u16>,
    pub stats_id: Option<String>,
    pub region: Option<String>,
    /// XEP-0115 caps, the key of the feature cache.
    pub caps: Option<Caps>,
    /// The whole stanza, for the brewery's `stats` child.
    pub element: Element,
}

impl MucPresence {
    /// Reads a presence from `room/nick`. `None` for presences that do not come from a MUC occupant.
    pub fn parse(el: &Element) -> Option<MucPresence> {
        if el.name() != "presence" {
            return None;
        }
        let from: Jid = el.attr("from")?.parse().ok()?;
        let nick = from.resource()?.to_string();
        let room = from.to_bare();
        let kind = el.attr("type").unwrap_or("available");
        let x = el.get_child("x", ns::MUC_USER);
        let item = x.and_then(|x| x.get_child("item", ns::MUC_USER));
        let status_codes = x
            .map(|x| {
                x.children()
                    .filter(|c| c.is("status", ns::MUC_USER))
                    .filter_map(|c| c.attr("code")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let text_child = |name: &str| {
            el.children()
                .find(|c| c.name() == name)
                .map(|c| c.text().trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        let caps = el.get_child("c", NS_CAPS).and_then(|c| {
            Some(Caps {
                hash: c.attr("hash").map(str::to_owned),
                node: c.attr("node")?.to_owned(),
                ver: c.attr("ver")?.to_owned(),
            })
        });
        Some(MucPresence {
            room,
            nick,
            available: kind != "unavailable" && kind != "error",
            error: kind == "error",
            real_jid: item.and_then(|i| i.attr("jid")).map(str::to_owned),
            role: item.and_then(|i| i.attr("role")).map(str::to_owned),
            affiliation: item.and_then(|i| i.attr("affiliation")).map(str::to_owned),
            status_codes,
            stats_id: text_child("stats-id"),
            region: text_child("jitsi_participant_region").or_else(|| text_child("region")),
            caps,
            element: el.clone(),
        })
    }

    pub fn is_self(&self) -> bool {
        self.status_codes.contains(&110)
    }
}

/// Initial presence to join `room/nick` (with the MUC `<x/>` and our extensions).
pub fn join_presence(room: &BareJid, nick: &str, extensions: &[Element]) -> Element {
    Builder::new("presence", ns::JABBER_CLIENT)
        .attr("to", format!("{room}/{nick}"))
        .child(
            // No history: the focus does not read messages.
            Builder::new("x", ns::MUC)
                .child(
                    Builder::new("history", ns::MUC)
                        .attr("maxstanzas", 0)
                        .build(),
                )
                .build(),
        )
        .children(extensions.iter().cloned())
        .build()
}

/// Presence update in a room we are in.
pub fn update_presence(room: &BareJid, nick: &str, extensions: &[Element]) -> Element {
    Builder::new("presence", ns::JABBER_CLIENT)
        .attr("to", format!("{room}/{nick}"))
        .children(extensions.iter().cloned())
        .build()
}

/// Leaves a room.
pub fn leave_presence(room: &BareJid, nick: &str) -> Element {
    Builder::new("presence", ns::JABBER_CLIENT)
        .attr("to", format!("{room}/{nick}"))
        .attr("type", "unavailable")
        .build()
}

/// `<conference-properties>` the client reads from the focus's presence.
pub fn conference_properties(properties: &[(&str, &str)]) -> Element {
    Builder::new("conference-properties", ns::FOCUS)
        .children(properties.iter().map(|(k, v)| {
            Builder::new("property", ns::FOCUS)
                .attr("key", *k)
                .attr("value", *v)
                .build()
        }))
        .build()
}

/// `<versions><component name='focus'>…</component></versions>`.
pub fn versions(version: &str) -> Element {
    Builder::new("versions", ns::JITMEET)
        .child(
            Builder::new("component", ns::JITMEET)
                .attr("name", "focus")
                .text(version)
                .build(),
        )
        .build()
}

/// IQ get payload asking for the room configuration form.
pub fn config_form_query() -> Element {
    Element::bare("query", ns::MUC_OWNER)
}

/// IQ set payload submitting the configuration: real JIDs visible to everyone, so clients can recognise
/// the focus by its JID (lib-jitsi-meet ignores members whose JID it cannot see).
pub fn config_submit() -> Element {
    let field = |var: &str, value: &str| {
        Builder::new("field", ns::DATA_FORMS)
            .attr("var", var.to_owned())
            .child(Builder::new("value", ns::DATA_FORMS).text(value).build())
            .build()
    };
    Builder::new("query", ns::MUC_OWNER)
        .child(
            Builder::new("x", ns::DATA_FORMS)
                .attr("type", "submit")
                .child(field(
                    "FORM_TYPE",
                    "http://jabber.org/protocol/muc#roomconfig",
                ))
                .child(field("muc#roomconfig_whois", "anyone"))
                .build(),
        )
        .build()
}

/// The value of a field of a data form inside a `muc#owner` query answer.
pub fn form_field(query: &Element, var: &str) -> Option<String> {
    query
        .get_child("x", ns::DATA_FORMS)?
        .children()
        .filter(|f| f.is("field", ns::DATA_FORMS))
        .find(|f| f.attr("var") == Some(var))?
        .get_child("value", ns::DATA_FORMS)
        .map(|v| v.text().trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// IQ set payload making `jid` (a real bare JID) an owner of the room.
pub fn grant_owner(jid: &str) -> Element {
    Builder::new("query", NS_MUC_ADMIN)
        .child(
            Builder::new("item", NS_MUC_ADMIN)
                .attr("affiliation", "owner")
                .attr("jid", jid.to_owned())
                .build(),
        )
        .build()
}

/// IQ get payload of a disco#info query.
pub fn disco_info_query(node: Option<&str>) -> Element {
    Builder::new("query", NS_DISCO_INFO)
        .opt_attr("node", node.map(str::to_owned))
        .build()
}

/// The `var`s of the `<feature>`s of a disco#info answer.
pub fn disco_features(query: &Element) -> Vec<String> {
    query
        .children()
        .filter(|c| c.is("feature", NS_DISCO_INFO))
        .filter_map(|c| c.attr("var"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_presence_is_read() {
        let el: Element = r#"<presence xmlns="jabber:client" from="room1@conference.meet.example/ab12cd34" to="focus@auth.meet.example/focus">
            <x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="4f1d@meet.example/xyz"/></x>
            <stats-id>Lorna-Ha6</stats-id>
            <c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://jitsi.org/jitsi-meet" ver="k0R1ZSnKBGuqy2V2RGzGkuJ5fG8="/>
            <jitsi_participant_region>eu</jitsi_participant_region>
          </presence>"#
            .parse()
            .unwrap();
        let p = MucPresence::parse(&el).unwrap();
        assert_eq!(p.room.to_string(), "room1@conference.meet.example");
        assert_eq!(p.nick, "ab12cd34");
        assert!(p.available && !p.is_self());
        assert_eq!(p.real_jid.as_deref(), Some("4f1d@meet.example/xyz"));
        assert_eq!(p.stats_id.as_deref(), Some("Lorna-Ha6"));
        assert_eq!(p.region.as_deref(), Some("eu"));
        assert_eq!(
            p.caps,
            Some(Caps {
                hash: Some("sha-1".into()),
                node: "https://jitsi.org/jitsi-meet".into(),
                ver: "k0R1ZSnKBGuqy2V2RGzGkuJ5fG8=".into()
            })
        );
    }

    #[test]
    fn self_presence_and_leave() {
        let el: Element = r#"<presence xmlns="jabber:client" from="r@c.example/focus" type="unavailable">
            <x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="none"/><status code="110"/></x></presence>"#
            .parse()
            .unwrap();
        let p = MucPresence::parse(&el).unwrap();
        assert!(p.is_self() && !p.available);
        let bare: Element = r#"<presence xmlns="jabber:client" from="c.example"/>"#
            .parse()
            .unwrap();
        assert!(MucPresence::parse(&bare).is_none());
    }

    #[test]
    fn config_form_fields_are_read() {
        let q: Element = r#"<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="form">
            <field var="FORM_TYPE" type="hidden"><value>http://jabber.org/protocol/muc#roomconfig</value></field>
            <field var="muc#roominfo_meetingId"><value>7c0d4f2e-1111-4222-8333-944455556666</value></field>
            <field var="muc#roomconfig_whois" type="list-single"><value>moderators</value></field></x></query>"#
            .parse()
            .unwrap();
        assert_eq!(
            form_field(&q, "muc#roominfo_meetingId").as_deref(),
            Some("7c0d4f2e-1111-4222-8333-944455556666")
        );
        assert_eq!(form_field(&q, "nope"), None);
        let submit = config_submit();
        assert_eq!(
            form_field(&submit, "muc#roomconfig_whois").as_deref(),
            Some("anyone")
        );
    }
}
