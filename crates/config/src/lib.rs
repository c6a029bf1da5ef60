//! File-mode configuration (`cameras.yaml`) and the runtime settings it resolves to, shared by the
//! recorder (`record --config`), the jobs (`backfill`, `retention` in file mode) and the access point
//! (`serve --config`).
//!
//! File mode (`vigil-recorder record --config cameras.yaml`):
//!
//! ```yaml
//! # Where segments go: exactly one of `local` or `s3`.
//! storage:
//!   local:
//!     path: /var/lib/vigil/store        # the store root; keys are files below it
//!   # s3:
//!   #   bucket: vigil
//!   #   endpoint: http://127.0.0.1:9000 # omit for AWS
//!   #   region: us-east-1               # default us-east-1
//!   #   pathStyle: true                 # endpoint/bucket/key addressing (MinIO, Ceph, moto)
//!   #   allowHttp: true                 # default: true iff the endpoint is http://
//!   # Keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
//!   prefix: vigil                       # key prefix, default empty
//! segmentSeconds: 10                    # cut on the first keyframe after this; default 10
//! buffer:
//!   dir: /var/lib/vigil/buffer          # local spool for segments not yet in the store
//!   maxBytes: 2147483648                # oldest unsent footage is dropped beyond this
//! cameras:
//!   - namespace: default                # DNS-1123 label, default "default"
//!     name: door                        # DNS-1123 subdomain
//!     url: rtsp://10.0.0.5:554/Streaming/101
//!     username: viewer                  # optional
//!     passwordFile: /run/secrets/door   # or `password:` inline (file mode only)
//!     transport: tcp                    # tcp (default, interleaved) or udp
//!     audio: true                       # record AAC audio when the camera sends it
//! cameraNetworks:                      # where cameras may be; default: any unicast address
//!   allow: [192.168.10.0/24]            # but loopback and link-local (169.254/16, fe80::/10),
//!   deny: [192.168.10.1/32]             # which only an entry inside them opens (127.0.0.1/32)
//! ```
//!
//! Command-line flags (`--segment-seconds`, `--buffer-dir`, `--buffer-max-bytes`, ...) override
//! the file. Credentials in the URL (`rtsp://user:pass@host/...`) are accepted but moved out
//! of the URL before use.

pub mod cli;
mod error;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use vigil_api::netpolicy::{AddressPolicy, CLUSTER_NETWORKS_ENV, ClusterNetworks};
use vigil_api::redact::{Credentials, redact_url, split_credentials};
use vigil_store::StorageConfig;
use vigil_store::layout::CameraId;

pub use error::{Error, Result};

pub const DEFAULT_SEGMENT_SECONDS: u32 = 10;
pub const DEFAULT_BUFFER_MAX_BYTES: u64 = 2 << 30;

/// The YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    pub storage: FileStorage,
    #[serde(default)]
    pub segment_seconds: Option<u32>,
    #[serde(default)]
    pub buffer: Option<FileBuffer>,
    #[serde(default)]
    pub cameras: Vec<FileCamera>,
    /// Where cameras may be, as a RecorderPool's `spec.cameraNetworks` (loopback and
    /// link-local only through an `allow` entry inside them).
    #[serde(default)]
    pub camera_networks: vigil_api::CameraNetworks,
    /// How cameras at remote sites (`site:` on a camera) are reached: the rendezvous/relay
    /// service (issue #15, `docs/sites.md`).
    #[serde(default)]
    pub site_link: Option<FileSiteLink>,
}

