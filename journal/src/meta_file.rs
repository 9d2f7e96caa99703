//! The engine-config sidecar: `<journal dir>/engine.json`, the [`EngineConfig`] the journal's
//! commands were applied under, so tools (`kuku-replay`) and recovery can rebuild the engine
//! without being told its capacities.
//!
//! ```json
//! {
//!   "format": 1,
//!   "engine_logic_version": 1,
//!   "capacities_hash": "0x5f3c...",
//!   "engine": { "orders_max": 1048576, "accounts_max": 100000, ... }
//! }
//! ```
//!
//! The writer side (the server, a test, the benchmark) calls [`write_config`] when it creates
//! the journal; it is written as a temporary file, fsynced, renamed over the final name, and the
//! directory fsynced, so a crash leaves the old file or the new one.
//!
//! **Invariants**: [`read_config`] returns a config only if the recorded capacities hash equals
//! the config's own `capacities_hash()` and the recorded engine-logic version is this build's;
//! the segment headers are still checked against the config before any replay (the sidecar is
//! a convenience, the headers are the authority).
//!
//! **Known limitations**: one config per journal directory; a journal whose capacities changed
//! starts a new directory (the segment headers would refuse the mix anyway).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use kuku_engine::EngineConfig;
use serde::{Deserialize, Serialize};

use crate::segment::sync_dir;
use crate::state::StateError;

/// The sidecar's file name inside the journal directory.
pub const ENGINE_CONFIG_FILE_NAME: &str = "engine.json";

const SIDECAR_FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    engine_logic_version: u32,
    /// Hex, so the value survives JSON readers that parse numbers as doubles.
    capacities_hash: String,
    engine: EngineConfig,
}

/// The sidecar path of the journal in `dir`.
pub fn config_path(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(ENGINE_CONFIG_FILE_NAME)
}

/// Writes `config` as the journal's sidecar (atomically, durably). Returns its path.
pub fn write_config(dir: impl AsRef<Path>, config: &EngineConfig) -> Result<PathBuf, StateError> {
    let dir = dir.as_ref();
    let path = config_path(dir);
    let temp = dir.join(format!(".{ENGINE_CONFIG_FILE_NAME}.tmp"));
    let sidecar = Sidecar {
        format: SIDECAR_FORMAT,
        engine_logic_version: crate::upgrade::engine_logic_version(),
        capacities_hash: format!("{:#018x}", config.capacities_hash()),
        engine: *config,
    };
    let mut text = serde_json::to_string_pretty(&sidecar).map_err(|e| StateError::ConfigFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| StateError::Io {
            op,
            path: p,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io("create", &temp))?;
    file.write_all(text.as_bytes())
        .map_err(io("write", &temp))?;
    file.sync_all().map_err(io("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(io("rename", &temp))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads the journal's sidecar. [`StateError::ConfigFileMissing`] if there is none.
pub fn read_config(dir: impl AsRef<Path>) -> Result<EngineConfig, StateError> {
    let path = config_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::ConfigFileMissing { path });
        }
        Err(source) => {
            return Err(StateError::Io {
                op: "read",
                path,
                source,
            });
        }
    };
    parse_config(&path, &text)
}

/// Reads the journal's sidecar written by any engine-logic version: the config and the
/// version it names. The capacities hash is not checked (another version hashes differently);
/// `kuku upgrade` compares the config with the snapshot's instead.
pub fn read_config_any_version(dir: impl AsRef<Path>) -> Result<(EngineConfig, u32), StateError> {
    let path = config_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::ConfigFileMissing { path });
        }
        Err(source) => {
            return Err(StateError::Io {
                op: "read",
                path,
                source,
            });
        }
    };
    let sidecar: Sidecar = serde_json::from_str(&text).map_err(|e| StateError::ConfigFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if sidecar.format != SIDECAR_FORMAT {
        return Err(StateError::ConfigFile {
            path,
            reason: format!(
                "sidecar format {} is not supported (this build reads {SIDECAR_FORMAT})",
                sidecar.format
            ),
        });
    }
    Ok((sidecar.engine, sidecar.engine_logic_version))
}

/// Parses a sidecar, or a bare `EngineConfig` JSON object (what `--config FILE` accepts).
pub fn parse_config(path: &Path, text: &str) -> Result<EngineConfig, StateError> {
    let bad = |reason: String| StateError::ConfigFile {
        path: path.to_owned(),
        reason,
    };
    let sidecar: Sidecar = match serde_json::from_str(text) {
        Ok(sidecar) => sidecar,
        Err(sidecar_error) => {
            return serde_json::from_str::<EngineConfig>(text).map_err(|_| {
                bad(format!(
                    "neither a journal sidecar nor an EngineConfig object: {sidecar_error}"
                ))
            });
        }
    };
    if sidecar.format != SIDECAR_FORMAT {
        return Err(bad(format!(
            "sidecar format {} is not supported (this build reads {SIDECAR_FORMAT})",
            sidecar.format
        )));
    }
    let version = crate::upgrade::engine_logic_version();
    if sidecar.engine_logic_version != version {
        return Err(bad(format!(
            "written for engine-logic version {}, this build is version {version} (docs/operations.md, \"Upgrades\")",
            sidecar.engine_logic_version
        )));
    }
    let computed = format!("{:#018x}", sidecar.engine.capacities_hash());
    if sidecar.capacities_hash != computed {
        return Err(bad(format!(
            "recorded capacities hash {} does not match the config's own ({computed}): the file was edited",
            sidecar.capacities_hash
        )));
    }
    Ok(sidecar.engine)
}
