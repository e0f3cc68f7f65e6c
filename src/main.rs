//! The `clawgate` binary: parses the command line, loads the config and hands over to
//! `clawgate::runtime::run`.
//!
//! ```text
//! clawgate [--config FILE]          serve (FILE also from CLAWGATE_CONFIG)
//! clawgate check-config FILE        validate a config file and exit
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clawgate::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: clawgate [--config FILE] | clawgate check-config FILE | clawgate --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config_path: Option<PathBuf> = std::env::var_os("CLAWGATE_CONFIG").map(PathBuf::from);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "check-config" => {
                let Some(path) = args.get(i + 1) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                return match Config::load(path.as_ref()) {
                    Ok(_) => {
                        eprintln!("{path}: ok");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                };
            }
            "--config" | "-c" => {
                let Some(path) = args.get(i + 1) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                config_path = Some(PathBuf::from(path));
                i += 1;
            }
            "--version" | "-V" => {
                eprintln!("clawgate {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let config = match &config_path {
        Some(path) => Config::load(path),
        None => Config::builtin_from_env(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match clawgate::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate: {e}");
            ExitCode::FAILURE
        }
    }
}
