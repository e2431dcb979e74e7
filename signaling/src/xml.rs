//! Small helpers over `minidom` that every stanza type uses: a conversion trait, a size-checked parser,
//! attribute readers that produce [`ParseError`]s naming the element and attribute, and a builder that
//! writes optional attributes without ceremony.

use std::fmt::Display;
use std::str::FromStr;

pub use minidom::Element;
use minidom::rxml::NcName;

use crate::error::ParseError;

/// The largest stanza we parse from a peer. Prosody's default c2s stanza limit is 256 KiB, so nothing
/// legitimate is larger.
pub const MAX_STANZA_BYTES: usize = 256 * 1024;

/// Most repeated children (sources, candidates, payload types …) we accept in one parent. Far above
/// anything a real client sends, low enough that a hostile stanza cannot make us allocate without bound.
pub const MAX_REPEATED: usize = 512;

/// A typed stanza or stanza fragment that converts to and from a `minidom` element.
pub trait XmlElement: Sized {
    /// Parses `el`, which must be this type's element (name and namespace are checked).
    fn from_element(el: &Element) -> Result<Self, ParseError>;
    /// Writes the value as an element; `from_element(&v.to_element()) == Ok(v)` for every value.
    fn to_element(&self) -> Element;

    /// Parses XML text (size-checked).
    fn from_xml(text: &str) -> Result<Self, ParseError> {
        Self::from_element(&parse_element(text)?)
    }
    /// Serialises to XML text.
    fn to_xml(&self) -> String {
        String::from(&self.to_element())
    }
}

/// Parses XML text into an element, refusing input larger than [`MAX_STANZA_BYTES`].
pub fn parse_element(text: &str) -> Result<Element, ParseError> {
    if text.len() > MAX_STANZA_BYTES {
        return Err(ParseError::Oversized {
            what: "stanza",
            size: text.len(),
            limit: MAX_STANZA_BYTES,
        });
    }
    text.parse::<Element>()
        .map_err(|e| ParseError::Xml(e.to_string()))
}

/// Checks that `el` is `<name xmlns=ns>`.
pub fn expect(el: &Element, name: &'static str, ns: &'static str) -> Result<(), ParseError> {
    if el.is(name, ns) {
        Ok(())
    } else {
        Err(ParseError::WrongElement {
            expected: name,
            expected_ns: ns,
            found: el.name().to_owned(),
            found_ns: el.ns(),
        })
    }
}

/// A required attribute.
pub fn attr<'a>(
    el: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ParseError> {
    el.attr(attribute)
        .ok_or(ParseError::MissingAttribute { element, attribute })
}

/// An optional attribute, as an owned string.
pub fn opt_string(el: &Element, attribute: &str) -> Option<String> {
    el.attr(attribute).map(str::to_owned)
}

fn parse_value<T: FromStr>(
    element: &'static str,
    attribute: &'static str,
    value: &str,
) -> Result<T, ParseError>
where
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ParseError::BadAttribute {
            element,
            attribute,
            value: truncate(value),
            reason: e.to_string(),
        })
}

/// A required attribute parsed with `FromStr` (numbers, enums).
pub fn num<T: FromStr>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, ParseError>
where
    T::Err: Display,
{
    parse_value(element, attribute, attr(el, element, attribute)?)
}

/// An optional attribute parsed with `FromStr`; present but unparsable is an error.
pub fn opt_num<T: FromStr>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<T>, ParseError>
where
    T::Err: Display,
{
    el.attr(attribute)
        .map(|v| parse_value(element, attribute, v))
        .transpose()
}

/// Parses an XML boolean (`true`/`false`/`1`/`0`, case-insensitive as Jitsi's Java parsers are).
pub fn parse_bool(
    element: &'static str,
    attribute: &'static str,
    value: &str,
) -> Result<bool, ParseError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        v if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        _ => Err(ParseError::BadAttribute {
            element,
            attribute,
            value: truncate(value),
            reason: "expected true or false".into(),
        }),
    }
}