/// The rendezvous/relay service a recorder opens site streams through.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSiteLink {
    /// `host:port` of the rendezvous service.
    pub rendezvous: String,
    /// The name on its certificate (default `vigil-rendezvous`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CA that signed its certificate.
    pub ca_file: PathBuf,
    /// File holding this recorder's token for `namespace`.
    pub token_file: PathBuf,
    /// The namespace whose sites this recorder may reach (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Offer the LAN and direct paths (default on): the site's gateway reaches this recorder on
    /// the site's own network, or through a UDP hole punched in both NATs (QUIC), instead of
    /// through the relay when it can (issue #15, `docs/sites.md`).
    #[serde(default = "default_true")]
    pub direct_paths: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileStorage {
    #[serde(default)]
    pub local: Option<FileLocal>,
    #[serde(default)]
    pub s3: Option<FileS3>,
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileLocal {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileS3 {
    pub bucket: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub allow_http: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileBuffer {
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileCamera {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default = "default_true")]
    pub audio: bool,
    /// `Event` mode (default: continuous recording).
    #[serde(default)]
    pub events: Option<FileEvents>,
    /// The remote site whose gateway reaches this camera (its URL keeps the LAN address);
    /// needs `siteLink`.
    #[serde(default)]
    pub site: Option<String>,
}

/// A file-mode camera recorded only around ONVIF events.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEvents {
    /// ONVIF device service URL (its event service is subscribed to).
    pub onvif_url: String,
    #[serde(default)]
    pub pre_seconds: Option<u32>,
    #[serde(default)]
    pub post_seconds: Option<u32>,
}

/// `Event` recording: only `[event − pre, event end + post]` is recorded, events from the
/// camera's ONVIF event service (PullPoint). Credentials are the camera's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventMode {
    pub onvif_url: Url,
    pub pre_seconds: u32,
    pub post_seconds: u32,
}

pub const DEFAULT_EVENT_PRE_SECONDS: u32 = 10;
pub const DEFAULT_EVENT_POST_SECONDS: u32 = 10;
pub const MAX_EVENT_PRE_SECONDS: u32 = 300;
pub const MAX_EVENT_POST_SECONDS: u32 = 3600;

impl EventMode {
    pub fn new(
        id: &CameraId,
        onvif_url: &str,
        pre: Option<u32>,
        post: Option<u32>,
    ) -> Result<Self> {
        let url = Url::parse(onvif_url)
            .map_err(|e| Error::Config(format!("camera {id}: ONVIF URL is not valid ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "camera {id}: ONVIF URL {} must be http:// or https:// with a host",
                redact_url(&url)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config(format!(
                "camera {id}: no credentials in the ONVIF URL (the camera's are used)"
            )));
        }
        let pre_seconds = pre.unwrap_or(DEFAULT_EVENT_PRE_SECONDS);
        let post_seconds = post.unwrap_or(DEFAULT_EVENT_POST_SECONDS);
        if pre_seconds > MAX_EVENT_PRE_SECONDS || post_seconds > MAX_EVENT_POST_SECONDS {
            return Err(Error::Config(format!(
                "camera {id}: preSeconds must be at most {MAX_EVENT_PRE_SECONDS} and postSeconds at most {MAX_EVENT_POST_SECONDS}"
            )));
        }
        Ok(EventMode {
            onvif_url: url,
            pre_seconds,
            post_seconds,
        })
    }
}

// Hand-written so that a `{:?}` of the config can never print a password.
impl std::fmt::Debug for FileCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCamera")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field(
                "url",
                &Url::parse(&self.url)
                    .map(|u| redact_url(&u))
                    .unwrap_or_else(|_| "<invalid>".into()),
            )
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

fn default_namespace() -> String {
    "default".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// Where a camera's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    None,
    Static(Credentials),
    /// A Secret in the camera's namespace, read at every connection attempt so that a rotated
    /// password is picked up without a restart.
    Secret {
        name: String,
        username_key: String,
        password_key: String,
    },
}

/// One camera to record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CameraConfig {
    pub id: CameraId,
    /// Without credentials.
    pub url: Url,
    pub credentials: CredentialSource,
    pub transport: Transport,
    pub audio: bool,
    /// `Event` mode; `None` records continuously.
    pub events: Option<EventMode>,
    /// Recorded only inside manual recording windows (Kubernetes mode, a camera in mode `Off`
    /// with `spec.recording.manual`): frames pass a gate without pre- or post-time.
    pub manual_only: bool,
    /// The remote site whose tunnel reaches the camera; `None`: dialled directly.
    pub site: Option<String>,
}

impl CameraConfig {
    /// Validates a URL and moves any user info out of it.
    pub fn new(
        id: CameraId,
        url: &str,
        credentials: CredentialSource,
        transport: Transport,
        audio: bool,
    ) -> Result<Self> {
        let parsed = Url::parse(url)
            .map_err(|e| Error::Config(format!("camera {id}: URL is not valid ({e})")))?;
        if !matches!(parsed.scheme(), "rtsp" | "rtsps") || parsed.host_str().is_none() {
            return Err(Error::Config(format!(
                "camera {id}: URL {} must be rtsp:// or rtsps:// with a host",
                redact_url(&parsed)
            )));
        }
        let (clean, inline) = split_credentials(parsed);
        let credentials = match (credentials, inline) {
            (CredentialSource::None, Some((username, password))) => {
                CredentialSource::Static(Credentials { username, password })
            }
            (c, _) => c,
        };
        Ok(CameraConfig {
            id,
            url: clean,
            credentials,
            transport,
            audio,
            events: None,
            manual_only: false,
            site: None,
        })
    }
}

