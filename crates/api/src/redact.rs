//! Keeping credentials out of logs, errors, metrics and status.
//!
//! Camera URLs are split into a credential-free URL and retina `Credentials` before anything
//! sees them; URLs are only displayed through `redact_url`, and error text from libraries goes
//! through `Redactor::scrub`, which also removes the values of known secrets wherever they
//! appear (some cameras echo the request URL, query tokens included, in error bodies).

use url::Url;

/// A URL fit for logs: scheme, host, port and path; no user info; query replaced by `?…`.
pub fn redact_url(url: &Url) -> String {
    let mut s = format!("{}://", url.scheme());
    if let Some(h) = url.host_str() {
        s.push_str(h);
    }
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(url.path());
    if url.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// Query parameter names that carry credentials (compared case-insensitively); names that
/// contain `pass`, `pwd`, `token` or `secret` count too.
const CREDENTIAL_PARAMS: &[&str] = &[
    "user",
    "username",
    "usr",
    "login",
    "password",
    "pass",
    "passwd",
    "pwd",
    "pw",
    "token",
    "auth",
    "authorization",
    "key",
    "apikey",
    "api_key",
    "access_key",
    "secret",
    "sig",
    "signature",
    "session",
    "sessionid",
];

/// Whether a URL carries credentials: user info (`user:pass@`) or a query parameter such as
/// `password=`, `token=`, `key=` (any case). Camera credentials belong in a Secret.
pub fn url_has_credentials(url: &Url) -> bool {
    !url.username().is_empty()
        || url.password().is_some()
        || url.query_pairs().any(|(k, _)| is_credential_param(&k))
}

fn is_credential_param(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    CREDENTIAL_PARAMS.contains(&n.as_str())
        || ["pass", "pwd", "token", "secret"]
            .iter()
            .any(|w| n.contains(w))
}

/// At most this many characters of what a peer (camera, ONVIF service, RTSP server) said reach
/// a status, an Event or a log line.
pub const PEER_SUMMARY_MAX: usize = 80;

/// A short printable summary of text that came from, or quotes, a peer: its first paragraph
/// (library errors put connection context and hex dumps of the message after a blank line),
/// printable ASCII only, whitespace collapsed, at most `PEER_SUMMARY_MAX` characters. Whatever
/// a hostile server answers — a metadata document, a JSON body, a binary blob — at most a short
/// line of it is shown.
pub fn peer_summary(text: &str) -> String {
    let first = text.split("\n\n").next().unwrap_or_default();
    let mut out = String::with_capacity(PEER_SUMMARY_MAX + 3);
    let mut space = false;
    let mut n = 0;
    for c in first.chars() {
        let c = if c.is_whitespace() {
            ' '
        } else if c.is_ascii_graphic() {
            c
        } else {
            '?'
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if n == PEER_SUMMARY_MAX {
            out.truncate(out.trim_end().len());
            out.push_str("...");
            return out;
        }
        out.push(c);
        n += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

/// Removes user info from `url` and returns it separately (percent-decoded).
pub fn split_credentials(mut url: Url) -> (Url, Option<(String, String)>) {
    let user = url.username().to_string();
    let pass = url.password().map(str::to_string);
    if user.is_empty() && pass.is_none() {
        return (url, None);
    }
    // Both setters only fail for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (
        url,
        Some((
            percent_decode(&user),
            percent_decode(&pass.unwrap_or_default()),
        )),
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Scrubs known secret strings and any `user:password@` URL user info from text.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value that must never be shown. Very short values (under 3 bytes) are not
    /// scrubbed by value, which would mangle every message, but they still never reach a log
    /// because credentials are kept out of URLs.
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first, so that a secret containing another is removed whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut s = strip_userinfo(text);
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "***");
            }
        }
        s
    }
}

