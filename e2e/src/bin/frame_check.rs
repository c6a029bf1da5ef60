//! Frame-level coverage of one camera in a local store, for the shell-driven tests
//! (e2e/sites/relay_test.sh): every frame the camera simulator produced (its `--frame-log`) in
//! `[from-ms, to-ms)` must be in a stored segment, read from the time burnt into each frame
//! (`vigil_e2e::frame_check::check_camera`, the check the failover tests use), and every
//! segment key must be covered by its frames to within one frame (or `--max-key-error-ms`).
//! Frames missing inside an `--excuse START_MS:END_MS` window (repeatable; e.g. the seams of a
//! backfilled hole, where the live sessions' clocks before and after it differ) are allowed and
//! printed as "reported lost". Prints the result; exit status 1 when anything is missing or wrong.
//!
//!     frame-check --store DIR --namespace NS --camera NAME --frame-log DIR \
//!         --width W --height H --fps N --from-ms MS --to-ms MS \
//!         [--excuse START_MS:END_MS]... [--max-key-error-ms MS]

use std::path::PathBuf;
use std::process::ExitCode;

use vigil_e2e::frame_check::{FrameSource, check_camera};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let need = |name: &str| -> Result<String, String> {
        get(name).ok_or_else(|| format!("{name} is required"))
    };
    let num = |name: &str| -> Result<i64, String> {
        need(name)?
            .parse::<i64>()
            .map_err(|e| format!("{name}: {e}"))
    };
    let run = || -> Result<Vec<String>, String> {
        let store = PathBuf::from(need("--store")?);
        let frame_log = PathBuf::from(need("--frame-log")?);
        let namespace = need("--namespace")?;
        let camera = need("--camera")?;
        let fps = num("--fps")?.max(1);
        let src = FrameSource {
            store: &store,
            namespace: &namespace,
            frame_log: &frame_log,
            width: u32::try_from(num("--width")?).map_err(|e| e.to_string())?,
            height: u32::try_from(num("--height")?).map_err(|e| e.to_string())?,
            frame_ms: 1000 / fps,
        };
        let mut excused = vec![];
        for (i, a) in args.iter().enumerate() {
            if a != "--excuse" {
                continue;
            }
            let w = args.get(i + 1).ok_or("--excuse needs START_MS:END_MS")?;
            let (s, e) = w
                .split_once(':')
                .and_then(|(s, e)| Some((s.parse::<i64>().ok()?, e.parse::<i64>().ok()?)))
                .filter(|(s, e)| e > s)
                .ok_or_else(|| format!("--excuse {w}: not START_MS:END_MS"))?;
            excused.push((camera.clone(), (s, e, (e - s) as f64 / 1000.0)));
        }
        let max_key_error = get("--max-key-error-ms")
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|e| format!("--max-key-error-ms: {e}"))
            })
            .transpose()?;
        let out = check_camera(&src, &camera, num("--from-ms")?, num("--to-ms")?, &excused);
        // check_camera holds keys to one frame (+50 ms); a wider bound given here replaces it.
        let key_error = |f: &str| -> Option<i64> {
            let rest = f.split("a key misstates its frames by ").nth(1)?;
            rest.split(' ').next()?.parse::<i64>().ok()
        };
        let mut failures: Vec<String> = out
            .failures
            .into_iter()
            .filter(|f| match (key_error(f), max_key_error) {
                (Some(err), Some(max)) => err.abs() > max,
                _ => true,
            })
            .collect();
        if out.expected == 0 {
            failures.push(format!("{camera}: no frames expected in the window"));
        }
        Ok(failures)
    };
    match run() {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            for f in failures {
                eprintln!("frame-check: {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("frame-check: {e}");
            ExitCode::from(2)
        }
    }
}
