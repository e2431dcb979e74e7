//! Stanza namespace translation between component streams and the `jabber:client` view owners get.

use minidom::Element;

pub(crate) const NS_CLIENT: &str = "jabber:client";
pub(crate) const NS_COMPONENT: &str = "jabber:component:accept";
pub(crate) const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub(crate) const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub(crate) const NS_PING: &str = "urn:xmpp:ping";
pub(crate) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

/// Rewrites every element in namespace `from` (the stanza and the children that inherited its default
/// namespace, such as `<error>`, `<body>`, `<status>`) into namespace `to`. Payloads in their own
/// namespaces are untouched. Returns the element unchanged when it is not in `from`.
pub(crate) fn translate_ns(el: Element, from: &str, to: &str) -> Element {
    if el.ns() != from {
        return el;
    }
    rebuild(el, from, to)
}

fn rebuild(mut el: Element, from: &str, to: &str) -> Element {
    let ns = el.ns();
    let mut out = Element::bare(el.name(), if ns == from { to.to_owned() } else { ns });
    *out.attrs_mut() = el.attrs().clone();
    for node in el.take_nodes() {
        match node {
            minidom::Node::Element(child) => {
                if subtree_has_ns(&child, from) {
                    out.append_child(rebuild(child, from, to));
                } else {
                    out.append_child(child);
                }
            }
            minidom::Node::Text(text) => out.append_text_node(text),
        }
    }
    out
}

fn subtree_has_ns(el: &Element, ns: &str) -> bool {
    el.ns() == ns || el.children().any(|c| subtree_has_ns(c, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_stanzas_become_client_stanzas_and_back() {
        let wire: Element =
            "<message xmlns='jabber:component:accept' from='a@b/c' to='focus.example' \
             type='error'><body>hi</body><x xmlns='urn:x'><y/></x><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
                .parse()
                .unwrap();
        let client = translate_ns(wire.clone(), NS_COMPONENT, NS_CLIENT);
        assert_eq!(client.ns(), NS_CLIENT);
        assert_eq!(client.attr("from"), Some("a@b/c"));
        assert!(client.get_child("body", NS_CLIENT).is_some());
        assert!(client.get_child("error", NS_CLIENT).is_some());
        assert_eq!(
            client.get_child("x", "urn:x").map(|x| x.children().count()),
            Some(1)
        );
        assert_eq!(
            client.get_child("body", NS_CLIENT).map(Element::text),
            Some("hi".into())
        );
        // The typed parsers accept the translated stanza.
        assert!(xmpp_parsers::message::Message::try_from(client.clone()).is_ok());
        assert_eq!(translate_ns(client, NS_CLIENT, NS_COMPONENT), wire);
    }

    #[test]
    fn other_namespaces_are_left_alone() {
        let el: Element =
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
                .parse()
                .unwrap();
        assert_eq!(translate_ns(el.clone(), NS_COMPONENT, NS_CLIENT), el);
    }
}