/// Removes `user[:pass]@` after every `://` in free text.
fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn redacts_url() {
        let u = Url::parse("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101?token=abc").unwrap();
        assert_eq!(redact_url(&u), "rtsp://10.0.0.5:554/Streaming/101?…");
    }

    #[test]
    fn splits_credentials() {
        let u = Url::parse("rtsp://ad%40min:p%3Ass@cam.local/live").unwrap();
        let (clean, creds) = split_credentials(u);
        assert_eq!(clean.as_str(), "rtsp://cam.local/live");
        assert_eq!(creds, Some(("ad@min".into(), "p:ss".into())));
        let (same, none) = split_credentials(Url::parse("rtsp://cam/live").unwrap());
        assert_eq!(same.as_str(), "rtsp://cam/live");
        assert_eq!(none, None);
    }

    #[test]
    fn scrubs_text() {
        let mut r = Redactor::new();
        r.add("hunter2");
        assert_eq!(
            r.scrub("DESCRIBE rtsp://admin:hunter2@cam/live failed: 401 (password hunter2)"),
            "DESCRIBE rtsp://***@cam/live failed: 401 (password ***)"
        );
    }

    #[test]
    fn credentials_in_queries_are_found() {
        for bad in [
            "rtsp://cam/live?user=admin&password=x",
            "rtsp://cam/live?PWD=x",
            "rtsp://cam/live?channel=1&Token=abc",
            "rtsp://cam/live?auth=abc",
            "rtsp://cam/live?key=abc",
            "rtsp://cam/live?x-auth-token=abc",
            "http://cam/onvif/device_service?passwd=1",
            "rtsp://cam/pb?starttime={start}&endtime={end}&user_password=1",
            "rtsp://admin@cam/live",
        ] {
            assert!(url_has_credentials(&Url::parse(bad).unwrap()), "{bad}");
        }
        for ok in [
            "rtsp://cam/live",
            "rtsp://cam/Streaming/tracks/101?starttime={start}&endtime={end}",
            "rtsp://cam/cam/playback?channel=1&subtype=0",
            "rtsp://cam/live?keyframe=1",
        ] {
            assert!(!url_has_credentials(&Url::parse(ok).unwrap()), "{ok}");
        }
    }

    #[test]
    fn peer_summary_is_short_and_printable() {
        let body = format!(
            "RTSP framing error: Invalid RTSP message; buffered: HTTP/1.1 200 OK {}\n\nconn: x\nmsg: 0000: 48 54 54 50",
            r#"{"AccessKeyId":"ASIAXXXX","SecretAccessKey":"abcdefghijklmnopqrstuvwxyz0123456789"}"#
        );
        let s = peer_summary(&body);
        assert!(s.len() <= PEER_SUMMARY_MAX + 3, "{s}");
        assert!(!s.contains("abcdefghijklmnop"), "{s}");
        assert!(!s.contains("0000:"), "{s}");
        assert_eq!(
            peer_summary("bad\x00\x1b[31m  thing\r\n"),
            "bad??[31m thing"
        );
        assert_eq!(peer_summary("  short  "), "short");
    }

    proptest! {
        #[test]
        fn peer_summary_bounds_anything(text in any::<String>()) {
            let s = peer_summary(&text);
            prop_assert!(s.chars().count() <= PEER_SUMMARY_MAX + 3);
            prop_assert!(s.chars().all(|c| c == ' ' || c.is_ascii_graphic()), "{:?}", s);
        }

        #[test]
        fn secret_never_survives(prefix in ".{0,40}", secret in "[a-zA-Z0-9@:/._-]{3,20}", suffix in ".{0,40}") {
            let mut r = Redactor::new();
            r.add(&secret);
            let out = r.scrub(&format!("{prefix}{secret}{suffix}"));
            prop_assert!(!out.contains(&secret), "{}", out);
        }

        #[test]
        fn userinfo_never_survives(user in "[a-z]{1,8}", pass in "[a-zA-Z0-9]{6,12}", host in "[a-z]{1,8}", path in "(/[a-z]{1,5}){0,3}") {
            let out = Redactor::new().scrub(&format!("error at rtsp://{user}:{pass}@{host}{path} now"));
            prop_assert!(!out.contains(&format!("{user}:{pass}")), "{}", out);
        }
    }
}

/// Camera user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}
