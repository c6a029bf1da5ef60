//! Authentication and authorisation of `serve` against the real local API server: a
//! ServiceAccount bound to a Role granting `get` on `cameras/recordings` in one namespace may
//! read that namespace's camera and nothing else; a ServiceAccount without the Role, a bad
//! token and no token are refused. Tokens come from the ServiceAccounts' token Secrets
//! (Kubernetes 1.20 creates them).
//!
//! Needs `KUBECONFIG` (e.g. `source /var/lib/vigil-cluster/env`); skipped without it.

use std::process::{Command, Stdio};
use std::time::Duration;

use vigil_testkit::*;

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new("kubectl");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kubectl");
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sa_token(ns: &str, sa: &str) -> String {
    let mut secret = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            secret = Command::new("kubectl")
                .args([
                    "-n",
                    ns,
                    "get",
                    "sa",
                    sa,
                    "-o",
                    "jsonpath={.secrets[0].name}",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            !secret.is_empty()
        }),
        "no token Secret for {ns}/{sa}"
    );
    let b64 = kubectl(
        &[
            "-n",
            ns,
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ],
        None,
    );
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b64.trim().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "ns", &self.0, "--wait=false"])
            .output();
    }
}

fn status(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let code = r
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = r
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

#[test]
fn rbac_decides_who_may_watch_which_camera() {
    if !cluster_available() {
        println!("0 passed, 0 failed");
        return;
    }
    let id = format!("{:x}", now_ms() & 0xffffff);
    let (ns_a, ns_b) = (format!("vigil-pb-a-{id}"), format!("vigil-pb-b-{id}"));
    let _guard = (Ns(ns_a.clone()), Ns(ns_b.clone()));
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {ns_a}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns_b}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: viewer, namespace: {ns_a}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: nobody, namespace: {ns_a}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: recordings-viewer, namespace: {ns_a}}}
rules:
  - apiGroups: [vigil.dev]
    resources: [cameras/recordings]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: viewer, namespace: {ns_a}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: recordings-viewer}}
subjects: [{{kind: ServiceAccount, name: viewer, namespace: {ns_a}}}]
"#
        )),
    );
    let viewer = sa_token(&ns_a, "viewer");
    let nobody = sa_token(&ns_a, "nobody");

    // A store with one camera in each namespace (listing only needs the keys).
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let t = now_ms() - 60_000;
    for ns in [&ns_a, &ns_b] {
        let k = vigil_store::layout::SegmentKey::new(
            vigil_store::layout::CameraId::new(ns, "door").unwrap(),
            t,
            t + 10_000,
            vigil_store::layout::Origin::Live,
        )
        .unwrap();
        let p = store.join(k.relative());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not really mp4").unwrap();
    }
    let config = write_config(
        tmp.path(),
        &format!("storage:\n  local: {{path: {}}}\n", store.display()),
    );
    let port = free_port();
    let log = tmp.path().join("serve.log");
    let child = Command::new(bin("vigil-access"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _serve = Proc {
        child,
        name: "serve",
    };
    assert!(
        wait_for(Duration::from_secs(30), || http(
            "GET", port, "/healthz", b""
        )
        .is_some()),
        "serve did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let rec = |ns: &str| format!("/api/v1/cameras/{ns}/door/recordings?start={t}");
    let mut passed = 0;
    let mut check = |what: &str, got: (u16, String), want: u16| {
        assert_eq!(got.0, want, "{what}: {}", got.1);
        passed += 1;
    };
    check("no token", status(port, &rec(&ns_a), None), 401);
    check(
        "bad token",
        status(port, &rec(&ns_a), Some("not-a-token")),
        401,
    );
    check(
        "viewer, own ns",
        status(port, &rec(&ns_a), Some(&viewer)),
        200,
    );
    check(
        "viewer, other ns",
        status(port, &rec(&ns_b), Some(&viewer)),
        403,
    );
    check("nobody", status(port, &rec(&ns_a), Some(&nobody)), 403);
    // The event query is authorized like the recordings.
    let events = |ns: &str| format!("/api/v1/cameras/{ns}/door/events?start={t}&type=motion");
    check("events, no token", status(port, &events(&ns_a), None), 401);
    check(
        "events, viewer, own ns",
        status(port, &events(&ns_a), Some(&viewer)),
        200,
    );
    check(
        "events, viewer, other ns",
        status(port, &events(&ns_b), Some(&viewer)),
        403,
    );
    let (code, body) = status(port, "/api/v1/cameras", Some(&viewer));
    check("camera list", (code, body.clone()), 200);
    assert!(body.contains(&ns_a) && !body.contains(&ns_b), "{body}");
    let (code, body) = status(port, "/api/v1/cameras", Some(&nobody));
    check("camera list, nobody", (code, body.clone()), 200);
    assert!(!body.contains("door"), "{body}");
    println!("{passed} passed, 0 failed");
}
