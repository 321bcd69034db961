//! The key file of one host: its own private key and the peer's public key.
//!
//! ```toml
//! # Haven peer link keys of hasta. Secret: keep it mode 0600, owned by root.
//! host = "hasta"
//! private-key = "<64 hex digits>"
//! peer = "hastb"
//! peer-public-key = "<64 hex digits>"
//! ```
//!
//! `havenctl peer-keys hasta hastb --out DIR` writes `DIR/hasta.key` and `DIR/hastb.key` at
//! once, so the two files always match; each goes to its host as `[peer] key-file`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A Curve25519 key's length in bytes.
pub const KEY_BYTES: usize = 32;

/// The Noise protocol both sides speak; the pattern KK: each side knows the other's static key.
pub const NOISE_PARAMS: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";

/// The longest key file read (it is a few lines).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why keys could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the peer key file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the peer key file {path} is {bytes} bytes; a key file is under {MAX_KEY_FILE_BYTES}")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error(
        "the peer key file {path} can be read by others (mode {mode:o}): it holds a private key; \
         chmod 600 it"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the peer key file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// One host's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKeys {
    /// This host's name, as the key file says.
    pub host: String,
    /// This host's private key.
    pub private_key: [u8; KEY_BYTES],
    /// The peer's name.
    pub peer: String,
    /// The peer's public key.
    pub peer_public_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerKeys")
            .field("host", &self.host)
            .field("peer", &self.peer)
            .field("peer_public_key", &hex(&self.peer_public_key))
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct KeyFile {
    host: String,
    private_key: String,
    peer: String,
    peer_public_key: String,
}

impl PeerKeys {
    /// Read a key file, which must not be readable by group or others.
    pub fn load(path: &Path) -> Result<PeerKeys, KeyError> {
        use std::io::Read as _;
        use std::os::unix::fs::PermissionsExt as _;
        let read = |error| KeyError::Read {
            path: path.to_owned(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let metadata = file.metadata().map_err(read)?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
        if metadata.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge {
                path: path.to_owned(),
                bytes: metadata.len(),
            });
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(read)?;
        PeerKeys::parse(&text).map_err(|message| KeyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parse a key file's text.
    pub fn parse(text: &str) -> Result<PeerKeys, String> {
        let file: KeyFile = toml::from_str(text).map_err(|error| error.message().to_owned())?;
        let keys = PeerKeys {
            private_key: unhex("private-key", &file.private_key)?,
            peer_public_key: unhex("peer-public-key", &file.peer_public_key)?,
            host: file.host,
            peer: file.peer,
        };
        if keys.public_key()? == keys.peer_public_key {
            return Err("peer-public-key is this host's own public key".into());
        }
        Ok(keys)
    }

    /// This host's public key, derived from its private key.
    pub fn public_key(&self) -> Result<[u8; KEY_BYTES], String> {
        use snow::resolvers::CryptoResolver as _;
        let mut dh = snow::resolvers::DefaultResolver
            .resolve_dh(&snow::params::DHChoice::Curve25519)
            .ok_or("no Curve25519 in snow's resolver")?;
        dh.set(&self.private_key);
        dh.pubkey()
            .try_into()
            .map_err(|_| "a public key is not 32 bytes".to_owned())
    }

    /// The text of this host's key file.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Haven peer link keys of {host}. Secret: keep it mode 0600, owned by root.\n\
             # Give it to havend as [peer] key-file; the peer holds the matching file.\n\
             host = \"{host}\"\nprivate-key = \"{private}\"\npeer = \"{peer}\"\n\
             peer-public-key = \"{public}\"\n",
            host = self.host,
            private = hex(&self.private_key),
            peer = self.peer,
            public = hex(&self.peer_public_key),
        )
    }

    /// Two matching key sets, for hosts `a` and `b`.
    pub fn generate_pair(a: &str, b: &str) -> Result<(PeerKeys, PeerKeys), KeyError> {
        let params = NOISE_PARAMS
            .parse()
            .map_err(|e| KeyError::Generate(format!("{e}")))?;
        let builder = snow::Builder::new(params);
        let generate = || -> Result<snow::Keypair, KeyError> {
            builder
                .generate_keypair()
                .map_err(|e| KeyError::Generate(e.to_string()))
        };
        let (pair_a, pair_b) = (generate()?, generate()?);
        let key = |bytes: &[u8]| -> Result<[u8; KEY_BYTES], KeyError> {
            bytes
                .try_into()
                .map_err(|_| KeyError::Generate("a key is not 32 bytes".into()))
        };
        Ok((
            PeerKeys {
                host: a.to_owned(),
                private_key: key(&pair_a.private)?,
                peer: b.to_owned(),
                peer_public_key: key(&pair_b.public)?,
            },
            PeerKeys {
                host: b.to_owned(),
                private_key: key(&pair_b.private)?,
                peer: a.to_owned(),
                peer_public_key: key(&pair_a.public)?,
            },
        ))
    }

    /// Write the key file at `path`, created with mode 0600 (refusing to overwrite one).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let write = |error| KeyError::Write {
            path: path.to_owned(),
            error,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        file.write_all(self.to_file_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(what: &str, text: &str) -> Result<[u8; KEY_BYTES], String> {
    let bad = || format!("{what} must be {} hex digits", KEY_BYTES * 2);
    if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; KEY_BYTES];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_generated_pair_matches_and_round_trips() {
        let (a, b) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
        assert_eq!(a.peer_public_key, b.public_key().unwrap());
        assert_eq!(b.peer_public_key, a.public_key().unwrap());
        assert_eq!(PeerKeys::parse(&a.to_file_text()).unwrap(), a);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hasta.key");
        a.write_new(&path).unwrap();
        assert_eq!(PeerKeys::load(&path).unwrap(), a);
        assert!(a.write_new(&path).is_err(), "an existing key file is kept");
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let (a, _) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hasta.key");
        a.write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = PeerKeys::load(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn bad_key_files_say_why() {
        let (a, _) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
        let text = a.to_file_text();
        let short = text.replace(&hex(&a.private_key), "abcd");
        assert!(
            PeerKeys::parse(&short)
                .unwrap_err()
                .contains("64 hex digits")
        );
        let own = text.replace(&hex(&a.peer_public_key), &hex(&a.public_key().unwrap()));
        assert!(
            PeerKeys::parse(&own)
                .unwrap_err()
                .contains("own public key")
        );
        let extra = format!("{text}colour = \"blue\"\n");
        assert!(
            PeerKeys::parse(&extra)
                .unwrap_err()
                .contains("unknown field `colour`")
        );
        assert!(PeerKeys::parse("host = 1").is_err());
    }
}
