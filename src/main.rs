//! The `clawgate` binary: parses the command line, loads the config and hands over to
//! `clawgate::runtime::run`.
//!
//! ```text
//! clawgate [--config FILE] [--listen ADDR]
//!                                   serve (FILE also from CLAWGATE_CONFIG; ADDR overrides
//!                                   server.listen)
//! clawgate check-config FILE        validate a config file and exit
//! clawgate [--config FILE] backup DEST
//!                                   copy the session store to DEST (online, while serving)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clawgate::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the pages mimalloc holds free on this thread's heap back to the OS (those
/// freed longer ago than its purge delay); `runtime::set_memory_release`.
fn release_free_memory() {
    // SAFETY: `mi_collect` only walks and trims the calling thread's own mimalloc heap
    // (the global allocator above); it takes no pointers and is documented as safe to
    // call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(false)
    };
}

const USAGE: &str = "usage: clawgate [--config FILE] [--listen ADDR]
                                         serve (FILE also from CLAWGATE_CONFIG; ADDR, an
                                         IP:port, overrides server.listen)
       clawgate check-config FILE        validate a config file
       clawgate [--config FILE] backup DEST
                                         copy the session store ([store] path) to DEST,
                                         consistent while clawgate serves
       clawgate --version | --help";

fn main() -> ExitCode {
    if let Some(missing) = missing_cpu_features() {
        eprintln!(
            "clawgate: this build needs an x86-64-v3 CPU (AVX2, BMI2, FMA, MOVBE); this one lacks {missing}. \
             Rebuild without `-C target-cpu=x86-64-v3` (.cargo/config.toml) to run here."
        );
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config_path: Option<PathBuf> = std::env::var_os("CLAWGATE_CONFIG").map(PathBuf::from);
    let mut backup_to: Option<PathBuf> = None;
    let mut listen: Option<std::net::SocketAddr> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "check-config" => {
                let Some(path) = args.get(i + 1) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                // The files the config names (CA bundles, the listener's certificate
                // and key) are read too, as start-up would.
                let checked = Config::load(path.as_ref()).map_err(|e| e.to_string()).and_then(|c| {
                    clawgate::worker::Snapshot::new(std::sync::Arc::new(c)).map_err(|e| format!("{path}: {e}"))
                });
                return match checked {
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
            "backup" => {
                let Some(dest) = args.get(i + 1) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                backup_to = Some(PathBuf::from(dest));
                i += 1;
            }
            "--listen" | "-l" => {
                let Some(addr) = args.get(i + 1) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                match addr.parse() {
                    Ok(a) => listen = Some(a),
                    Err(_) => {
                        eprintln!(
                            "clawgate: --listen {addr:?}: expected an IP:port such as 0.0.0.0:8080 or [::1]:8080"
                        );
                        return ExitCode::from(2);
                    }
                }
                i += 1;
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
                return out(&format!("clawgate {}", env!("CARGO_PKG_VERSION")));
            }
            "--help" | "-h" => {
                return out(USAGE);
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
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clawgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = listen {
        // The same rule as the file's server.listen: open mode only on loopback.
        if config.keys.is_empty() && !addr.ip().to_canonical().is_loopback() {
            eprintln!(
                "clawgate: --listen {addr}: no [[keys]] configured: open mode is only allowed on a loopback address"
            );
            return ExitCode::FAILURE;
        }
        config.server.listen = addr;
    }
    clawgate::log::set_filter(&config.log);
    clawgate::runtime::set_memory_release(release_free_memory);
    if let Some(dest) = backup_to {
        return backup(&config, &dest);
    }
    match clawgate::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clawgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to stdout (what `--version`, `--help` and `backup`
/// report); exit 0, or 1 if stdout is gone.
fn out(text: &str) -> ExitCode {
    use std::io::Write;
    match writeln!(std::io::stdout(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `clawgate backup DEST`: the configured SQLite store copied with SQLite's online
/// backup API (a consistent snapshot even while clawgate serves from it).
fn backup(config: &Config, dest: &std::path::Path) -> ExitCode {
    if config.store.backend != clawgate::config::StoreBackend::Sqlite {
        eprintln!("clawgate: backup: [store] backend is {}, which keeps nothing on disk", config.store.backend);
        return ExitCode::FAILURE;
    }
    match clawgate::store::backup(&config.store.path, dest) {
        Ok(r) => out(&format!(
            "backed up {} to {}: {} sessions, {} messages, {} bytes",
            config.store.path.display(),
            dest.display(),
            r.sessions,
            r.messages,
            r.bytes
        )),
        Err(e) => {
            eprintln!("clawgate: backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first x86-64-v3 feature this CPU lacks, when the binary was built for x86-64-v3
/// (`.cargo/config.toml`): checked first thing in `main`, so an older CPU gets a
/// message instead of dying on SIGILL at the first AVX2 instruction.
fn missing_cpu_features() -> Option<&'static str> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        let checks: [(&'static str, bool); 6] = [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("bmi1", std::arch::is_x86_feature_detected!("bmi1")),
            ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("lzcnt", std::arch::is_x86_feature_detected!("lzcnt")),
            ("movbe", std::arch::is_x86_feature_detected!("movbe")),
        ];
        checks.iter().find(|(_, ok)| !ok).map(|(name, _)| *name)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    {
        None
    }
}