/// Default of [`Settings::prebuffer_memory_bytes`]: 16 MiB, ~32 s of a 4 Mbit/s camera.
pub const DEFAULT_PREBUFFER_MEMORY_BYTES: usize = 16 << 20;

/// Everything `record` needs apart from the camera list.
#[derive(Clone, Debug)]
pub struct Settings {
    pub storage: StorageConfig,
    pub prefix: String,
    pub segment_seconds: u32,
    /// Fragment length: what a crash can lose at most, and the write/fsync interval.
    pub fragment_ms: u32,
    pub buffer_dir: PathBuf,
    pub buffer_max_bytes: u64,
    pub upload_concurrency: usize,
    /// SIGTERM: how long to keep uploading before exiting.
    pub shutdown_timeout: Duration,
    /// No frame for this long means the stream is lost.
    pub stall_timeout: Duration,
    /// Read each camera's socket at most this often (0: on every packet). See `camera.rs`.
    pub read_batch: Duration,
    /// `Event` mode: complete GOPs of the pre-event buffer kept in memory per camera; older
    /// ones spill to the buffer directory (`usize::MAX`: never spill).
    pub prebuffer_memory_bytes: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Who we are in gap records and status (pod name or host name).
    pub recorder_name: String,
    /// Where cameras may be: checked on the resolved address before every connection.
    pub address_policy: std::sync::Arc<AddressPolicy>,
    /// How cameras at remote sites are reached; `None`: such cameras cannot be recorded.
    pub site_link: Option<std::sync::Arc<vigil_site::SiteLink>>,
}

/// Overrides from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub segment_seconds: Option<u32>,
    pub buffer_dir: Option<PathBuf>,
    pub buffer_max_bytes: Option<u64>,
}

pub const DEFAULT_BUFFER_DIR: &str = "/var/lib/vigil/buffer";

/// Kubernetes mode's site link (issue #15, `docs/sites.md`): the operator sets these on recorder
/// pods when the chart runs the rendezvous service. `VIGIL_SITE_RENDEZVOUS` is its `host:port`.
pub const SITE_RENDEZVOUS_ENV: &str = "VIGIL_SITE_RENDEZVOUS";
/// The name on the rendezvous service's certificate (default `vigil-rendezvous`).
pub const SITE_SERVER_NAME_ENV: &str = "VIGIL_SITE_SERVER_NAME";
/// PEM file of the CA that signed the rendezvous service's certificate.
pub const SITE_CA_FILE_ENV: &str = "VIGIL_SITE_CA_FILE";
/// File holding the namespace's recorder token.
pub const SITE_TOKEN_FILE_ENV: &str = "VIGIL_SITE_TOKEN_FILE";
/// `false`: relay only (no LAN or direct path offered).
pub const SITE_DIRECT_PATHS_ENV: &str = "VIGIL_SITE_DIRECT_PATHS";

/// The site link of a recorder in Kubernetes mode, from the environment (see
/// [`SITE_RENDEZVOUS_ENV`]), for the sites of `namespace`. `Ok(None)` when no rendezvous
/// service is configured.
pub fn site_link_from_env(namespace: &str) -> Result<Option<std::sync::Arc<vigil_site::SiteLink>>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let Some(rendezvous) = var(SITE_RENDEZVOUS_ENV) else {
        return Ok(None);
    };
    let need = |k: &str| {
        var(k).ok_or_else(|| Error::Config(format!("{SITE_RENDEZVOUS_ENV} is set but {k} is not")))
    };
    let ca = PathBuf::from(need(SITE_CA_FILE_ENV)?);
    let token = PathBuf::from(need(SITE_TOKEN_FILE_ENV)?);
    let server_name = var(SITE_SERVER_NAME_ENV).unwrap_or_else(|| "vigil-rendezvous".into());
    let link =
        vigil_site::SiteLink::from_files(rendezvous.trim(), &server_name, &ca, &token, namespace)
            .map_err(|e| Error::Config(format!("site link: {e}")))?;
    let direct = var(SITE_DIRECT_PATHS_ENV).is_none_or(|v| v.trim() != "false");
    Ok(Some(std::sync::Arc::new(if direct {
        link
    } else {
        link.relay_only()
    })))
}

