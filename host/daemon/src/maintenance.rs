//! This host's maintenance, kept in `<state-dir>/maintenance.json` so that it survives havend
//! restarts and reboots: the file exists while maintenance is on.
//!
//! `havenctl maintenance on|off` writes (or removes) the file before the operator's request
//! is queued, so a crash between the two leaves the operator's word on disk. A file that
//! cannot be read still means "on": the operator turned maintenance on at some point, and a
//! host that wrongly stays out of service is safer than one that wrongly serves. Its content
//! (when, by whom) is then unknown, and the caller alerts.

use haven_core::MaintenanceState;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file's name in the state folder.
pub const FILE: &str = "maintenance.json";

/// The most of the file that is read: it holds two numbers.
const MAX_BYTES: u64 = 4096;

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The maintenance kept on disk: `Ok(None)` when off; `Err` (with the state to assume, "on
/// since an unknown time") when the file exists but cannot be read.
pub fn load(state_dir: &Path) -> Result<Option<MaintenanceState>, (MaintenanceState, String)> {
    let path = path(state_dir);
    let unknown = MaintenanceState {
        since_unix_ms: 0,
        uid: 0,
    };
    let mut text = String::new();
    match std::fs::File::open(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err((unknown, format!("cannot open {}: {error}", path.display())));
        }
        Ok(file) => {
            if let Err(error) = file.take(MAX_BYTES).read_to_string(&mut text) {
                return Err((unknown, format!("cannot read {}: {error}", path.display())));
            }
        }
    }
    serde_json::from_str(&text).map(Some).map_err(|error| {
        let message = format!(
            "{} is damaged ({error}): maintenance counts as on; `havenctl maintenance off` \
             clears it",
            path.display()
        );
        (unknown, message)
    })
}

/// Keep `state` on disk: the file written (temporary file, sync, rename) or removed.
pub fn save(state_dir: &Path, state: Option<MaintenanceState>) -> std::io::Result<()> {
    let path = path(state_dir);
    match state {
        None => match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        },
        Some(state) => {
            let temporary = path.with_extension("json.tmp");
            let mut out = std::fs::File::create(&temporary)?;
            out.write_all(&serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
            out.sync_all()?;
            std::fs::rename(&temporary, &path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_removed_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Ok(None));
        let on = MaintenanceState {
            since_unix_ms: 1_764_876_003_000,
            uid: 0,
        };
        save(dir.path(), Some(on)).unwrap();
        assert_eq!(load(dir.path()), Ok(Some(on)));
        save(dir.path(), None).unwrap();
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()), Ok(None));
        std::fs::write(dir.path().join(FILE), b"{\"since-unix-ms\":").unwrap();
        let (assumed, why) = load(dir.path()).unwrap_err();
        assert_eq!(assumed.since_unix_ms, 0);
        assert!(why.contains("damaged"), "{why}");
    }
}
