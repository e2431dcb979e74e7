//! What the media plane needs from the configuration.

use std::net::SocketAddr;
use std::time::Duration;

use service::HostPort;

use crate::config::{self, Config};
use crate::transport::SrtpProfile;

/// What the media plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub bind: SocketAddr,
    pub advertise_ips: Vec<config::AdvertisedAddress>,
    pub advertise_private_candidates: bool,
    /// Empty = STUN disabled.
    pub stun_servers: Vec<HostPort>,
    pub srtp_profiles: Vec<config::SrtpProfile>,
    pub endpoint_expire_timeout: Duration,
    /// `ws[s]://host[:port]/colibri-ws/<server-id>` when colibri-ws is enabled: each endpoint's
    /// transport then carries `<web-socket url="<base>/<conference-id>/<endpoint-id>?pwd=…"/>`.
    pub colibri_ws_base: Option<String>,
    /// Receive/send buffer to ask for (0 = kernel default), per worker socket.
    pub udp_buffer_size: u32,
    /// Media workers (threads, one socket each on the port); at least 1.
    pub workers: usize,
}

impl MediaSettings {
    pub fn from_config(c: &Config) -> MediaSettings {
        MediaSettings {
            bind: SocketAddr::new(c.media.host, c.media.port),
            advertise_ips: c.media.advertise_ips.clone(),
            advertise_private_candidates: c.media.advertise_private_candidates,
            stun_servers: c.media.stun_servers.clone(),
            srtp_profiles: c.media.srtp_profiles.clone(),
            endpoint_expire_timeout: c.expiry.endpoint_timeout,
            colibri_ws_base: c.colibri_ws.url_base(&c.xmpp.muc_nickname),
            udp_buffer_size: c.media.udp_buffer_size,
            workers: c.media.workers,
        }
    }
}

impl MediaSettings {
    /// A media plane on a free loopback port advertising 127.0.0.1, without STUN, GCM only, with
    /// `workers` workers (tests and in-process tools).
    pub fn loopback(workers: usize) -> MediaSettings {
        MediaSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_ips: vec![config::AdvertisedAddress {
                ip: [127, 0, 0, 1].into(),
                port: None,
            }],
            advertise_private_candidates: false,
            stun_servers: Vec::new(),
            srtp_profiles: vec![config::SrtpProfile::AeadAes128Gcm],
            endpoint_expire_timeout: Duration::from_secs(60),
            colibri_ws_base: None,
            udp_buffer_size: 0,
            workers,
        }
    }
}

pub(crate) fn srtp_profile(p: config::SrtpProfile) -> SrtpProfile {
    match p {
        config::SrtpProfile::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        config::SrtpProfile::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
    }
}