/// An optional boolean attribute.
pub fn opt_bool(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<bool>, ParseError> {
    el.attr(attribute)
        .map(|v| parse_bool(element, attribute, v))
        .transpose()
}

/// A boolean attribute that means `false` when absent.
pub fn flag(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<bool, ParseError> {
    Ok(opt_bool(el, element, attribute)?.unwrap_or(false))
}

/// Children `<name xmlns=ns>` of `el`.
pub fn children<'a>(
    el: &'a Element,
    name: &'static str,
    ns: &'static str,
) -> impl Iterator<Item = &'a Element> + 'a {
    el.children().filter(move |c| c.is(name, ns))
}

/// Parses every `<name xmlns=ns>` child with `T`, refusing more than [`MAX_REPEATED`].
pub fn parse_children<T: XmlElement>(
    el: &Element,
    name: &'static str,
    ns: &'static str,
) -> Result<Vec<T>, ParseError> {
    let mut out = Vec::new();
    for child in children(el, name, ns) {
        if out.len() == MAX_REPEATED {
            return Err(ParseError::TooMany {
                element: name,
                count: children(el, name, ns).count(),
                limit: MAX_REPEATED,
            });
        }
        out.push(T::from_element(child)?);
    }
    Ok(out)
}

/// Parses the first `<name xmlns=ns>` child with `T`, if any.
pub fn parse_child<T: XmlElement>(
    el: &Element,
    name: &'static str,
    ns: &'static str,
) -> Result<Option<T>, ParseError> {
    el.get_child(name, ns).map(T::from_element).transpose()
}

/// Keeps error messages short when a peer sends a huge attribute value.
fn truncate(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        value.to_owned()
    } else {
        let mut end = MAX;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &value[..end])
    }
}

/// Defines a public string enum with `FromStr` (case-insensitive, as Jitsi's Java parsers are; optional
/// `| "alias"` spellings accepted when reading) and `Display` (the first spelling). Variants may carry
/// doc comments; extra derives go in the leading attributes.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident {
        $($(#[$vm:meta])* $variant:ident => $text:literal $(| $alias:literal)*),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $(
                    if s.eq_ignore_ascii_case($text) $(|| s.eq_ignore_ascii_case($alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(format!("expected one of: {}", [$($text),+].join(", ")))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(match self { $($name::$variant => $text),+ })
            }
        }
    };
}
pub(crate) use string_enum;

/// Builds elements; attribute names are static strings of this crate, values anything `Display`.
pub struct Builder(Element);

impl Builder {
    pub fn new(name: &str, ns: &str) -> Self {
        Builder(Element::bare(name, ns))
    }

    pub fn attr(mut self, name: &'static str, value: impl Display) -> Self {
        let name = NcName::try_from(name).expect("attribute names in this crate are valid NCNames");
        self.0
            .set_attr(minidom::rxml::Namespace::NONE, name, value.to_string());
        self
    }

    pub fn opt_attr<V: Display>(self, name: &'static str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    /// Writes `name="true"` only when `value` is true (Jitsi's convention for flags).
    pub fn flag(self, name: &'static str, value: bool) -> Self {
        if value { self.attr(name, "true") } else { self }
    }

    pub fn child(mut self, child: Element) -> Self {
        self.0.append_child(child);
        self
    }

    pub fn opt_child(self, child: Option<Element>) -> Self {
        match child {
            Some(c) => self.child(c),
            None => self,
        }
    }

    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        for c in children {
            self.0.append_child(c);
        }
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.0.append_text(text);
        self
    }

    pub fn build(self) -> Element {
        self.0
    }
}

/// Converts a slice of typed values to elements.
pub fn elements<'a, T: XmlElement + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<Element> {
    items.into_iter().map(XmlElement::to_element).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = format!("<a xmlns='x'>{}</a>", "b".repeat(MAX_STANZA_BYTES));
        assert!(matches!(
            parse_element(&big),
            Err(ParseError::Oversized { what: "stanza", .. })
        ));
    }

    #[test]
    fn attribute_errors_name_element_and_attribute() {
        let el = parse_element("<p xmlns='x' id='abc'/>").unwrap();
        assert_eq!(
            num::<u8>(&el, "p", "id").unwrap_err(),
            ParseError::BadAttribute {
                element: "p",
                attribute: "id",
                value: "abc".into(),
                reason: "invalid digit found in string".into()
            }
        );
        assert_eq!(
            num::<u8>(&el, "p", "clockrate").unwrap_err(),
            ParseError::MissingAttribute {
                element: "p",
                attribute: "clockrate"
            }
        );
        assert_eq!(
            expect(&el, "p", "y").unwrap_err(),
            ParseError::WrongElement {
                expected: "p",
                expected_ns: "y",
                found: "p".into(),
                found_ns: "x".into()
            }
        );
    }

    #[test]
    fn booleans_accept_java_spellings() {
        for (v, b) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool("e", "a", v), Ok(b));
        }
        assert!(parse_bool("e", "a", "yes").is_err());
    }

    #[test]
    fn long_bad_values_are_truncated_in_errors() {
        let el = Builder::new("p", "x").attr("id", "9".repeat(1000)).build();
        match num::<u8>(&el, "p", "id").unwrap_err() {
            ParseError::BadAttribute { value, .. } => assert!(value.len() < 80),
            e => panic!("unexpected {e:?}"),
        }
    }
}
