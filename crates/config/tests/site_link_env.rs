//! Kubernetes mode's site link from the environment the operator sets on recorder pods
//! (`VIGIL_SITE_*`, issue #15). Its own test binary: it sets process environment variables.

use vigil_config::{
    SITE_CA_FILE_ENV, SITE_DIRECT_PATHS_ENV, SITE_RENDEZVOUS_ENV, SITE_TOKEN_FILE_ENV,
    site_link_from_env,
};

#[test]
fn the_site_link_comes_from_the_operator_env() {
    let dir = std::env::temp_dir().join(format!("vigil-site-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["vigil-rendezvous".into()]).unwrap();
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "rec-secret\n").unwrap();
    // SAFETY: this test binary has one test; nothing else reads the environment concurrently.
    unsafe {
        std::env::remove_var(SITE_RENDEZVOUS_ENV);
    }
    assert!(
        site_link_from_env("shop").unwrap().is_none(),
        "no rendezvous: no link"
    );
    unsafe {
        std::env::set_var(SITE_RENDEZVOUS_ENV, "vigil-rendezvous.vigil:7443");
        std::env::set_var(SITE_CA_FILE_ENV, &ca);
        std::env::set_var(SITE_TOKEN_FILE_ENV, dir.join("missing"));
    }
    let e = site_link_from_env("shop").unwrap_err().to_string();
    assert!(e.contains("site link"), "{e}");
    unsafe {
        std::env::set_var(SITE_TOKEN_FILE_ENV, &token);
    }
    let link = site_link_from_env("shop").unwrap().unwrap();
    assert_eq!(link.rendezvous, "vigil-rendezvous.vigil:7443");
    assert_eq!(link.namespace, "shop");
    assert!(
        link.token
            .matches(&vigil_site::proto::Token::new("rec-secret"))
    );
    assert!(link.lan.is_some(), "LAN and direct paths on by default");
    assert!(!format!("{link:?}").contains("rec-secret"));
    unsafe {
        std::env::set_var(SITE_DIRECT_PATHS_ENV, "false");
    }
    assert!(site_link_from_env("shop").unwrap().unwrap().lan.is_none());
    std::fs::remove_dir_all(&dir).ok();
}
