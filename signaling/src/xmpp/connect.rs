//! One connection attempt: TCP, optional STARTTLS, SASL and resource binding for a client; the
//! XEP-0114 handshake for a component. The result is an XML stream of plain `minidom` elements.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use minidom::Element;
use sasl::common::{ChannelBinding, Credentials};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmlStream, XmppStream,
    XmppStreamElement, initiate_stream,
};

use super::config::{ClientConfig, ComponentConfig, Keepalive, Security, ServerAddr};
use super::stanza::{NS_BIND, NS_CLIENT, NS_COMPONENT, NS_STREAMS};

/// The stream a session runs on: any transport, top-level elements as `minidom` elements.
pub(crate) type ElementStream = XmlStream<Box<dyn AsyncReadAndWrite + Send + 'static>, Element>;

/// An established, authenticated stream.
pub(crate) struct Connected {
    pub(crate) stream: ElementStream,
    /// Bound full JID (client) or the component's domain.
    pub(crate) jid: Jid,
}

/// Why a connection attempt failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot reach {addr}: {source}")]
    Tcp { addr: String, source: io::Error },
    #[error("server does not offer STARTTLS")]
    NoStartTls,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("resource binding failed: {0}")]
    Bind(String),
    #[error("stream error from server: {0}")]
    StreamError(String),
    #[error("XMPP stream: {0}")]
    Stream(String),
    #[error("connection attempt timed out")]
    Timeout,
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Stream(e.to_string())
    }
}

impl From<tokio_xmpp::xmlstream::RecvFeaturesError> for ConnectError {
    fn from(e: tokio_xmpp::xmlstream::RecvFeaturesError) -> Self {
        match e {
            tokio_xmpp::xmlstream::RecvFeaturesError::StreamError(e) => {
                ConnectError::StreamError(e.to_string())
            }
            other => ConnectError::Stream(other.to_string()),
        }
    }
}

fn timeouts(k: &Keepalive) -> Timeouts {
    Timeouts {
        read_timeout: k.idle,
        response_timeout: k.response,
    }
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

async fn tcp(addr: &ServerAddr) -> Result<TcpStream, ConnectError> {
    let s = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|source| ConnectError::Tcp {
            addr: addr.to_string(),
            source,
        })?;
    // Signaling is small request/response traffic: do not let Nagle delay it.
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Connects, secures, authenticates and binds a client stream.
pub(crate) async fn connect_client(cfg: &ClientConfig) -> Result<Connected, ConnectError> {
    let domain = cfg.jid.domain().as_str();
    let t = timeouts(&cfg.keepalive);
    let tcp = tcp(&cfg.server).await?;
    let pending = initiate_stream(BufStream::new(tcp), NS_CLIENT, header(domain), t).await?;
    let (features, stream) = pending.recv_features::<FallibleStreamElement>().await?;
    match cfg.security {
        Security::Plaintext => login(cfg, features.sasl_mechanisms, stream).await,
        Security::StartTls { verify_certificate } => {
            if !features.can_starttls() {
                return Err(ConnectError::NoStartTls);
            }
            let tcp = starttls(stream).await?;
            let tls = tls_config(verify_certificate)?;
            let name = rustls::pki_types::ServerName::try_from(domain.to_owned())
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            let tls = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            let pending =
                initiate_stream(BufStream::new(tls), NS_CLIENT, header(domain), t).await?;
            let (features, stream) = pending.recv_features::<FallibleStreamElement>().await?;
            login(cfg, features.sasl_mechanisms, stream).await
        }
    }
}

/// Asks for STARTTLS and returns the bare TCP stream to wrap in TLS.
async fn starttls(mut stream: XmppStream<BufStream<TcpStream>>) -> Result<TcpStream, ConnectError> {
    stream
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                starttls::Nonza::Proceed(_),
            )))) => break,
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(ConnectError::StreamError(e.to_string()));
            }
            Some(Ok(other)) => {
                return Err(ConnectError::Tls(format!(
                    "unexpected answer to STARTTLS: {other:?}"
                )));
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(e)) => return Err(ConnectError::Stream(e.to_string())),
            None => return Err(ConnectError::Stream("closed during STARTTLS".into())),
        }
    }
    Ok(stream.into_inner().into_inner())
}

