//! ONVIF Profile G over SOAP 1.2: find the search and replay services, the recording, and its
//! replay URI. Requests carry a WS-Security UsernameToken with a password digest
//! (Base64(SHA1(nonce + created + password))) when credentials are known, so the password
//! never crosses the wire; a service that also (or only) wants HTTP authentication gets it after
//! its 401 (Digest per RFC 7616/2617 with `qop`, else Basic; see `crate::auth`). HTTP and HTTPS
//! (rustls; the camera's certificate checked against the system roots, a CA of the camera's
//! own, or — explicitly — not at all, see [`TlsVerify`]) through reqwest, so chunked
//! responses and keep-alive just work; responses are bounded in size ([`MAX_RESPONSE_BYTES`])
//! and time, and parsed by local element name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use tracing::debug;
use url::Url;

use crate::auth::{Authenticator, Unauthorized, on_unauthorized};
use crate::error::{Error, Result};
use crate::onvif_events::Topic;
use vigil_api::redact::Credentials;
use vigil_api::redact::{peer_summary, redact_url};

/// Largest SOAP response read (Content-Length, chunked or until close alike). ONVIF answers
/// are a few kB; a search result listing 100 recordings stays well under this.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// WS-UsernameToken password digest.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

fn security_header(creds: &Credentials) -> String {
    let mut nonce = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let created = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        r#"<s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{}</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-soap-message-security-1.0#Base64Binary">{}</wsse:Nonce><wsu:Created>{}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>"#,
        xml_escape(&creds.username),
        password_digest(&nonce, &created, &creds.password),
        b64.encode(nonce),
        created
    )
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(s: &str) -> String {
    quick_xml::escape::unescape(s).map_or_else(|_| s.to_string(), |t| t.into_owned())
}

/// Inner XML of every element with this local name (any namespace prefix), outermost ones, in
/// document order. Read with quick-xml, so comments, CDATA, attributes holding `>` and nested
/// elements of the same name cannot derail it; reading stops at the first malformed part,
/// keeping what was found before it.
pub fn elements<'a>(xml: &'a str, local: &str) -> Vec<&'a str> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    // Inner start of the element being read, and how deep same-named elements nest in it.
    let mut open: Option<usize> = None;
    let mut nested = 0usize;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == local.as_bytes() => {
                if open.is_some() {
                    nested += 1;
                } else {
                    open = usize::try_from(reader.buffer_position()).ok();
                }
            }
            Ok(Event::End(e)) if e.local_name().as_ref() == local.as_bytes() => match open {
                Some(start) if nested == 0 => {
                    if let Some(inner) = xml.get(start..before) {
                        out.push(inner);
                    }
                    open = None;
                }
                Some(_) => nested -= 1,
                None => {}
            },
            Ok(Event::Empty(e))
                if open.is_none() && e.local_name().as_ref() == local.as_bytes() =>
            {
                out.push("");
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

pub fn first_text(xml: &str, local: &str) -> Option<String> {
    elements(xml, local)
        .into_iter()
        .map(|t| xml_unescape(t.trim()))
        .find(|t| !t.is_empty())
}

/// How an HTTPS camera's certificate is checked. Cameras mostly ship self-signed
/// certificates, so a camera (or a pool of them) can name its own CA instead of the system's
/// roots, or turn verification off — only explicitly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the system's trust store (the platform verifier). The default.
    #[default]
    System,
    /// Against these PEM certificates only (a private CA, or the camera's own self-signed
    /// certificate); the host name is still checked.
    Ca(Vec<u8>),
    /// Not at all: encrypted, but anyone on the path can impersonate the camera.
    Insecure,
}

/// How the ONVIF client connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// Whole-request limit (connect, send, headers and body).
    pub timeout: Duration,
    pub tls: TlsVerify,
    /// Resolves camera host names, e.g. one that refuses addresses outside the allowed camera
    /// networks. Note that IP-literal hosts never reach a resolver.
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(15),
            tls: TlsVerify::System,
            resolver: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("resolver", &self.resolver.is_some())
            .finish()
    }
}

/// The HTTP client for one device: no redirects (a camera has no business sending the
/// recorder elsewhere), no proxies from the environment (cameras are reached directly), HTTP/1.1
/// only (what camera web servers speak).
pub fn http_client(opts: &ClientOptions) -> Result<reqwest::Client> {
    http_client_via(opts, None)
}

