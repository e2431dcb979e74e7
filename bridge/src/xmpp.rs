//! The bridge's XMPP side: one client connection per `XMPP_SERVER` entry (one per shard Prosody, as
//! JVB's `shardN` MUC clients), each logged in as `JVB_AUTH_USER@XMPP_AUTH_DOMAIN` and joined to
//! the brewery `JVB_BREWERY_MUC@XMPP_INTERNAL_MUC_DOMAIN` as `JVB_MUC_NICKNAME`.
//!
//! - **Presence**: the brewery presence carries `<stats xmlns='http://jitsi.org/protocol/colibri'>`
//!   with the stats jicofo reads (JVB's presence whitelist: `stress_level`, `drain`,
//!   `graceful_shutdown`, `shutting_down`, `version`, `region`, `healthy`, … plus `colibri2`). It is
//!   re-sent every stats interval (5 s) and at once on every lifecycle change (drain, shutdown), so
//!   the focus stops picking a draining bridge without waiting. Re-joins after reconnects carry the
//!   latest stats (the session keeps them).
//! - **IQs**: `healthcheck` → result when [`HealthRegistry::check`] is healthy, else
//!   `internal-server-error` with the reason; `conference-modify` → the media task (in arrival
//!   order), answered with `conference-modified` or the COLIBRI2 error; `graceful-shutdown` /
//!   `force-shutdown` → the lifecycle. COLIBRI2 and shutdown IQs are accepted only from brewery
//!   occupants or accounts of `XMPP_AUTH_DOMAIN` ([`sender_trusted`]; anyone else, e.g. an
//!   anonymous client, gets `forbidden`, before anything reaches the media task);
//!   `jabber:iq:version` → our name and version; anything else → `service-unavailable`.
//! - **Health**: component `xmpp` is `Healthy` while at least one connection is online and in the
//!   brewery, `Degraded` otherwise (see [`crate::health`]: XMPP outages do not fail liveness; media
//!   keeps flowing and the bridge rejoins by itself). `/colibri/stats` shows `muc_clients_connected`
//!   and `mucs_joined`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use signaling::brewery::Stats;
use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModify};
use signaling::health::unhealthy_error;
use signaling::ns;
use signaling::xml::{Builder, Element, XmlElement};
use signaling::xmpp::{
    self, BareJid, ClientConfig, DefinedCondition, ErrorType, Event, IncomingIq, IqKind, Jid,
    MucJoin, ServerAddr, XmppHandle,
};
use tokio::task::JoinHandle;

use crate::config::XmppConfig;
use crate::health::{Health, HealthRegistry};
use crate::lifecycle::LifecycleHandle;
use crate::media::MediaHandle;
use crate::stats::{StatsHandle, StatsSample};

/// The health component name.
pub const HEALTH_COMPONENT: &str = "xmpp";

const NS_VERSION: &str = "jabber:iq:version";

/// What the XMPP side serves requests with.
#[derive(Clone)]
pub struct XmppDeps {
    pub media: MediaHandle,
    pub lifecycle: LifecycleHandle,
    pub stats: StatsHandle,
    pub health: Arc<HealthRegistry>,
    /// How often presence is re-sent (the stats interval).
    pub presence_interval: Duration,
}

/// Connection and brewery state of every configured server, for stats and health.
#[derive(Debug)]
pub struct XmppStatus {
    online: Vec<AtomicBool>,
    joined: Vec<AtomicBool>,
}

