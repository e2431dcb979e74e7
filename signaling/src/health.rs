//! Health and shutdown IQ payloads between the focus and a bridge.
//!
//! The focus sends `<iq type='get'><healthcheck xmlns='http://jitsi.org/protocol/healthcheck'/></iq>` to
//! each bridge's brewery occupant JID every 10 s. A healthy bridge answers with an empty result; an
//! unhealthy one with `internal-server-error` (or `service-unavailable`). `graceful-shutdown` and
//! `force-shutdown` (`http://jitsi.org/protocol/colibri`) are empty IQ sets asking a bridge to stop.

use crate::colibri2::{Colibri2ErrorResponse, Condition};
use crate::error::ParseError;
use crate::ns;
use crate::xml::{self, Element, XmlElement};

/// Defines an empty IQ payload element.
macro_rules! empty_payload {
    ($(#[$m:meta])* $name:ident, $element:literal, $ns:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $name {
            pub const ELEMENT: &'static str = $element;
            pub const NS: &'static str = $ns;
        }

        impl XmlElement for $name {
            fn from_element(el: &Element) -> Result<Self, ParseError> {
                xml::expect(el, $element, $ns)?;
                Ok($name)
            }

            fn to_element(&self) -> Element {
                Element::bare($element, $ns)
            }
        }
    };
}

empty_payload!(
    /// `<healthcheck xmlns='http://jitsi.org/protocol/healthcheck'/>` (IQ get, focus → bridge).
    HealthCheck,
    "healthcheck",
    ns::HEALTHCHECK
);

empty_payload!(
    /// `<graceful-shutdown xmlns='http://jitsi.org/protocol/colibri'/>` (IQ set): stop accepting
    /// conferences and exit when the last one ends.
    GracefulShutdown,
    "graceful-shutdown",
    ns::COLIBRI
);

empty_payload!(
    /// `<force-shutdown xmlns='http://jitsi.org/protocol/colibri'/>` (IQ set): exit now.
    ForceShutdown,
    "force-shutdown",
    ns::COLIBRI
);

/// What the bridge answers when its own checks fail: `internal-server-error` with the reason as text.
pub fn unhealthy_error(message: &str) -> Colibri2ErrorResponse {
    Colibri2ErrorResponse::new(
        Condition::InternalServerError,
        None,
        Some(message.to_owned()),
    )
}

/// How the focus classifies a health-check response (a timeout is the caller's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckOutcome {
    /// IQ result.
    Passed,
    /// `internal-server-error` or `service-unavailable`: the bridge is not operational.
    Failed(Colibri2ErrorResponse),
    /// Any other error: logged, does not change the bridge's state.
    UnexpectedError(Colibri2ErrorResponse),
}

