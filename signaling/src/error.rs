//! The one error type every parser in this crate returns.
//!
//! Each variant names the element and attribute (or field) at fault so that an XMPP error reply, a log
//! line or a test can say exactly what was wrong with a peer's input.

use thiserror::Error;

/// Why a stanza or message could not be turned into a typed value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The text was not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The text was not valid JSON for the expected message.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The input is larger than we accept from a peer.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// An element repeats more often than we accept from a peer.
    #[error("too many <{element}> elements: {count} (limit {limit})")]
    TooMany {
        element: &'static str,
        count: usize,
        limit: usize,
    },
    /// The element is not the one expected (wrong name or namespace).
    #[error("expected <{expected} xmlns='{expected_ns}'>, found <{found} xmlns='{found_ns}'>")]
    WrongElement {
        expected: &'static str,
        expected_ns: &'static str,
        found: String,
        found_ns: String,
    },
    /// A required attribute is absent.
    #[error("<{element}> is missing required attribute '{attribute}'")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    /// An attribute is present but its value does not parse.
    #[error("<{element}> attribute '{attribute}' has invalid value '{value}': {reason}")]
    BadAttribute {
        element: &'static str,
        attribute: &'static str,
        value: String,
        reason: String,
    },
    /// A required child element is absent.
    #[error("<{element}> is missing required child <{child}>")]
    MissingChild {
        element: &'static str,
        child: &'static str,
    },
    /// The element is well-formed but violates a rule of the protocol.
    #[error("<{element}>: {reason}")]
    Invalid {
        element: &'static str,
        reason: String,
    },
}

impl ParseError {
    /// Shorthand for [`ParseError::Invalid`].
    pub fn invalid(element: &'static str, reason: impl Into<String>) -> Self {
        ParseError::Invalid {
            element,
            reason: reason.into(),
        }
    }
}