pub fn validate_segment_seconds(s: u32) -> Result<u32> {
    if !(2..=600).contains(&s) {
        return Err(Error::Config(format!(
            "segment length {s} s is outside 2..=600"
        )));
    }
    Ok(s)
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(serde_yaml::from_str(text)?)
    }

    /// Storage and camera list from the file; the rest of `Settings` comes from flags.
    pub fn resolve(&self, o: &Overrides) -> Result<Resolved> {
        let storage = match (&self.storage.local, &self.storage.s3) {
            (Some(l), None) => StorageConfig::Local {
                path: l.path.clone(),
            },
            (None, Some(s)) => {
                if s.bucket.is_empty() {
                    return Err(Error::Config("storage.s3.bucket is empty".into()));
                }
                let allow_http = s.allow_http.unwrap_or_else(|| {
                    s.endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://"))
                });
                StorageConfig::S3 {
                    bucket: s.bucket.clone(),
                    endpoint: s.endpoint.clone(),
                    region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    path_style: s.path_style,
                    allow_http,
                    credentials: None,
                }
            }
            _ => {
                return Err(Error::Config(
                    "storage: set exactly one of `local` or `s3`".into(),
                ));
            }
        };
        let segment_seconds = validate_segment_seconds(
            o.segment_seconds
                .or(self.segment_seconds)
                .unwrap_or(DEFAULT_SEGMENT_SECONDS),
        )?;
        let buffer_dir = o
            .buffer_dir
            .clone()
            .or_else(|| self.buffer.as_ref().and_then(|b| b.dir.clone()))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BUFFER_DIR));
        let buffer_max = o
            .buffer_max_bytes
            .or_else(|| self.buffer.as_ref().and_then(|b| b.max_bytes))
            .unwrap_or(DEFAULT_BUFFER_MAX_BYTES);
        let mut cameras = Vec::with_capacity(self.cameras.len());
        for c in &self.cameras {
            let id = CameraId::new(&c.namespace, &c.name)?;
            if cameras.iter().any(|x: &CameraConfig| x.id == id) {
                return Err(Error::Config(format!("camera {id} is listed twice")));
            }
            let password = match (&c.password, &c.password_file) {
                (Some(_), Some(_)) => {
                    return Err(Error::Config(format!(
                        "camera {id}: set `password` or `passwordFile`, not both"
                    )));
                }
                (Some(p), None) => Some(p.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| Error::io("reading password file", f, e))?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                (None, None) => None,
            };
            let creds = match (&c.username, password) {
                (None, None) => CredentialSource::None,
                (u, p) => CredentialSource::Static(Credentials {
                    username: u.clone().unwrap_or_default(),
                    password: p.unwrap_or_default(),
                }),
            };
            let events = c
                .events
                .as_ref()
                .map(|e| EventMode::new(&id, &e.onvif_url, e.pre_seconds, e.post_seconds))
                .transpose()?;
            let mut cam = CameraConfig::new(id, &c.url, creds, c.transport, c.audio)?;
            cam.events = events;
            if let Some(site) = &c.site {
                if self.site_link.is_none() {
                    return Err(Error::Config(format!(
                        "camera {}: site {site} needs siteLink (the rendezvous service)",
                        cam.id
                    )));
                }
                // Through a site tunnel only interleaved RTSP (TCP) can travel.
                cam.transport = Transport::Tcp;
                cam.site = Some(site.clone());
            }
            cameras.push(cam);
        }
        let cluster = ClusterNetworks::from_env()
            .map_err(|e| Error::Config(format!("{CLUSTER_NETWORKS_ENV}: {e}")))?;
        let address_policy = AddressPolicy::new(&self.camera_networks, &cluster)
            .map_err(|e| Error::Config(format!("cameraNetworks: {e}")))?;
        let site_link = self
            .site_link
            .as_ref()
            .map(|l| {
                vigil_site::SiteLink::from_files(
                    &l.rendezvous,
                    l.server_name.as_deref().unwrap_or("vigil-rendezvous"),
                    &l.ca_file,
                    &l.token_file,
                    &l.namespace,
                )
                .map(|link| {
                    if l.direct_paths {
                        link
                    } else {
                        link.relay_only()
                    }
                })
                .map(std::sync::Arc::new)
                .map_err(|e| Error::Config(format!("siteLink: {e}")))
            })
            .transpose()?;
        Ok(Resolved {
            site_link,
            address_policy,
            storage,
            prefix: self.storage.prefix.clone().unwrap_or_default(),
            segment_seconds,
            buffer_dir,
            buffer_max_bytes: buffer_max,
            cameras,
        })
    }
}

