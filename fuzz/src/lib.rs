//! Code the fuzz targets share: how a fuzz input is cut into a sequence of inputs ([`records`],
//! [`text_ops`]), the fixtures that put the code under test into a realistic state before the fuzzed
//! bytes arrive (a two-endpoint SFU conference, a focus with a running conference, the bridge's media
//! plane, a DTLS client, an SCTP client), and the writers of the committed seed corpora
//! (`examples/seeds.rs`).
//!
//! Each target states its property in its doc comment; all of them require "no panic, no abort".

pub mod bridge_plane;
pub mod dtls_client;
pub mod focus_sim;
pub mod records;
pub mod sctp_client;
pub mod sfu_fixture;
pub mod stun_util;

pub use records::{Records, push_record, text_ops};
