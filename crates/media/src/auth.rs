//! Password authentication against cameras, shared by the RTSP replay client and the ONVIF
//! (HTTP) client: Basic (RFC 7617) and Digest (RFC 7616 / RFC 2617) with `qop=auth`,
//! `cnonce`, a counting `nc`, `opaque`, the MD5 / SHA-256 / SHA-512-256 algorithms and their
//! `-sess` variants. The digest arithmetic is the `http-auth` crate's (the one retina uses on
//! the live path); this module adds what a connection needs around it: choosing among a
//! 401's challenges, and deciding when a second 401 is worth another try (`stale=true`: the
//! server only wants a fresh nonce) and when it means the credentials are wrong.

use http_auth::{PasswordClient, PasswordParams};

use vigil_api::redact::Credentials;

/// The authentication state of one connection (RTSP) or one origin (HTTP): the chosen
/// challenge and, for Digest, its nonce count.
#[derive(Debug)]
pub struct Authenticator {
    client: PasswordClient,
}

/// What to do after a 401.
#[derive(Debug)]
pub enum Unauthorized {
    /// Retry the request with this (new) authenticator.
    Retry(Authenticator),
    /// The credentials were refused (or no usable challenge was offered).
    Refused(String),
}

impl Authenticator {
    /// Picks a challenge from every `WWW-Authenticate` value of a 401: the server's first
    /// Digest challenge of a supported algorithm (RFC 7616 §3.7: listed in order of
    /// preference), else Basic.
    pub fn from_challenges<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Authenticator, String> {
        let mut b = PasswordClient::builder();
        for v in values {
            b = b.challenges(v);
        }
        Ok(Authenticator { client: b.build()? })
    }

    /// Whether the server asked for Digest (else Basic).
    pub fn is_digest(&self) -> bool {
        matches!(self.client, PasswordClient::Digest(_))
    }

    /// The `Authorization` value for one request (`uri` exactly as on the request line).
    /// Each call counts one use of a Digest nonce (`nc`).
    pub fn authorization(
        &mut self,
        creds: &Credentials,
        method: &str,
        uri: &str,
    ) -> Result<String, String> {
        self.client.respond(&PasswordParams {
            username: &creds.username,
            password: &creds.password,
            uri,
            method,
            // qop=auth-int would need the body; auth is what cameras offer.
            body: None,
        })
    }

    /// A Digest challenge that says only the nonce was too old (`stale=true`).
    fn is_stale(&self) -> bool {
        match &self.client {
            PasswordClient::Digest(d) => d.stale(),
            _ => false,
        }
    }
}