/// What the file says, after flags were applied.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub storage: StorageConfig,
    pub prefix: String,
    pub segment_seconds: u32,
    pub buffer_dir: PathBuf,
    pub buffer_max_bytes: u64,
    pub cameras: Vec<CameraConfig>,
    /// Where cameras may be (`cameraNetworks` and the cluster's networks from the environment).
    pub address_policy: AddressPolicy,
    /// How cameras at remote sites are reached (`siteLink`).
    pub site_link: Option<std::sync::Arc<vigil_site::SiteLink>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
storage:
  s3:
    bucket: vigil
    endpoint: http://127.0.0.1:9000
    pathStyle: true
  prefix: footage
segmentSeconds: 6
buffer:
  dir: /tmp/buf
  maxBytes: 1000000
cameras:
  - name: door
    url: rtsp://admin:s3cret@10.0.0.5/live
  - namespace: lobby
    name: cam.2
    url: rtsps://cam2:322/stream
    username: u
    password: p
    transport: udp
    audio: false
"#;

    #[test]
    fn parses_example() {
        let f = FileConfig::parse(EXAMPLE).unwrap();
        let r = f.resolve(&Overrides::default()).unwrap();
        let (storage, prefix, seg, dir, max, cams) = (
            r.storage,
            r.prefix,
            r.segment_seconds,
            r.buffer_dir,
            r.buffer_max_bytes,
            r.cameras,
        );
        assert!(
            matches!(storage, StorageConfig::S3 { allow_http: true, path_style: true, ref region, .. } if region == "us-east-1")
        );
        assert_eq!(prefix, "footage");
        assert_eq!(seg, 6);
        assert_eq!(dir, PathBuf::from("/tmp/buf"));
        assert_eq!(max, 1_000_000);
        assert_eq!(cams[0].id.to_string(), "default/door");
        assert_eq!(cams[0].url.as_str(), "rtsp://10.0.0.5/live");
        assert_eq!(
            cams[0].credentials,
            CredentialSource::Static(Credentials {
                username: "admin".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(cams[1].transport, Transport::Udp);
        assert!(!cams[1].audio);
        assert!(!format!("{cams:?}").contains("s3cret"));
        assert!(!format!("{f:?}").contains("s3cret"));
    }

    #[test]
    fn flags_override_file() {
        let f = FileConfig::parse(EXAMPLE).unwrap();
        let o = Overrides {
            segment_seconds: Some(20),
            buffer_dir: Some("/x".into()),
            buffer_max_bytes: Some(5),
        };
        let r = f.resolve(&o).unwrap();
        let (seg, dir, max) = (r.segment_seconds, r.buffer_dir, r.buffer_max_bytes);
        assert_eq!((seg, dir, max), (20, PathBuf::from("/x"), 5));
    }

    #[test]
    fn rejects_mistakes() {
        for bad in [
            "storage: {}\ncameras: []",
            "storage: {local: {path: /a}, s3: {bucket: b}}",
            "storage: {local: {path: /a}}\ncameras: [{name: a, url: 'http://x/'}]",
            "storage: {local: {path: /a}}\ncameras: [{name: A, url: 'rtsp://x/'}]",
            "storage: {local: {path: /a}}\nsegmentSeconds: 1",
            "storage: {local: {path: /a}}\ncameras: [{name: a, url: 'rtsp://x/'}, {name: a, url: 'rtsp://y/'}]",
            "storage: {local: {path: /a}}\nsegmentSecond: 10",
        ] {
            let r = FileConfig::parse(bad).and_then(|f| f.resolve(&Overrides::default()));
            assert!(r.is_err(), "{bad}");
        }
    }
}
