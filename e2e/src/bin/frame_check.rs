//! Frame-level coverage of one camera in a local store, for the shell-driven tests
//! (e2e/sites/relay_test.sh): every frame the camera simulator produced (its `--frame-log`) in
//! `[from-ms, to-ms)` must be in a stored segment, read from the time burnt into each frame
//! (`vigil_e2e::frame_check::check_camera`, the check the failover tests use), and every
//! segment key must be covered by its frames to within one frame. No window is excused as
//! reported lost. Prints the result; exit status 1 when anything is missing or wrong.
//!
//!     frame-check --store DIR --namespace NS --camera NAME --frame-log DIR \
//!         --width W --height H --fps N --from-ms MS --to-ms MS

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
        let out = check_camera(&src, &camera, num("--from-ms")?, num("--to-ms")?, &[]);
        let mut failures = out.failures;
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