impl HealthCheckOutcome {
    /// Classifies the `<iq>` received in answer to a [`HealthCheck`].
    pub fn from_response(iq: &Element) -> Result<Self, ParseError> {
        if iq.name() != "iq" {
            return Err(ParseError::invalid(
                "iq",
                format!("expected an IQ, found <{}>", iq.name()),
            ));
        }
        match xml::attr(iq, "iq", "type")? {
            "result" => Ok(HealthCheckOutcome::Passed),
            "error" => {
                let error = Colibri2ErrorResponse::from_iq(iq)?;
                Ok(match error.condition {
                    Condition::InternalServerError | Condition::ServiceUnavailable => {
                        HealthCheckOutcome::Failed(error)
                    }
                    _ => HealthCheckOutcome::UnexpectedError(error),
                })
            }
            other => Err(ParseError::BadAttribute {
                element: "iq",
                attribute: "type",
                value: other.chars().take(64).collect(),
                reason: "a response is result or error".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(text: &str) -> Element {
        xml::parse_element(text).unwrap()
    }

    #[test]
    fn payloads_roundtrip() {
        for (text, name) in [
            (
                r#"<healthcheck xmlns="http://jitsi.org/protocol/healthcheck"/>"#,
                "healthcheck",
            ),
            (
                r#"<graceful-shutdown xmlns="http://jitsi.org/protocol/colibri"/>"#,
                "graceful-shutdown",
            ),
            (
                r#"<force-shutdown xmlns="http://jitsi.org/protocol/colibri"/>"#,
                "force-shutdown",
            ),
        ] {
            let el = xml::parse_element(text).unwrap();
            assert_eq!(el.name(), name);
            match name {
                "healthcheck" => {
                    let v = HealthCheck::from_xml(text).unwrap();
                    assert_eq!(HealthCheck::from_element(&v.to_element()), Ok(v));
                    assert_eq!(v.to_element(), el);
                }
                "graceful-shutdown" => {
                    let v = GracefulShutdown::from_xml(text).unwrap();
                    assert_eq!(GracefulShutdown::from_element(&v.to_element()), Ok(v));
                    assert_eq!(v.to_element(), el);
                }
                _ => {
                    let v = ForceShutdown::from_xml(text).unwrap();
                    assert_eq!(ForceShutdown::from_element(&v.to_element()), Ok(v));
                    assert_eq!(v.to_element(), el);
                }
            }
        }
    }

    #[test]
    fn wrong_namespace_or_element_is_refused() {
        assert!(matches!(
            HealthCheck::from_xml(r#"<healthcheck xmlns="http://jitsi.org/protocol/colibri"/>"#),
            Err(ParseError::WrongElement {
                expected: "healthcheck",
                ..
            })
        ));
        // The two shutdown requests are not interchangeable.
        assert!(
            GracefulShutdown::from_xml(
                r#"<force-shutdown xmlns="http://jitsi.org/protocol/colibri"/>"#
            )
            .is_err()
        );
        assert!(matches!(
            ForceShutdown::from_xml("<force-shutdown"),
            Err(ParseError::Xml(_))
        ));
    }

    #[test]
    fn responses_are_classified_as_the_focus_does() {
        assert_eq!(
            HealthCheckOutcome::from_response(&iq(
                r#"<iq xmlns="jabber:client" type="result" id="h1" from="jvbbrewery@internal-muc.meet.jitsi/jvb-1"/>"#
            )),
            Ok(HealthCheckOutcome::Passed)
        );

        // Our bridge's failure answer, inside an IQ.
        let err = unhealthy_error("ICE bind address is not valid");
        let failed = format!(
            r#"<iq xmlns="jabber:client" type="error" id="h2">{}</iq>"#,
            String::from(&err.to_element())
        );
        assert_eq!(
            HealthCheckOutcome::from_response(&iq(&failed)),
            Ok(HealthCheckOutcome::Failed(err))
        );

        let unavailable = iq(
            r#"<iq xmlns="jabber:client" type="error" id="h3"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>"#,
        );
        assert!(matches!(
            HealthCheckOutcome::from_response(&unavailable),
            Ok(HealthCheckOutcome::Failed(_))
        ));

        let other = iq(
            r#"<iq xmlns="jabber:client" type="error" id="h4"><error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>"#,
        );
        match HealthCheckOutcome::from_response(&other) {
            Ok(HealthCheckOutcome::UnexpectedError(e)) => {
                assert_eq!(e.condition, Condition::BadRequest)
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn malformed_responses_are_typed_errors() {
        assert!(matches!(
            HealthCheckOutcome::from_response(&iq(
                r#"<iq xmlns="jabber:client" type="set" id="x"/>"#
            )),
            Err(ParseError::BadAttribute {
                attribute: "type",
                ..
            })
        ));
        assert_eq!(
            HealthCheckOutcome::from_response(&iq(r#"<iq xmlns="jabber:client" id="x"/>"#)),
            Err(ParseError::MissingAttribute {
                element: "iq",
                attribute: "type"
            })
        );
        assert_eq!(
            HealthCheckOutcome::from_response(&iq(
                r#"<iq xmlns="jabber:client" type="error" id="x"/>"#
            )),
            Err(ParseError::MissingChild {
                element: "iq",
                child: "error"
            })
        );
        assert!(
            HealthCheckOutcome::from_response(&iq(r#"<message xmlns="jabber:client"/>"#)).is_err()
        );
    }
}
