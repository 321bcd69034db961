//! The policies' key-value stores on disk, so that what a policy knows survives a restart of
//! havend and a reboot of its host (the seed policy keeps there what the peer said about this
//! host's copy of the data).
//!
//! One file per policy, `<state-dir>/kv/<policy>.json`:
//!
//! ```json
//! {"format":"haven-kv 1","sha256":"<hex of the entries' JSON>","entries":{"key":"value"}}
//! ```
//!
//! A store is written whole after a call whose writes changed it: before the next step that
//! acts on the system, or when the daemon is next idle, whichever comes first (as the journal
//! is synced), so that a decision never waits for the disk. It goes to
//! `<policy>.json.tmp`, synced, renamed over the file, and the folder synced. A file that cannot be read back (damaged, truncated, its checksum wrong, over the
//! size limit) is never silently emptied: it is moved aside to `<policy>.json.damaged`, and
//! the caller raises a critical alert and tells the policy at startup that its state was lost.

use crate::call_context::KvStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The format tag in every file.
const FORMAT: &str = "haven-kv 1";

/// The largest store file read back (the store's own limits keep it far smaller).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a store could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum KvFileError {
    #[error("cannot {what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is damaged ({why}); it was moved to {aside}")]
    Damaged {
        path: PathBuf,
        why: String,
        aside: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    format: String,
    sha256: String,
    entries: KvStore,
}

/// The folder of the stores.
#[derive(Debug, Clone)]
pub struct KvFiles {
    dir: PathBuf,
}

impl KvFiles {
    /// Stores in `dir` (made when the first store is saved).
    pub fn new(dir: impl Into<PathBuf>) -> KvFiles {
        KvFiles { dir: dir.into() }
    }

    fn path(&self, policy: &str) -> PathBuf {
        self.dir.join(format!("{policy}.json"))
    }

    /// Read a policy's store: `Ok(None)` when it has none yet.
    pub fn load(&self, policy: &str) -> Result<Option<KvStore>, KvFileError> {
        let path = self.path(policy);
        let io = |what, error| KvFileError::Io {
            what,
            path: path.clone(),
            error,
        };
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("open", error)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| io("read", error))?;
        let checked = if bytes.len() as u64 > MAX_FILE_BYTES {
            Err(format!("over {MAX_FILE_BYTES} bytes"))
        } else {
            parse(&bytes)
        };
        match checked {
            Ok(store) => Ok(Some(store)),
            Err(why) => {
                let aside = path.with_extension("json.damaged");
                let moved = std::fs::rename(&path, &aside);
                Err(KvFileError::Damaged {
                    path: path.clone(),
                    why,
                    aside: match moved {
                        Ok(()) => aside.display().to_string(),
                        Err(error) => format!("nowhere (cannot rename: {error})"),
                    },
                })
            }
        }
    }

    /// Write a policy's store whole: temporary file, sync, rename, sync the folder.
    pub fn save(&self, policy: &str, store: &KvStore) -> Result<(), KvFileError> {
        let path = self.path(policy);
        let temporary = path.with_extension("json.tmp");
        let io = |what, path: &Path, error| KvFileError::Io {
            what,
            path: path.to_owned(),
            error,
        };
        std::fs::create_dir_all(&self.dir).map_err(|error| io("create", &self.dir, error))?;
        let entries = serde_json::to_vec(store).expect("a map of strings serialises");
        let file = StoreFile {
            format: FORMAT.to_owned(),
            sha256: hex(&Sha256::digest(&entries)),
            entries: store.clone(),
        };
        let text = serde_json::to_vec(&file).expect("a store file serialises");
        let mut out =
            std::fs::File::create(&temporary).map_err(|error| io("create", &temporary, error))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(|error| io("write", &temporary, error))?;
        std::fs::rename(&temporary, &path).map_err(|error| io("rename", &path, error))?;
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io("sync", &self.dir, error))
    }

    /// Remove a policy's store (the policy is gone from the config).
    pub fn remove(&self, policy: &str) -> Result<(), KvFileError> {
        let path = self.path(policy);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(KvFileError::Io {
                what: "remove",
                path,
                error,
            }),
        }
    }
}

/// A store file's bytes, checked.
fn parse(bytes: &[u8]) -> Result<KvStore, String> {
    let file: StoreFile =
        serde_json::from_slice(bytes).map_err(|error| format!("not a store file: {error}"))?;
    if file.format != FORMAT {
        return Err(format!("format `{}`, not `{FORMAT}`", file.format));
    }
    let entries = serde_json::to_vec(&file.entries).expect("a map of strings serialises");
    if hex(&Sha256::digest(&entries)) != file.sha256 {
        return Err("its checksum does not match its entries".to_owned());
    }
    Ok(file.entries)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> KvStore {
        [
            ("sync:test", "interrupted"),
            ("sync-fact:test", "peer hasta said so"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn a_saved_store_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = KvFiles::new(dir.path().join("kv"));
        assert!(files.load("seed").unwrap().is_none(), "no store yet");
        files.save("seed", &store()).unwrap();
        assert_eq!(files.load("seed").unwrap(), Some(store()));
        files.save("seed", &KvStore::new()).unwrap();
        assert_eq!(files.load("seed").unwrap(), Some(KvStore::new()));
        assert!(!dir.path().join("kv/seed.json.tmp").exists());
    }

    #[test]
    fn a_damaged_store_is_moved_aside_and_reported_never_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let files = KvFiles::new(dir.path());
        files.save("seed", &store()).unwrap();
        let path = dir.path().join("seed.json");
        let good = std::fs::read_to_string(&path).unwrap();
        for (damage, why) in [
            (good.replace("interrupted", "synced"), "checksum"),
            (good[..good.len() / 2].to_owned(), "not a store file"),
            ("\u{0}\u{0}\u{0}".to_owned(), "not a store file"),
        ] {
            std::fs::write(&path, &damage).unwrap();
            let error = files.load("seed").unwrap_err().to_string();
            assert!(error.contains(why) && error.contains("damaged"), "{error}");
            assert_eq!(
                std::fs::read_to_string(dir.path().join("seed.json.damaged")).unwrap(),
                damage,
                "the damaged file is kept for a human"
            );
            assert!(!path.exists());
        }
    }
}