/// [`http_client`], every request through `proxy` when given (a site's `netguard::SiteProxy`).
fn http_client_via(opts: &ClientOptions, proxy: Option<reqwest::Proxy>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .user_agent("vigil-recorder")
        .pool_max_idle_per_host(1);
    match &opts.tls {
        TlsVerify::System => {}
        TlsVerify::Ca(pem) => {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Rtsp(format!("ONVIF TLS CA: not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Rtsp(
                    "ONVIF TLS CA: no certificate in the PEM".into(),
                ));
            }
            b = b.tls_certs_only(certs);
        }
        TlsVerify::Insecure => b = b.tls_danger_accept_invalid_certs(true),
    }
    if let Some(r) = &opts.resolver {
        b = b.dns_resolver(r.clone());
    }
    if let Some(p) = proxy {
        // One request per tunnel stream (the proxy forwards with `Connection: close`).
        b = b.proxy(p).pool_max_idle_per_host(0);
    }
    b.build()
        .map_err(|e| Error::Rtsp(format!("ONVIF HTTP client: {}", error_chain(&e))))
}

/// The policy refusal somewhere in `e`'s causes, as our own error.
fn address_refusal(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(Error::AddressNotAllowed {
            host,
            addr,
            refusal,
        }) = err.downcast_ref::<Error>()
        {
            return Some(Error::AddressNotAllowed {
                host: host.clone(),
                addr: *addr,
                refusal: *refusal,
            });
        }
        cur = err.source();
    }
    None
}

