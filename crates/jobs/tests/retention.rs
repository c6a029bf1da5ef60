//! `vigil-jobs retention` (file mode) against moto: objects of two cameras, some older
//! than the retention, some straddling the cut-off, gap records, and foreign objects. Only the
//! expired segments and gap records go; nothing of the camera outside the window, no foreign
//! key, and `--dry-run` deletes nothing.

use std::process::Command;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use vigil_store::layout::{CameraId, GapKey, Origin, SegmentKey};
use vigil_testkit::*;

const DAY: i64 = 86_400_000;

fn s3(port: u16) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

#[test]
fn retention_deletes_only_expired_objects_of_each_camera() {
    let moto = Moto::start();
    let store = s3(moto.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = 1_800_000_000_000i64;
    let cut = now - 7 * DAY;
    let a = CameraId::new("site", "a").unwrap();
    let b = CameraId::new("site", "b").unwrap();
    let seg =
        |c: &CameraId, s: i64, e: i64, o| SegmentKey::new(c.clone(), s, e, o).unwrap().to_key("p");
    let expired = [
        seg(&a, cut - 3 * DAY, cut - 3 * DAY + 10_000, Origin::Live),
        seg(&a, cut - 10_000, cut, Origin::Backfill),
        seg(&b, cut - DAY, cut - DAY + 10_000, Origin::Live),
        GapKey::new(a.clone(), cut - 2 * DAY, cut - DAY)
            .unwrap()
            .to_key("p"),
    ];
    // Many expired objects, to go through more than one delete batch.
    let bulk: Vec<String> = (0..1200)
        .map(|i| {
            seg(
                &a,
                cut - 5 * DAY + i * 10_000,
                cut - 5 * DAY + (i + 1) * 10_000,
                Origin::Live,
            )
        })
        .collect();
    let kept = vec![
        seg(&a, cut - 5_000, cut + 5_000, Origin::Live), // straddles the cut-off
        seg(&a, now - DAY, now - DAY + 10_000, Origin::Live),
        seg(&b, now - 1000, now, Origin::Live),
        GapKey::new(b.clone(), cut - 1, now).unwrap().to_key("p"),
        "p/site/a/notes.txt".to_string(), // not ours: never deleted
        "p/site/a/2020/01/01/00/garbage.mp4".to_string(), // unparseable: never deleted
        "other/site/a/2020/01/01/00/1577836800000-1577836810000-live.mp4".to_string(),
    ];
    rt.block_on(async {
        for k in expired.iter().chain(&bulk).chain(&kept) {
            store
                .put(&Path::from(k.as_str()), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
    });
    let list = || -> Vec<String> {
        rt.block_on(async {
            let mut v: Vec<String> = store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            v.sort();
            v
        })
    };
    let before = list();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &format!(
            "storage:\n  s3: {{bucket: {BUCKET}, endpoint: \"http://127.0.0.1:{}\", pathStyle: true}}\n  prefix: p\n",
            moto.port
        ),
    );
    let run = |extra: &[&str]| -> String {
        let out = Command::new(bin("vigil-jobs"))
            .args(["retention", "--config"])
            .arg(&config)
            .args(["--days", "7", "--now-ms", &now.to_string()])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "retention failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dry = run(&["--dry-run"]);
    assert!(
        dry.contains(&format!("deleted={}", expired.len() + bulk.len())),
        "{dry}"
    );
    assert_eq!(list(), before, "dry run deleted something");
    let out = run(&[]);
    assert!(
        out.contains(&format!("deleted={}", expired.len() + bulk.len())),
        "{out}"
    );
    assert!(out.contains("errors=0"), "{out}");
    let mut want: Vec<String> = kept.clone();
    want.sort();
    assert_eq!(list(), want);
    // A second run finds nothing more to do.
    assert!(run(&[]).contains("deleted=0"));
    println!("1 passed, 0 failed");
}