impl XmppStatus {
    /// Status for `n` configured servers (none online yet).
    pub fn new(n: usize) -> XmppStatus {
        XmppStatus {
            online: (0..n).map(|_| AtomicBool::new(false)).collect(),
            joined: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn count(flags: &[AtomicBool]) -> u64 {
        flags.iter().filter(|f| f.load(Ordering::Relaxed)).count() as u64
    }

    /// Adds the `muc_clients_*` / `mucs_*` counts to a stats sample.
    pub fn fill(&self, s: &mut StatsSample) {
        s.muc_clients_configured = self.online.len() as u64;
        s.muc_clients_connected = Self::count(&self.online);
        s.mucs_configured = self.joined.len() as u64;
        s.mucs_joined = Self::count(&self.joined);
    }

    fn set(&self, i: usize, online: bool, joined: bool, health: &HealthRegistry) {
        if let Some(f) = self.online.get(i) {
            f.store(online, Ordering::Relaxed);
        }
        if let Some(f) = self.joined.get(i) {
            f.store(joined, Ordering::Relaxed);
        }
        let (n, on, j) = (
            self.online.len(),
            Self::count(&self.online),
            Self::count(&self.joined),
        );
        health.report(
            HEALTH_COMPONENT,
            if j > 0 {
                Health::Healthy
            } else {
                Health::Degraded(format!(
                    "not in the brewery on any XMPP server ({on}/{n} connected)"
                ))
            },
        );
    }
}

/// The running XMPP clients.
pub struct XmppClients {
    handles: Vec<XmppHandle>,
    tasks: Vec<JoinHandle<()>>,
    pub status: Arc<XmppStatus>,
}

impl XmppClients {
    /// Starts one connection per configured server (needs a tokio runtime). Fails only on a
    /// configuration that cannot form JIDs; connection problems are retried forever.
    pub fn start(
        config: &XmppConfig,
        deps: XmppDeps,
        status: Arc<XmppStatus>,
    ) -> anyhow::Result<XmppClients> {
        let jid = BareJid::new(&config.login_jid())
            .map_err(|e| anyhow::anyhow!("XMPP login {}: {e}", config.login_jid()))?;
        let brewery = BareJid::new(&config.brewery_jid())
            .map_err(|e| anyhow::anyhow!("brewery {}: {e}", config.brewery_jid()))?;
        let password = config
            .password
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_default();
        deps.health.report(
            HEALTH_COMPONENT,
            Health::Degraded("connecting to XMPP".into()),
        );
        // Not XMPP_DOMAIN: that is where anonymous clients log in.
        let trusted = config.trusted_domains.clone();
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for (i, server) in config.servers.iter().enumerate() {
            let addr = ServerAddr::new(server.host.clone(), server.port);
            let mut cc = ClientConfig::new(jid.clone(), password.clone(), addr.clone());
            if !addr.is_loopback() && config.disable_certificate_verification {
                cc = cc.disable_certificate_verification();
            }
            let (handle, events) = xmpp::connect_client(cc);
            tracing::info!(server = %addr, login = %jid, brewery = %brewery,
                nickname = config.muc_nickname, "XMPP client started");
            let conn = Connection {
                index: i,
                server: addr.to_string(),
                xmpp: handle.clone(),
                brewery: brewery.clone(),
                nickname: config.muc_nickname.clone(),
                deps: deps.clone(),
                status: Arc::clone(&status),
                trusted_domains: trusted.clone(),
                online: false,
                joined: false,
            };
            tasks.push(tokio::spawn(conn.run(events)));
            handles.push(handle);
        }
        Ok(XmppClients {
            handles,
            tasks,
            status,
        })
    }

    /// Leaves the brewery and closes every connection (the room sees us leave at once).
    pub async fn close(self) {
        for h in &self.handles {
            h.close();
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// The brewery `<stats>` element from the current stats (presence whitelist + `colibri2`).
pub fn presence_stats(stats: &StatsHandle) -> Element {
    let snapshot = stats.current();
    let mut s = Stats::new();
    for (name, value) in snapshot.presence_stats() {
        s.set(&name, value);
    }
    s.set(signaling::brewery::stat::COLIBRI2, true);
    s.to_element()
}

struct Connection {
    index: usize,
    server: String,
    xmpp: XmppHandle,
    brewery: BareJid,
    nickname: String,
    deps: XmppDeps,
    status: Arc<XmppStatus>,
    trusted_domains: Vec<String>,
    online: bool,
    joined: bool,
}

impl Connection {
    fn report(&self) {
        self.status
            .set(self.index, self.online, self.joined, &self.deps.health);
    }

    async fn run(mut self, mut events: xmpp::XmppEvents) {
        let mut tick = tokio::time::interval(self.deps.presence_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lifecycle = self.deps.lifecycle.subscribe();
        let mut lifecycle_open = true;
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    if !self.on_event(ev).await {
                        break;
                    }
                }
                _ = tick.tick() => self.refresh().await,
                changed = lifecycle.changed(), if lifecycle_open => {
                    // Err: the lifecycle driver is gone (the process is stopping); keep serving
                    // until closed, on the timer only.
                    lifecycle_open = changed.is_ok();
                    self.refresh().await;
                }
            }
        }
        self.online = false;
        self.joined = false;
        self.report();
    }

    /// Re-sends presence (joined) or retries the join (online but not in the room).
    async fn refresh(&mut self) {
        if !self.online {
            return;
        }
        if !self.joined {
            self.join().await;
            return;
        }
        let stats = presence_stats(&self.deps.stats);
        if let Err(e) = self.xmpp.set_muc_presence(&self.brewery, vec![stats]).await {
            tracing::debug!(server = self.server, error = %e, "brewery presence not sent");
        }
    }

    async fn join(&mut self) {
        let join = MucJoin::new(self.brewery.clone(), self.nickname.clone())
            .with_extra(vec![presence_stats(&self.deps.stats)]);
        match self.xmpp.join_muc(join).await {
            Ok(joined) => {
                tracing::info!(server = self.server, occupant = %joined.occupant, "joined the brewery");
                self.joined = true;
            }
            Err(e) => {
                tracing::warn!(server = self.server, error = %e, "cannot join the brewery; retrying");
                self.joined = false;
            }
        }
        self.report();
    }

    /// Returns false when the session is over.
    async fn on_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Online { jid, reconnected } => {
                tracing::info!(server = self.server, %jid, reconnected, "XMPP online");
                self.online = true;
                self.report();
                if !reconnected {
                    self.join().await;
                }
            }
            Event::Disconnected { reason } => {
                tracing::warn!(server = self.server, reason, "XMPP connection lost");
                self.online = false;
                self.joined = false;
                self.report();
            }
            Event::Reconnecting {
                attempt,
                delay,
                last_error,
            } => {
                tracing::info!(server = self.server, attempt, ?delay, error = ?last_error,
                    "XMPP reconnecting");
            }
            Event::MucRejoined { room, .. } => {
                tracing::info!(server = self.server, %room, "re-joined the brewery");
                self.joined = true;
                self.report();
                // The re-join carried the stats of the moment we went offline: refresh them.
                self.refresh().await;
            }
            Event::MucRejoinFailed { room, error } => {
                tracing::warn!(server = self.server, %room, %error, "brewery re-join failed; retrying");
                self.joined = false;
                self.report();
            }
            Event::MucRemoved { room } => {
                tracing::warn!(server = self.server, %room, "removed from the brewery; re-joining");
                self.joined = false;
                self.report();
            }
            Event::IqRequest(iq) => self.on_iq(iq).await,
            Event::Presence(_) | Event::Message(_) => {}
            Event::Closed => return false,
        }
        true
    }

    fn trusted(&self, from: Option<&Jid>) -> bool {
        sender_trusted(from, &self.brewery, &self.trusted_domains)
    }

    async fn on_iq(&mut self, iq: IncomingIq) {
        let p = &iq.payload;
        if p.is("healthcheck", ns::HEALTHCHECK) {
            match self.deps.health.check() {
                h if h.is_healthy() => iq.reply_result(None),
                Health::Failed(m) | Health::Unavailable(m) | Health::Degraded(m) => {
                    tracing::warn!(reason = m, "health check IQ: unhealthy");
                    iq.reply_error_element(unhealthy_error(&m).to_element());
                }
                Health::Healthy => iq.reply_result(None),
            }
        } else if iq.kind == IqKind::Set && p.is("conference-modify", ns::COLIBRI2) {
            if !self.trusted(iq.from.as_ref()) {
                tracing::warn!(from = ?iq.from, "conference-modify from an untrusted sender refused");
                iq.reply_error(ErrorType::Auth, DefinedCondition::Forbidden, None, None);
                return;
            }
            match ConferenceModify::from_element(p) {
                Ok(request) => {
                    let admission = self.deps.lifecycle.admit_new_conference();
                    // Queued in arrival order; the answer is awaited off this loop.
                    let answer = self.deps.media.conference_modify(request, admission).await;
                    tokio::spawn(async move {
                        match answer.await {
                            Ok(modified) => iq.reply_result(Some(modified.to_element())),
                            Err(e) => iq.reply_error_element(e.to_element()),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "malformed conference-modify");
                    iq.reply_error_element(
                        Colibri2ErrorResponse::bad_request(&e.to_string()).to_element(),
                    );
                }
            }
        } else if iq.kind == IqKind::Set
            && (p.is("graceful-shutdown", ns::COLIBRI) || p.is("force-shutdown", ns::COLIBRI))
        {
            let graceful = p.name() == "graceful-shutdown";
            if !self.trusted(iq.from.as_ref()) {
                tracing::warn!(from = ?iq.from, graceful, "shutdown IQ from an untrusted sender refused");
                iq.reply_error(ErrorType::Auth, DefinedCondition::Forbidden, None, None);
                return;
            }
            tracing::info!(from = ?iq.from, graceful, "shutdown requested over XMPP");
            self.deps.lifecycle.request_shutdown(graceful).await;
            iq.reply_result(None);
        } else if iq.kind == IqKind::Get && p.is("query", NS_VERSION) {
            let query = Builder::new("query", NS_VERSION)
                .child(
                    Builder::new("name", NS_VERSION)
                        .text(signaling::brewery::features::BRIDGE_APPLICATION_NAME)
                        .build(),
                )
                .child(
                    Builder::new("version", NS_VERSION)
                        .text(env!("CARGO_PKG_VERSION"))
                        .build(),
                )
                .child(
                    Builder::new("os", NS_VERSION)
                        .text(std::env::consts::OS)
                        .build(),
                )
                .build();
            iq.reply_result(Some(query));
        } else {
            tracing::debug!(payload = p.name(), ns = p.ns(), "unsupported IQ");
            iq.reply_error(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                Some("Unsupported IQ request"),
                None,
            );
        }
    }
}

/// Whether `from` may send COLIBRI2 and shutdown IQs: an occupant of our brewery (the focus
/// addresses us through the room, so Prosody stamps its occupant JID; the internal MUC admits only
/// auth-domain accounts, SECURITY.md) or an account of a trusted domain (the auth domain: focus,
/// bridges). Anonymous clients (`XMPP_DOMAIN`, guests) are neither. JVB itself relies on Prosody
/// alone (`XmppConnection` accepts any sender).
pub fn sender_trusted(from: Option<&Jid>, brewery: &BareJid, trusted_domains: &[String]) -> bool {
    let Some(from) = from else { return false };
    let bare = from.to_bare();
    bare == *brewery
        || trusted_domains
            .iter()
            .any(|d| bare.domain().as_str().eq_ignore_ascii_case(d))
}

#[cfg(test)]
mod sender_tests {
    use super::*;

    /// COLIBRI2 and shutdown IQs: brewery occupants and auth-domain accounts only.
    #[test]
    fn only_brewery_occupants_and_the_auth_domain_are_trusted() {
        let brewery = BareJid::new("jvbbrewery@internal-muc.meet.jitsi").unwrap();
        let domains = vec!["auth.meet.jitsi".to_owned()];
        let t = |s: &str| sender_trusted(Some(&Jid::new(s).unwrap()), &brewery, &domains);
        assert!(t("jvbbrewery@internal-muc.meet.jitsi/focus"));
        assert!(t("focus@auth.meet.jitsi/focus123"));
        assert!(t("focus@AUTH.meet.jitsi/x"));
        assert!(!t("abcd@meet.jitsi/anon"), "an anonymous client");
        assert!(!t("guest@guest.meet.jitsi/x"));
        assert!(
            !t("room@muc.meet.jitsi/attacker"),
            "a conference room occupant"
        );
        assert!(!t("auth.meet.jitsi.evil.com"));
        assert!(!sender_trusted(None, &brewery, &domains));
    }
}