/// An error and its causes ("connection refused", "invalid peer certificate: UnknownIssuer"),
/// without the URL (callers print the redacted one).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Reads a body of at most `limit` bytes, whatever the framing (Content-Length, chunked, or
/// up to the close): a camera announcing or sending more is refused, not buffered.
async fn read_bounded(resp: &mut reqwest::Response, limit: usize, shown: &str) -> Result<Vec<u8>> {
    if let Some(n) = resp.content_length()
        && n > limit as u64
    {
        return Err(Error::Rtsp(format!(
            "{shown}: response of {n} bytes is over the {limit}-byte limit"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::Rtsp(format!("{shown}: read: {}", error_chain(&e.without_url()))))?
    {
        if body.len() + chunk.len() > limit {
            return Err(Error::Rtsp(format!(
                "{shown}: response over the {limit}-byte limit"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The request target as it appears on the request line (what Digest's `uri` must match).
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// An ONVIF device.
pub struct Device {
    device_url: Url,
    creds: Option<Credentials>,
    http: reqwest::Client,
    /// How the device and the services it names are reached: at addresses the pool's
    /// `cameraNetworks` allow (host names through the client's resolver, IP literals checked
    /// before each request), or through the camera's site tunnel (`netguard::SiteProxy`).
    route: crate::netguard::Route,
    /// The in-process proxy into the site's tunnel, alive as long as the device.
    _site_proxy: Option<crate::netguard::SiteProxy>,
    /// HTTP authentication, once a service asked for it: kept across calls so that a Digest
    /// nonce is reused (with a counting `nc`) instead of costing a 401 round trip per call.
    auth: Mutex<Option<Authenticator>>,
}

const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tse="http://www.onvif.org/ver10/search/wsdl" xmlns:trp="http://www.onvif.org/ver10/replay/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2""#;

impl Device {
    /// A device at `device_url` (credentials must already be out of the URL), reached by
    /// `route`: directly only at addresses its policy allows (names resolve through a resolver
    /// that refuses the others, unless `opts` brings its own resolver), or through the camera's
    /// site tunnel. An `Arc<AddressPolicy>` is a direct route.
    pub fn new(
        device_url: Url,
        creds: Option<Credentials>,
        opts: &ClientOptions,
        route: impl Into<crate::netguard::Route>,
    ) -> Result<Device> {
        let route = route.into();
        let mut opts = opts.clone();
        let (http, site_proxy) = match &route {
            crate::netguard::Route::Direct(policy) => {
                if opts.resolver.is_none() {
                    opts.resolver = Some(Arc::new(crate::netguard::PolicyResolver {
                        policy: policy.clone(),
                    }));
                }
                (http_client(&opts)?, None)
            }
            crate::netguard::Route::Site(site) => {
                let proxy = crate::netguard::SiteProxy::start(site.clone(), opts.timeout)?;
                (http_client_via(&opts, Some(proxy.proxy()))?, Some(proxy))
            }
        };
        Ok(Device {
            device_url,
            creds,
            http,
            route,
            _site_proxy: site_proxy,
            auth: Mutex::new(None),
        })
    }

    pub fn device_url(&self) -> &Url {
        &self.device_url
    }

    /// One SOAP POST: WS-UsernameToken in the envelope when credentials are known, and HTTP
    /// authentication (Digest preferred) when the service answers 401 with a challenge.
    async fn post(&self, url: &Url, envelope: String) -> Result<(u16, String)> {
        let shown = redact_url(url);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Rtsp(format!(
                "{shown}: only http:// and https:// ONVIF services are supported"
            )));
        }
        // reqwest never asks the resolver about an IP-literal host.
        self.route.check_url_literal(url)?;
        let target = request_target(url);
        let mut sent_credentials = false;
        // One try as things stand, one answering a challenge, one after a stale nonce.
        for _attempt in 0..3 {
            let authorization = match (&self.creds, self.lock_auth().as_mut()) {
                (Some(c), Some(a)) => Some(
                    a.authorization(c, "POST", &target)
                        .map_err(|e| Error::Rtsp(format!("{shown}: authorization: {e}")))?,
                ),
                _ => None,
            };
            let mut req = self
                .http
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/soap+xml; charset=utf-8",
                )
                .body(envelope.clone());
            sent_credentials |= authorization.is_some();
            if let Some(v) = authorization {
                req = req.header(reqwest::header::AUTHORIZATION, v);
            }
            let mut resp = req.send().await.map_err(|e| {
                // A host name the policy refused (from our resolver, deep in reqwest's error
                // chain) stays the typed refusal: it is final, not a network failure.
                if let Some(refused) = address_refusal(&e) {
                    return refused;
                }
                let why = if e.is_timeout() {
                    "no response in time".to_string()
                } else {
                    error_chain(&e.without_url())
                };
                Error::Rtsp(format!("{shown}: {why}"))
            })?;
            let status = resp.status().as_u16();
            let challenges: Vec<String> = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect();
            let body = read_bounded(&mut resp, MAX_RESPONSE_BYTES, &shown).await?;
            // A 401 without a challenge is a SOAP fault (WS-Security refused): reported below.
            if status == 401 && self.creds.is_some() && !challenges.is_empty() {
                match on_unauthorized(sent_credentials, challenges.iter().map(String::as_str)) {
                    Unauthorized::Retry(a) => {
                        debug!(url = %shown, digest = a.is_digest(), "ONVIF HTTP authentication");
                        *self.lock_auth() = Some(a);
                        continue;
                    }
                    Unauthorized::Refused(why) => {
                        return Err(Error::Rtsp(format!("{shown}: HTTP 401: {why}")));
                    }
                }
            }
            return Ok((status, String::from_utf8_lossy(&body).into_owned()));
        }
        Err(Error::Rtsp(format!(
            "{shown}: HTTP 401: credentials refused"
        )))
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, Option<Authenticator>> {
        // A panic while holding it cannot leave the state half-written: take it anyway.
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn call(&self, url: &Url, op: &str, body: &str) -> Result<String> {
        let header = self.creds.as_ref().map(security_header).unwrap_or_default();
        let env = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope {NS}>{header}<s:Body>{body}</s:Body></s:Envelope>"#
        );
        let (status, text) = self.post(url, env).await?;
        if status != 200 {
            let reason = first_text(&text, "Text").unwrap_or_default();
            let sub = elements(&text, "Value")
                .into_iter()
                .map(|v| xml_unescape(v.trim()))
                .filter(|v| !v.starts_with('<'))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(Error::Rtsp(format!(
                "ONVIF {op} at {}: HTTP {status} {}",
                redact_url(url),
                peer_summary(&format!("{sub} {reason}"))
            )));
        }
        Ok(text)
    }

    /// Search and replay service addresses (GetCapabilities, falling back to GetServices).
    pub async fn services(&self) -> Result<(Url, Url)> {
        let text = self
            .call(
                &self.device_url,
                "GetCapabilities",
                "<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>",
            )
            .await;
        let pick = |xml: &str, section: &str| -> Option<Url> {
            elements(xml, section)
                .first()
                .and_then(|s| first_text(s, "XAddr"))
                .and_then(|u| Url::parse(&u).ok())
        };
        if let Ok(t) = &text
            && let (Some(s), Some(r)) = (pick(t, "Search"), pick(t, "Replay"))
        {
            return Ok((s, r));
        }
        let t = self
            .call(
                &self.device_url,
                "GetServices",
                "<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>",
            )
            .await?;
        let (mut search, mut replay) = (None, None);
        for svc in elements(&t, "Service") {
            let ns = first_text(svc, "Namespace").unwrap_or_default();
            let addr = first_text(svc, "XAddr").and_then(|u| Url::parse(&u).ok());
            if ns.contains("/search/") {
                search = addr;
            } else if ns.contains("/replay/") {
                replay = addr;
            }
        }
        match (search, replay) {
            (Some(s), Some(r)) => Ok((s, r)),
            _ => Err(Error::Rtsp(format!(
                "ONVIF device {} has no search or replay service (not Profile G)",
                redact_url(&self.device_url)
            ))),
        }
    }

    /// Ends a search (recordings or events), whatever became of it: a camera holds few search
    /// sessions, so one is never left open; its answer does not matter.
    async fn end_search(&self, search: &Url, token: &str) {
        let _ = self
            .call(
                search,
                "EndSearch",
                &format!(
                    "<tse:EndSearch><tse:SearchToken>{}</tse:SearchToken></tse:EndSearch>",
                    xml_escape(token)
                ),
            )
            .await;
    }

    /// Recording tokens the search service lists, in order.
    pub async fn recordings(&self, search: &Url) -> Result<Vec<String>> {
        let t = self
            .call(
                search,
                "FindRecordings",
                "<tse:FindRecordings><tse:Scope></tse:Scope><tse:MaxMatches>100</tse:MaxMatches><tse:KeepAliveTime>PT10S</tse:KeepAliveTime></tse:FindRecordings>",
            )
            .await?;
        let token = first_text(&t, "SearchToken")
            .ok_or_else(|| Error::Rtsp("ONVIF FindRecordings returned no search token".into()))?;
        let mut tokens = Vec::new();
        for _ in 0..10 {
            let r = self
                .call(
                    search,
                    "GetRecordingSearchResults",
                    &format!(
                        "<tse:GetRecordingSearchResults><tse:SearchToken>{}</tse:SearchToken><tse:MinResults>1</tse:MinResults><tse:WaitTime>PT5S</tse:WaitTime></tse:GetRecordingSearchResults>",
                        xml_escape(&token)
                    ),
                )
                .await?;
            for info in elements(&r, "RecordingInformation") {
                if let Some(tok) = first_text(info, "RecordingToken")
                    && !tokens.contains(&tok)
                {
                    tokens.push(tok);
                }
            }
            if first_text(&r, "SearchState").as_deref() != Some("Searching") {
                break;
            }
        }
        self.end_search(search, &token).await;
        Ok(tokens)
    }

    /// The recording token of `camera_name`: `token` if given, else the recording named like
    /// the camera, else the device's only recording (see [`Device::resolve`]).
    pub async fn recording_token(
        &self,
        search: &Url,
        token: Option<&str>,
        camera_name: &str,
    ) -> Result<String> {
        if let Some(t) = token {
            return Ok(t.to_string());
        }
        let all = self.recordings(search).await?;
        debug!(recordings = all.len(), "ONVIF recordings");
        // Only an unambiguous choice: a device holding several cameras' recordings (an NVR)
        // lists only those the credentials may see, so "the first" could be another camera's.
        match all.iter().find(|t| t.as_str() == camera_name) {
            Some(t) => Ok(t.clone()),
            None if all.len() == 1 => Ok(all[0].clone()),
            None => Err(Error::Rtsp(format!(
                "ONVIF device {} lists {} recordings, none named {camera_name:?}; set edgeStorage.onvif.recordingToken",
                redact_url(&self.device_url),
                all.len()
            ))),
        }
    }

    /// Profile G `FindEvents` + `GetEventSearchResults`: the motion and digital-input state
    /// changes the camera logged for `recording` in `[start_ms, end_ms]`, led by the states in
    /// force at `start_ms` (`IncludeStartState`), in time order. Bounded: at most
    /// [`MAX_EVENT_RESULTS`] results over at most [`MAX_EVENT_PAGES`] pages (`truncated` says
    /// when the camera had more). A camera without the operation gives
    /// [`Error::Unsupported`].
    pub async fn find_events(
        &self,
        search: &Url,
        recording: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<EventSearch> {
        let at = |ms: i64| {
            chrono::DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        };
        let t = self
            .call(
                search,
                "FindEvents",
                &format!(
                    "<tse:FindEvents><tse:StartPoint>{}</tse:StartPoint><tse:EndPoint>{}</tse:EndPoint><tse:Scope><tt:IncludedRecordings>{}</tt:IncludedRecordings></tse:Scope><tse:SearchFilter/><tse:IncludeStartState>true</tse:IncludeStartState><tse:MaxMatches>{MAX_EVENT_RESULTS}</tse:MaxMatches><tse:KeepAliveTime>PT30S</tse:KeepAliveTime></tse:FindEvents>",
                    at(start_ms),
                    at(end_ms),
                    xml_escape(recording)
                ),
            )
            .await
            .map_err(|e| unsupported("FindEvents", e))?;
        let token = first_text(&t, "SearchToken")
            .ok_or_else(|| Error::Rtsp("ONVIF FindEvents returned no search token".into()))?;
        let mut out = EventSearch::default();
        let mut empty_pages = 0;
        let mut result = Ok(());
        for _ in 0..MAX_EVENT_PAGES {
            let r = match self
                .call(
                    search,
                    "GetEventSearchResults",
                    &format!(
                        "<tse:GetEventSearchResults><tse:SearchToken>{}</tse:SearchToken><tse:MinResults>1</tse:MinResults><tse:MaxResults>{EVENT_PAGE}</tse:MaxResults><tse:WaitTime>PT5S</tse:WaitTime></tse:GetEventSearchResults>",
                        xml_escape(&token)
                    ),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    result = Err(unsupported("GetEventSearchResults", e));
                    break;
                }
            };
            let (page, searching) = parse_event_results(&r);
            empty_pages = if page.is_empty() { empty_pages + 1 } else { 0 };
            let room = MAX_EVENT_RESULTS - out.events.len();
            out.truncated |= page.len() > room;
            out.events.extend(page.into_iter().take(room));
            // A search still running that keeps answering nothing is given up on.
            if !searching || out.events.len() >= MAX_EVENT_RESULTS || empty_pages >= 3 {
                out.truncated |= searching;
                break;
            }
        }
        self.end_search(search, &token).await;
        result?;
        out.events
            .sort_by_key(|e| (e.time_ms, !e.start_state, e.topic as u8));
        Ok(out)
    }

    pub async fn replay_uri(&self, replay: &Url, token: &str) -> Result<Url> {
        let t = self
            .call(
                replay,
                "GetReplayUri",
                &format!(
                    "<trp:GetReplayUri><trp:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trp:StreamSetup><trp:RecordingToken>{}</trp:RecordingToken></trp:GetReplayUri>",
                    xml_escape(token)
                ),
            )
            .await?;
        let uri = first_text(&t, "Uri")
            .ok_or_else(|| Error::Rtsp("ONVIF GetReplayUri returned no URI".into()))?;
        Url::parse(&uri).map_err(|e| Error::Rtsp(format!("ONVIF replay URI is not a URL: {e}")))
    }

    /// The replay URI of `token`, or of the recording named like `camera_name`, else of the
    /// device's only recording.
    pub async fn resolve(&self, token: Option<&str>, camera_name: &str) -> Result<(String, Url)> {
        let (search, replay) = self.services().await?;
        let token = self.recording_token(&search, token, camera_name).await?;
        let uri = self.replay_uri(&replay, &token).await?;
        Ok((token, uri))
    }
}

/// Most results taken from one event search.
pub const MAX_EVENT_RESULTS: usize = 10_000;
/// Most `GetEventSearchResults` calls of one search.
pub const MAX_EVENT_PAGES: usize = 200;
const EVENT_PAGE: usize = 100;

/// One state change found by a Profile G event search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeEvent {
    pub time_ms: i64,
    pub topic: Topic,
    /// The source item's value (video source or input token), bounded.
    pub source: Option<String>,
    pub state: bool,
    /// The state in force at the search's start point (`StartStateEvent`), not a change.
    pub start_state: bool,
}

/// What an event search found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSearch {
    pub events: Vec<EdgeEvent>,
    /// The camera had more than was taken.
    pub truncated: bool,
}

/// A fault saying the operation does not exist becomes [`Error::Unsupported`].
fn unsupported(op: &'static str, e: Error) -> Error {
    match e {
        Error::Rtsp(m)
            if [
                "ActionNotSupported",
                "NotImplemented",
                "not supported",
                "HTTP 404",
                "HTTP 405",
            ]
            .iter()
            .any(|w| m.contains(w)) =>
        {
            Error::Unsupported { op, detail: m }
        }
        e => e,
    }
}

/// Pure: the motion and digital-input results of a `GetEventSearchResultsResponse` (others,
/// and ones without a usable time or state, skipped), and whether the search is still
/// running (`SearchState` other than `Completed`).
pub fn parse_event_results(xml: &str) -> (Vec<EdgeEvent>, bool) {
    use crate::onvif_events::{parse_message, parse_time_ms, topic_of};
    let searching = first_text(xml, "SearchState").is_some_and(|s| s != "Completed");
    let mut out = Vec::new();
    for r in elements(xml, "Result").into_iter().take(MAX_EVENT_RESULTS) {
        let Some(topic) = first_text(r, "Topic").and_then(|t| topic_of(&t)) else {
            continue;
        };
        let Some(n) = parse_message(r, topic) else {
            continue;
        };
        // The result's Time, else the message's UtcTime.
        let Some(time_ms) = first_text(r, "Time")
            .and_then(|t| parse_time_ms(&t))
            .or(n.utc_ms)
        else {
            continue;
        };
        let start_state = first_text(r, "StartStateEvent").is_some_and(|v| v == "true" || v == "1")
            || n.initialized;
        out.push(EdgeEvent {
            time_ms,
            topic,
            source: n.source,
            state: n.state,
            start_state,
        });
    }
    (out, searching)
}

/// One stretch of time an event was active at the camera.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeInterval {
    pub topic: Topic,
    pub source: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The camera reported its end (else it was still active at the window's end).
    pub complete: bool,
}

/// Pure: pairs state changes (in any order) into the intervals each (topic, source) was
/// active within `[start_ms, end_ms)`, clipped to it, in start order. A state already true at
/// the start (or a change before it) counts from the start; one still true at the end ends
/// there, incomplete. Repeated `true`s extend, a `false` without a `true` is ignored.
pub fn edge_intervals(events: &[EdgeEvent], start_ms: i64, end_ms: i64) -> Vec<EdgeInterval> {
    use std::collections::BTreeMap;
    let mut sorted: Vec<&EdgeEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.time_ms, !e.start_state));
    let mut open: BTreeMap<(u8, Option<String>), (Topic, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in sorted {
        if e.time_ms >= end_ms {
            break;
        }
        let key = (e.topic as u8, e.source.clone());
        let t = e.time_ms.max(start_ms);
        match (e.state, open.get(&key).map(|v| v.1)) {
            (true, None) => {
                open.insert(key, (e.topic, t));
            }
            (false, Some(from)) => {
                open.remove(&key);
                if t > from {
                    out.push(EdgeInterval {
                        topic: e.topic,
                        source: e.source.clone(),
                        start_ms: from,
                        end_ms: t,
                        complete: true,
                    });
                }
            }
            _ => {}
        }
    }
    for ((_, source), (topic, from)) in open {
        if end_ms > from {
            out.push(EdgeInterval {
                topic,
                source,
                start_ms: from,
                end_ms,
                complete: false,
            });
        }
    }
    out.sort_by_key(|i| (i.start_ms, i.end_ms, i.topic as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::netpolicy::AddressPolicy;

    /// The test servers listen on loopback, which the default policy refuses.
    fn loopback() -> Arc<AddressPolicy> {
        Arc::new(
            AddressPolicy::new(
                &vigil_api::CameraNetworks {
                    allow: vec!["127.0.0.1/32".into()],
                    deny: vec![],
                },
                &Default::default(),
            )
            .expect("policy"),
        )
    }

    #[tokio::test]
    async fn a_device_named_by_a_refused_host_name_is_refused_as_such() {
        let url = Url::parse("http://localhost:9/onvif/device_service").unwrap();
        let dev = Device::new(
            url.clone(),
            None,
            &ClientOptions::default(),
            Arc::new(AddressPolicy::default()),
        )
        .unwrap();
        let e = dev.call(&url, "GetCapabilities", "").await.unwrap_err();
        assert!(matches!(e, Error::AddressNotAllowed { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_device_at_a_refused_address_is_never_contacted() {
        let url = Url::parse("http://169.254.169.254/onvif/device_service").unwrap();
        let dev = Device::new(url.clone(), None, &ClientOptions::default(), loopback()).unwrap();
        let e = dev.call(&url, "GetCapabilities", "").await.unwrap_err();
        assert!(matches!(e, Error::AddressNotAllowed { .. }), "{e}");
    }

    fn change(time_ms: i64, topic: Topic, source: &str, state: bool, start: bool) -> EdgeEvent {
        EdgeEvent {
            time_ms,
            topic,
            source: Some(source.into()),
            state,
            start_state: start,
        }
    }

    #[test]
    fn event_search_results_parse_defensively() {
        // As the simulator (and Profile G cameras) answer: a start state, a change, a result
        // of another topic, one without a time, and one with a broken state.
        let x = r#"<tse:GetEventSearchResultsResponse><tse:ResultList><tt:SearchState>Searching</tt:SearchState>
<tt:Result><tt:RecordingToken>cam1</tt:RecordingToken><tt:Time>2026-01-02T03:04:05.000Z</tt:Time><tt:Event><wsnt:Topic Dialect="x">tns1:Device/Trigger/DigitalInput</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:05.000Z" PropertyOperation="Initialized"><tt:Source><tt:SimpleItem Name="InputToken" Value="DI0"/></tt:Source><tt:Data><tt:SimpleItem Name="LogicalState" Value="true"/></tt:Data></tt:Message></wsnt:Message></tt:Event><tt:StartStateEvent>true</tt:StartStateEvent></tt:Result>
<tt:Result><tt:Time>2026-01-02T03:04:06.250Z</tt:Time><tt:Event><wsnt:Topic>tns1:VideoSource/MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:06.250Z" PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vs&amp;1"/></tt:Source><tt:Data><tt:SimpleItem Name="State" Value="true"/></tt:Data></tt:Message></wsnt:Message></tt:Event><tt:StartStateEvent>false</tt:StartStateEvent></tt:Result>
<tt:Result><tt:Time>2026-01-02T03:04:07Z</tt:Time><tt:Event><wsnt:Topic>tns1:RecordingConfig/JobState</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:07Z"><tt:Data><tt:SimpleItem Name="State" Value="Active"/></tt:Data></tt:Message></wsnt:Message></tt:Event></tt:Result>
<tt:Result><tt:Time>not a time</tt:Time><tt:Event><wsnt:Topic>tns1:VideoSource/MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message><tt:Data><tt:SimpleItem Name="State" Value="false"/></tt:Data></tt:Message></wsnt:Message></tt:Event></tt:Result>
<tt:Result><tt:Time>2026-01-02T03:04:08Z</tt:Time><tt:Event><wsnt:Topic>tns1:VideoSource/MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-01-02T03:04:08Z"><tt:Data><tt:SimpleItem Name="State" Value="maybe"/></tt:Data></tt:Message></wsnt:Message></tt:Event></tt:Result>
</tse:ResultList></tse:GetEventSearchResultsResponse>"#;
        let (ev, searching) = parse_event_results(x);
        assert!(searching);
        assert_eq!(
            ev,
            vec![
                change(1_767_323_045_000, Topic::DigitalInput, "DI0", true, true),
                change(1_767_323_046_250, Topic::Motion, "vs&1", true, false),
            ]
        );
        let (ev, searching) = parse_event_results(
            "<tse:ResultList><tt:SearchState>Completed</tt:SearchState></tse:ResultList>",
        );
        assert!(ev.is_empty() && !searching);
        // Garbage is no results, not a panic.
        assert_eq!(parse_event_results("<a><Result><Topic>").0, vec![]);
    }

    #[test]
    fn state_changes_pair_into_clipped_intervals() {
        let m = Topic::Motion;
        let d = Topic::DigitalInput;
        let evs = vec![
            // DI0 already on at the window's start (a start state), off at 5000.
            change(1000, d, "DI0", true, true),
            change(5000, d, "DI0", false, false),
            // Motion 2000..3000, a repeated true ignored, an unpaired false ignored.
            change(3000, m, "vs", false, false),
            change(2000, m, "vs", true, false),
            change(2500, m, "vs", true, false),
            change(3500, m, "vs", false, false),
            // Motion again at 8000, still on at the window's end (10000).
            change(8000, m, "vs", true, false),
            // After the window: ignored.
            change(12_000, m, "vs", false, false),
        ];
        let iv = edge_intervals(&evs, 1000, 10_000);
        let got: Vec<(Topic, i64, i64, bool)> = iv
            .iter()
            .map(|i| (i.topic, i.start_ms, i.end_ms, i.complete))
            .collect();
        assert_eq!(
            got,
            vec![
                (d, 1000, 5000, true),
                (m, 2000, 3000, true),
                (m, 8000, 10_000, false),
            ]
        );
        // A change before the window (a camera ignoring StartPoint) counts from the start;
        // the same source name under two topics are two intervals.
        let evs = vec![
            change(500, m, "x", true, false),
            change(600, d, "x", true, false),
            change(1500, m, "x", false, false),
        ];
        let got: Vec<(Topic, i64, i64, bool)> = edge_intervals(&evs, 1000, 2000)
            .iter()
            .map(|i| (i.topic, i.start_ms, i.end_ms, i.complete))
            .collect();
        assert_eq!(got, vec![(m, 1000, 1500, true), (d, 1000, 2000, false)]);
    }

    #[test]
    fn digest_matches_the_ws_security_example() {
        // Computed with Python: base64(sha1(b"0123456789abcdef" + b"2026-01-02T03:04:05Z" + b"secret"))
        let d = password_digest(b"0123456789abcdef", "2026-01-02T03:04:05Z", "secret");
        assert_eq!(d, "wjpInr7UL0thZOXWecrqoApQnDY=");
        assert_eq!(
            d,
            password_digest(b"0123456789abcdef", "2026-01-02T03:04:05Z", "secret")
        );
        assert_ne!(
            d,
            password_digest(b"0123456789abcdeX", "2026-01-02T03:04:05Z", "secret")
        );
    }

    #[test]
    fn finds_elements_by_local_name() {
        let x = r#"<s:Body><tt:Search><tt:XAddr>http://h/onvif/search_service</tt:XAddr></tt:Search><tt:Replay><tt:XAddr>http://h/r?a=1&amp;b=2</tt:XAddr></tt:Replay><x:Empty/></s:Body>"#;
        let s = elements(x, "Search");
        assert_eq!(
            first_text(s[0], "XAddr").unwrap(),
            "http://h/onvif/search_service"
        );
        assert_eq!(
            first_text(elements(x, "Replay")[0], "XAddr").unwrap(),
            "http://h/r?a=1&b=2"
        );
        assert_eq!(elements(x, "Empty"), vec![""]);
        assert!(elements("<a><b", "b").is_empty());
    }

    #[test]
    fn xml_that_fooled_a_hand_parser() {
        // A '>' inside an attribute, a commented-out element, nested same-named elements,
        // character references.
        let x = r#"<s:Body><!-- <tt:Uri>rtsp://evil/</tt:Uri> --><trp:GetReplayUriResponse note="a>b"><tt:Uri>rtsp://cam/replay?a=1&amp;b=&#50;</tt:Uri></trp:GetReplayUriResponse><tt:Extension><tt:Extension><tt:X>1</tt:X></tt:Extension></tt:Extension></s:Body>"#;
        assert_eq!(
            first_text(x, "Uri").as_deref(),
            Some("rtsp://cam/replay?a=1&b=2")
        );
        let ext = elements(x, "Extension");
        assert_eq!(ext.len(), 1, "{ext:?}");
        assert_eq!(first_text(ext[0], "X").as_deref(), Some("1"));
        // Malformed after the first match: what came before is kept.
        assert_eq!(elements("<a><b>1</b></c><b>2</b>", "b"), vec!["1"]);
    }

    /// A one-connection HTTP server answering every request with `head` and then `body`
    /// (streamed until the client goes away). Returns its URL.
    async fn serve_once(head: &'static str, body: fn(usize) -> Option<Vec<u8>>) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/onvif/device_service",
            l.local_addr().unwrap()
        ))
        .unwrap();
        tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf).await;
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut i = 0;
            while let Some(b) = body(i) {
                if s.write_all(&b).await.is_err() {
                    return;
                }
                i += 1;
            }
        });
        url
    }

    fn chunk_of_64k(_: usize) -> Option<Vec<u8>> {
        let mut c = format!("{:x}\r\n", 65536).into_bytes();
        c.extend(std::iter::repeat_n(b'x', 65536));
        c.extend_from_slice(b"\r\n");
        Some(c)
    }

    #[tokio::test]
    async fn a_never_ending_chunked_answer_is_cut_at_the_limit() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunk_of_64k,
        )
        .await;
        let dev = Device::new(url.clone(), None, &ClientOptions::default(), loopback()).unwrap();
        let e = dev.call(&url, "GetCapabilities", "").await.unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[tokio::test]
    async fn a_huge_content_length_is_refused_before_reading() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            |_| None,
        )
        .await;
        let dev = Device::new(url.clone(), None, &ClientOptions::default(), loopback()).unwrap();
        let e = dev.call(&url, "GetCapabilities", "").await.unwrap_err();
        assert!(e.to_string().contains("over the 1048576-byte limit"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_camera_times_out() {
        let url = serve_once("", |_| None).await;
        let dev = Device::new(
            url.clone(),
            None,
            &ClientOptions {
                timeout: Duration::from_millis(500),
                ..ClientOptions::default()
            },
            loopback(),
        )
        .unwrap();
        let t = std::time::Instant::now();
        let e = dev.call(&url, "GetCapabilities", "").await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{e}");
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused() {
        let e = http_client(&ClientOptions {
            tls: TlsVerify::Ca(b"not a certificate".to_vec()),
            ..ClientOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("TLS CA"), "{e}");
    }
}
