//! Prints Vigil's CRDs as YAML (`crdgen`), writes them into a directory (`crdgen --write DIR`),
//! or checks that a directory holds exactly what the code generates (`crdgen --check DIR`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => print_all(),
        ["--write", dir] => write_all(PathBuf::from(dir)),
        ["--check", dir] => check_all(PathBuf::from(dir)),
        _ => Err("usage: crdgen [--write DIR | --check DIR]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn render() -> Result<Vec<(&'static str, String)>, String> {
    vigil_api::crd::all()
        .into_iter()
        .map(|(file, crd)| {
            vigil_api::crd::to_yaml(&crd)
                .map(|y| (file, y))
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn print_all() -> Result<(), String> {
    for (_, yaml) in render()? {
        println!("---\n{yaml}");
    }
    Ok(())
}

fn write_all(dir: PathBuf) -> Result<(), String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, yaml) in render()? {
        let path = dir.join(file);
        std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn check_all(dir: PathBuf) -> Result<(), String> {
    let mut drifted = vec![];
    for (file, yaml) in render()? {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == yaml => {}
            Ok(_) => drifted.push(format!("{} differs", path.display())),
            Err(e) => drifted.push(format!("{}: {e}", path.display())),
        }
    }
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "CRDs drifted from the code ({}); run `cargo run -p vigil-operator --bin crdgen -- --write {}`",
            drifted.join(", "),
            dir.display()
        ))
    }
}