fn tls_config(verify_certificate: bool) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let config = if verify_certificate {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate but still checks that the server owns its key (handshake
/// signatures), as an unverified-but-encrypted internal link needs.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SASL, stream restart, resource binding.
async fn login<Io: AsyncReadAndWrite + 'static>(
    cfg: &ClientConfig,
    mechanisms: std::collections::BTreeSet<String>,
    stream: XmppStream<Io>,
) -> Result<Connected, ConnectError> {
    let node = cfg
        .jid
        .node()
        .ok_or_else(|| ConnectError::Auth("the client JID has no user part".into()))?;
    let creds = Credentials::default()
        .with_username(node.as_str())
        .with_password(cfg.password.clone())
        .with_channel_binding(ChannelBinding::None);
    let restarted = tokio_xmpp::client_login(stream, mechanisms, creds)
        .await
        .map_err(|e| match e {
            tokio_xmpp::Error::Auth(a) => ConnectError::Auth(a.to_string()),
            other => ConnectError::Stream(other.to_string()),
        })?;
    let pending = restarted
        .send_header(header(cfg.jid.domain().as_str()))
        .await?;
    let (features, stream) = pending.recv_features::<Element>().await?;
    if !features.can_bind() {
        return Err(ConnectError::Bind(
            "server offers no resource binding".into(),
        ));
    }
    let mut stream: ElementStream = stream.box_stream();
    let jid = bind(&mut stream, cfg.resource.as_deref()).await?;
    Ok(Connected { stream, jid })
}

async fn bind(stream: &mut ElementStream, resource: Option<&str>) -> Result<Jid, ConnectError> {
    const ID: &str = "bind-1";
    let mut bind = Element::bare("bind", NS_BIND);
    if let Some(r) = resource {
        let mut res = Element::bare("resource", NS_BIND);
        res.append_text(r);
        bind.append_child(res);
    }
    let iq = Element::builder("iq", NS_CLIENT)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "set")
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), ID)
        .append(bind)
        .build();
    stream.send(&iq).await?;
    loop {
        let el = next_element(stream).await?;
        if !el.is("iq", NS_CLIENT) || el.attr("id") != Some(ID) {
            tracing::debug!(name = el.name(), "ignoring element before bind result");
            continue;
        }
        if el.attr("type") != Some("result") {
            return Err(ConnectError::Bind(String::from(&el)));
        }
        let text = el
            .get_child("bind", NS_BIND)
            .and_then(|b| b.get_child("jid", NS_BIND))
            .map(Element::text)
            .ok_or_else(|| ConnectError::Bind("result without <jid>".into()))?;
        let jid = Jid::new(text.trim()).map_err(|e| ConnectError::Bind(e.to_string()))?;
        if jid.is_bare() {
            return Err(ConnectError::Bind(format!("server bound a bare JID {jid}")));
        }
        return Ok(jid);
    }
}

/// The next top-level element, tolerating soft timeouts; stream errors and the end are errors.
async fn next_element(stream: &mut ElementStream) -> Result<Element, ConnectError> {
    loop {
        match stream.next().await {
            Some(Ok(el)) if el.is("error", NS_STREAMS) => {
                return Err(ConnectError::StreamError(describe_stream_error(&el)));
            }
            Some(Ok(el)) => return Ok(el),
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::ParseError(e))) => {
                tracing::warn!(error = %e, "unparsable element during login ignored");
            }
            Some(Err(e)) => return Err(ConnectError::Stream(e.to_string())),
            None => return Err(ConnectError::Stream("connection closed".into())),
        }
    }
}

/// `conflict`, `system-shutdown` … from a `<stream:error>`.
pub(crate) fn describe_stream_error(el: &Element) -> String {
    let condition = el
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-streams" && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined".into());
    match el
        .children()
        .find(|c| c.name() == "text")
        .map(Element::text)
    {
        Some(t) if !t.is_empty() => format!("{condition}: {t}"),
        _ => condition,
    }
}

/// Connects and authenticates an XEP-0114 component.
pub(crate) async fn connect_component(cfg: &ComponentConfig) -> Result<Connected, ConnectError> {
    let domain = cfg.jid.domain().as_str();
    let tcp = tcp(&cfg.server).await?;
    let io = BufStream::new(VersionedHeader::new(tcp));
    let mut pending =
        initiate_stream(io, NS_COMPONENT, header(domain), timeouts(&cfg.keepalive)).await?;
    let id = pending
        .take_header()
        .id
        .map(Cow::into_owned)
        .ok_or_else(|| ConnectError::Stream("component stream header without id".into()))?;
    let stream = pending.skip_features::<Element>();
    let mut stream: ElementStream = stream.box_stream();
    stream
        .send(&Handshake::from_stream_id_and_password(id, &cfg.secret))
        .await?;
    let el = next_element(&mut stream).await.map_err(|e| match e {
        ConnectError::StreamError(s) => ConnectError::Auth(s),
        other => other,
    })?;
    if !el.is("handshake", NS_COMPONENT) {
        return Err(ConnectError::Auth(format!(
            "unexpected <{}> instead of <handshake/>",
            el.name()
        )));
    }
    Ok(Connected {
        stream,
        jid: Jid::from(BareJid::from_parts(None, cfg.jid.domain())),
    })
}