/// Decides on a 401. `sent` says whether the request carried credentials. A first 401
/// (nothing sent yet) is answered with the offered challenge; after credentials were sent,
/// only a Digest challenge with `stale=true` is retried (RFC 7616 §3.3: the password was
/// right, the nonce expired) — anything else means the credentials are wrong, and retrying
/// would only lock the account on cameras that count failures.
pub fn on_unauthorized<'a>(
    sent: bool,
    challenges: impl IntoIterator<Item = &'a str>,
) -> Unauthorized {
    match Authenticator::from_challenges(challenges) {
        Err(e) => Unauthorized::Refused(format!("no usable authentication challenge: {e}")),
        Ok(a) if !sent || a.is_stale() => Unauthorized::Retry(a),
        Ok(_) => Unauthorized::Refused("credentials refused".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn param<'a>(header: &'a str, key: &str) -> Option<&'a str> {
        header.split([',', ' ']).find_map(|kv| {
            kv.trim()
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim_matches('"'))
        })
    }

    /// The response value of a `GET uri` the way RFC 7616 §3.4.1 computes it, for checking
    /// the client against an independent implementation with its own cnonce.
    fn expected(
        alg: &str,
        c: &Credentials,
        realm: &str,
        uri: &str,
        nonce: &str,
        nc: &str,
        cnonce: &str,
    ) -> String {
        let h = |s: String| -> String {
            if alg == "SHA-256" {
                let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
                d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
            } else {
                use md5::{Digest as _, Md5};
                Md5::digest(s.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
        };
        let ha1 = h(format!("{}:{realm}:{}", c.username, c.password));
        let ha2 = h(format!("GET:{uri}"));
        h(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    }

    /// RFC 7616 §3.9.1 (the same inputs as RFC 2617 §3.5 with SHA-256 and MD5): the server
    /// offers SHA-256 first; the client must pick it, send qop=auth, a cnonce, nc=00000001,
    /// echo opaque, and compute the response the RFC way.
    #[test]
    fn rfc7616_example_sha256_then_md5() {
        let www = [
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        ];
        let c = creds("Mufasa", "Circle of Life");
        let mut a = Authenticator::from_challenges(www).unwrap();
        assert!(a.is_digest());
        let v = a.authorization(&c, "GET", "/dir/index.html").unwrap();
        assert!(v.starts_with("Digest "), "{v}");
        assert_eq!(param(&v, "algorithm"), Some("SHA-256"), "{v}");
        assert_eq!(param(&v, "qop"), Some("auth"), "{v}");
        assert_eq!(param(&v, "nc"), Some("00000001"), "{v}");
        assert_eq!(
            param(&v, "opaque"),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        let cnonce = param(&v, "cnonce").expect("cnonce");
        assert!(cnonce.len() >= 16, "{v}");
        let want = expected(
            "SHA-256",
            &c,
            "http-auth@example.org",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "00000001",
            cnonce,
        );
        assert_eq!(param(&v, "response"), Some(want.as_str()), "{v}");

        // The next request counts the nonce (nc=2) with a fresh cnonce.
        let v2 = a.authorization(&c, "GET", "/dir/index.html").unwrap();
        assert_eq!(param(&v2, "nc"), Some("00000002"), "{v2}");
        assert_ne!(param(&v2, "cnonce"), Some(cnonce));
    }

    /// The client's Authorization value with a fixed cnonce (the RFCs' examples).
    fn with_cnonce(www: &str, c: &Credentials, uri: &str, cnonce: &str) -> String {
        let Ok(PasswordClient::Digest(mut d)) = PasswordClient::try_from(www) else {
            panic!("not a digest challenge: {www}")
        };
        d.respond_with_testing_cnonce(
            &PasswordParams {
                username: &c.username,
                password: &c.password,
                uri,
                method: "GET",
                body: None,
            },
            cnonce,
        )
        .unwrap()
    }

    /// With the RFCs' own cnonces the RFCs' own responses come out: RFC 7616 §3.9.1 (SHA-256
    /// and MD5) and RFC 2617 §3.5 (MD5).
    #[test]
    fn rfc_example_exact_responses() {
        let c = creds("Mufasa", "Circle of Life");
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, want) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let www = format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            );
            let v = with_cnonce(&www, &c, "/dir/index.html", cnonce);
            assert_eq!(param(&v, "response"), Some(want), "{alg}: {v}");
            assert_eq!(param(&v, "nc"), Some("00000001"), "{v}");
        }
        let v = with_cnonce(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
            &creds("Mufasa", "Circle Of Life"),
            "/dir/index.html",
            "0a4f113b",
        );
        assert_eq!(
            param(&v, "response"),
            Some("6629fae49393a05397450978507c4ef1"),
            "{v}"
        );
    }

    /// RFC 2617 §3.5 (MD5, qop=auth): checked against the independent computation.
    #[test]
    fn rfc2617_example_md5_qop() {
        let c = creds("Mufasa", "Circle Of Life");
        let mut a = Authenticator::from_challenges([
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        ])
        .unwrap();
        let v = a.authorization(&c, "GET", "/dir/index.html").unwrap();
        let cnonce = param(&v, "cnonce").unwrap();
        let want = expected(
            "MD5",
            &c,
            "testrealm@host.com",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            cnonce,
        );
        assert_eq!(param(&v, "response"), Some(want.as_str()));
    }

    /// RFC 2069 style (no qop), as gst-rtsp-server and many older cameras send it: no cnonce,
    /// no nc, response = H(HA1:nonce:HA2).
    #[test]
    fn digest_without_qop() {
        let c = creds("u", "p");
        let mut a = Authenticator::from_challenges([
            r#"Digest realm="GStreamer RTSP Server", nonce="abc""#,
        ])
        .unwrap();
        let v = a.authorization(&c, "DESCRIBE", "rtsp://h/x").unwrap();
        assert!(param(&v, "cnonce").is_none(), "{v}");
        assert!(param(&v, "qop").is_none(), "{v}");
        use md5::{Digest as _, Md5};
        let hex = |s: String| -> String {
            Md5::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let want = hex(format!(
            "{}:abc:{}",
            hex("u:GStreamer RTSP Server:p".into()),
            hex("DESCRIBE:rtsp://h/x".into())
        ));
        assert_eq!(param(&v, "response"), Some(want.as_str()));
    }

    #[test]
    fn digest_is_preferred_over_basic() {
        let a = Authenticator::from_challenges([
            r#"Basic realm="cam""#,
            r#"Digest realm="cam", nonce="n", qop="auth""#,
        ])
        .unwrap();
        assert!(a.is_digest());
        let mut b = Authenticator::from_challenges([r#"Basic realm="cam""#]).unwrap();
        assert!(!b.is_digest());
        assert_eq!(
            b.authorization(&creds("Aladdin", "open sesame"), "GET", "/")
                .unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(Authenticator::from_challenges([r#"Bearer realm="x""#]).is_err());
        assert!(Authenticator::from_challenges(std::iter::empty()).is_err());
    }

    #[test]
    fn second_401_is_retried_only_when_stale() {
        let fresh = r#"Digest realm="cam", nonce="n2", qop="auth""#;
        let stale = r#"Digest realm="cam", nonce="n2", qop="auth", stale=true"#;
        assert!(matches!(
            on_unauthorized(false, [fresh]),
            Unauthorized::Retry(_)
        ));
        assert!(matches!(
            on_unauthorized(true, [fresh]),
            Unauthorized::Refused(_)
        ));
        let Unauthorized::Retry(mut a) = on_unauthorized(true, [stale]) else {
            panic!("a stale nonce must be retried")
        };
        // The new nonce starts counting from 1 again.
        let v = a.authorization(&creds("u", "p"), "GET", "/").unwrap();
        assert_eq!(param(&v, "nonce"), Some("n2"));
        assert_eq!(param(&v, "nc"), Some("00000001"));
        assert!(matches!(
            on_unauthorized(false, ["Negotiate"]),
            Unauthorized::Refused(_)
        ));
    }
}
