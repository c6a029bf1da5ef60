//! ONVIF Profile G over SOAP 1.2: find the search and replay services, the recording, and its
//! replay URI. Requests carry a WS-Security UsernameToken with a password digest
//! (Base64(SHA1(nonce + created + password))) when credentials are known, so the password
//! never crosses the wire. Plain HTTP only (cameras' ONVIF ports are plain HTTP in practice);
//! responses are bounded in size and time and parsed by local element name.

use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;
use url::Url;

use crate::error::{Error, Result};
use vigil_api::redact::Credentials;
use vigil_api::redact::redact_url;

const MAX_RESPONSE_BYTES: usize = 4 << 20;

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
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Texts of every element with this local name (any namespace prefix), in document order.
/// Good enough for ONVIF responses, whose elements of interest hold text or plain children.
pub fn elements<'a>(xml: &'a str, local: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = xml[pos..].find('<') {
        let start = pos + i + 1;
        let Some(gt) = xml[start..].find('>') else {
            break;
        };
        let tag = &xml[start..start + gt];
        pos = start + gt + 1;
        if tag.starts_with('/') || tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let name = tag
            .split([' ', '\t', '\r', '\n', '/'])
            .next()
            .unwrap_or_default();
        let lname = name.rsplit(':').next().unwrap_or(name);
        if lname != local {
            continue;
        }
        if tag.ends_with('/') {
            out.push("");
            continue;
        }
        // The matching close tag of the same qualified name (no nesting of the same name in
        // the elements we read).
        let close = format!("</{name}>");
        if let Some(j) = xml[pos..].find(&close) {
            out.push(&xml[pos..pos + j]);
            pos += j + close.len();
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

/// A minimal HTTP/1.1 POST (`Connection: close`).
async fn http_post(url: &Url, body: &str, timeout: Duration) -> Result<(u16, String)> {
    let shown = redact_url(url);
    if url.scheme() != "http" {
        return Err(Error::Rtsp(format!(
            "{shown}: only http:// ONVIF services are supported"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::Rtsp(format!("{shown}: no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let fut = async {
        let mut s = TcpStream::connect((host, port))
            .await
            .map_err(|e| Error::Rtsp(format!("{shown}: connect: {e}")))?;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host_hdr = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_hdr}\r\nContent-Type: application/soap+xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: vigil-recorder\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| Error::Rtsp(format!("{shown}: write: {e}")))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| Error::Rtsp(format!("{shown}: read: {e}")))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(Error::Rtsp(format!("{shown}: response too large")));
            }
            // Stop at Content-Length when the server keeps the connection open anyway.
            if let Some(he) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
                if let Some(cl) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    && buf.len() >= he + 4 + cl
                {
                    buf.truncate(he + 4 + cl);
                    break;
                }
            }
        }
        let he = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::Rtsp(format!("{shown}: malformed HTTP response")))?;
        let head = String::from_utf8_lossy(&buf[..he]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::Rtsp(format!("{shown}: malformed HTTP status line")))?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Err(Error::Rtsp(format!(
                "{shown}: chunked responses are not supported"
            )));
        }
        Ok((status, String::from_utf8_lossy(&buf[he + 4..]).to_string()))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        Error::Rtsp(format!(
            "{shown}: no response within {} s",
            timeout.as_secs()
        ))
    })?
}

/// An ONVIF device.
pub struct Device {
    pub device_url: Url,
    pub creds: Option<Credentials>,
    pub timeout: Duration,
}

const NS: &str = r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tse="http://www.onvif.org/ver10/search/wsdl" xmlns:trp="http://www.onvif.org/ver10/replay/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema""#;

impl Device {
    async fn call(&self, url: &Url, op: &str, body: &str) -> Result<String> {
        let header = self.creds.as_ref().map(security_header).unwrap_or_default();
        let env = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope {NS}>{header}<s:Body>{body}</s:Body></s:Envelope>"#
        );
        let (status, text) = http_post(url, &env, self.timeout).await?;
        if status != 200 {
            let reason = first_text(&text, "Text").unwrap_or_default();
            let sub = elements(&text, "Value")
                .into_iter()
                .map(|v| xml_unescape(v.trim()))
                .filter(|v| !v.starts_with('<'))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(Error::Rtsp(format!(
                "ONVIF {op} at {}: HTTP {status} {sub} {reason}",
                redact_url(url)
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
        let _ = self
            .call(
                search,
                "EndSearch",
                &format!(
                    "<tse:EndSearch><tse:SearchToken>{}</tse:SearchToken></tse:EndSearch>",
                    xml_escape(&token)
                ),
            )
            .await;
        Ok(tokens)
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
        let token = match token {
            Some(t) => t.to_string(),
            None => {
                let all = self.recordings(&search).await?;
                debug!(recordings = all.len(), "ONVIF recordings");
                // Only an unambiguous choice: a device holding several cameras' recordings
                // (an NVR) lists only those the credentials may see, so "the first" could be
                // another camera's footage.
                match all.iter().find(|t| t.as_str() == camera_name) {
                    Some(t) => t.clone(),
                    None if all.len() == 1 => all[0].clone(),
                    None => {
                        return Err(Error::Rtsp(format!(
                            "ONVIF device {} lists {} recordings, none named {camera_name:?}; set edgeStorage.onvif.recordingToken",
                            redact_url(&self.device_url),
                            all.len()
                        )));
                    }
                }
            }
        };
        let uri = self.replay_uri(&replay, &token).await?;
        Ok((token, uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