/// Prosody opens component streams without `version='1.0'` (XEP-0114 predates it), which tokio-xmpp
/// refuses unless its `component` feature is on — and that feature would switch xmpp-parsers to the
/// component namespace for the whole program. This reader adds the attribute to the server's stream
/// header; everything after the header passes through untouched.
pub(crate) struct VersionedHeader<S> {
    inner: S,
    state: HeaderState,
}

enum HeaderState {
    Scanning(Vec<u8>),
    Draining(Vec<u8>, usize),
    Passthrough,
}

/// Longest header we are willing to buffer before giving up on patching it.
const MAX_HEADER: usize = 8192;

impl<S> VersionedHeader<S> {
    pub(crate) fn new(inner: S) -> Self {
        VersionedHeader {
            inner,
            state: HeaderState::Scanning(Vec::new()),
        }
    }
}

/// Finds the stream start tag in `buf`; returns the patched bytes once the whole tag is present.
fn patch_header(buf: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'<') {
        let start = i + off;
        let rest = buf.get(start + 1..)?;
        if rest.first() == Some(&b'?') {
            i = start + 1;
            continue;
        }
        let name_len = rest
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')?;
        let name = rest.get(..name_len)?;
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        let end = rest.iter().position(|&b| b == b'>')?;
        let tag = rest.get(..end)?;
        let mut out = buf.to_vec();
        if local == b"stream" && !tag.windows(8).any(|w| w == b"version=") {
            let at = start + 1 + name_len;
            out.splice(at..at, b" version='1.0'".iter().copied());
        }
        return Some(out);
    }
    None
}

impl<S: AsyncRead + Unpin> AsyncRead for VersionedHeader<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                HeaderState::Passthrough => return Pin::new(&mut this.inner).poll_read(cx, out),
                HeaderState::Draining(buf, pos) => {
                    let remaining = buf.get(*pos..).unwrap_or_default();
                    let n = remaining.len().min(out.remaining());
                    out.put_slice(remaining.get(..n).unwrap_or_default());
                    *pos += n;
                    if *pos >= buf.len() {
                        this.state = HeaderState::Passthrough;
                    }
                    return Poll::Ready(Ok(()));
                }
                HeaderState::Scanning(buf) => {
                    let mut chunk = [0u8; 1024];
                    let mut rb = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {
                            let filled = rb.filled();
                            let eof = filled.is_empty();
                            buf.extend_from_slice(filled);
                            let next = match patch_header(buf) {
                                Some(patched) => Some(patched),
                                None if eof || buf.len() > MAX_HEADER => Some(std::mem::take(buf)),
                                None => None,
                            };
                            if let Some(bytes) = next {
                                if bytes.is_empty() {
                                    this.state = HeaderState::Passthrough;
                                    return Poll::Ready(Ok(()));
                                }
                                this.state = HeaderState::Draining(bytes, 0);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for VersionedHeader<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PROSODY_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream id='f94' xml:lang='en' \
        xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' \
        from='focus.meet.example'>";

    #[test]
    fn version_is_added_to_a_header_without_one() {
        let patched = patch_header(PROSODY_HEADER).unwrap();
        let text = String::from_utf8(patched).unwrap();
        assert!(text.starts_with("<?xml version='1.0'?><stream:stream version='1.0' id='f94'"));
    }

    #[test]
    fn headers_with_version_or_incomplete_are_left_alone() {
        let with = b"<stream:stream version='1.0' id='x'>";
        assert_eq!(patch_header(with).unwrap(), with.to_vec());
        assert_eq!(patch_header(b"<?xml version='1.0'?><stream:str"), None);
        assert_eq!(patch_header(b"<stream:stream id='x'"), None);
    }

    #[tokio::test]
    async fn reader_patches_a_header_split_across_reads_and_passes_the_rest() {
        let (mut server, client) = tokio::io::duplex(64);
        let mut reader = VersionedHeader::new(client);
        let writer = tokio::spawn(async move {
            for chunk in PROSODY_HEADER.chunks(7) {
                server.write_all(chunk).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            server.write_all(b"<handshake/>").await.unwrap();
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.contains("<stream:stream version='1.0' id='f94'"),
            "{text}"
        );
        assert!(
            text.ends_with("from='focus.meet.example'><handshake/>"),
            "{text}"
        );
    }
}
