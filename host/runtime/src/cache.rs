//! The on-disk cache of compiled policies, so a restart or reload of a known module skips
//! the compiler: a component is compiled once per (module bytes, engine settings) and afterwards
//! loaded by mapping the artifact (about 50 µs).
//!
//! Entries are named `<sha256 of the module>-<engine hash>.cwasm`. The engine hash covers
//! wasmtime's version and every setting that affects code generation, so an upgrade or a config
//! change simply misses. Files are written to a temporary name and renamed, so a crash never
//! leaves a half-written artifact under a real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing, mode 0700: artifacts are executable code). A
    /// folder that someone else owns or may write to is refused: whoever can plant a file
    /// there could have it run as this process.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        create_private_dir(dir)?;
        check_private(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_hash: format!("{:016x}", hasher.finish()),
        })
    }

    /// The entry for a module hash; `None` unless the hash is 64 lowercase hex digits, so
    /// that a hash read from a file (the journal names last good versions) can never name a
    /// path outside the cache.
    fn path_for(&self, module_hash: &str) -> Option<PathBuf> {
        let is_sha256 = module_hash.len() == 64
            && module_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_sha256.then(|| {
            self.dir
                .join(format!("{module_hash}-{}.cwasm", self.engine_hash))
        })
    }

    /// The compiled component for a module, if cached.
    pub fn load(&self, engine: &Engine, module_hash: &str) -> Option<Component> {
        let path = self.path_for(module_hash)?;
        if !path.is_file() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `deserialize_file` trusts the file to be an artifact wasmtime wrote. Only this
        // cache writes into its directory, which is created owner-only, and wasmtime still
        // checks the artifact's header against this engine's version and settings.
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unusable cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Remove stale entries: those compiled by another engine (an older wasmtime, other
    /// settings), and those of modules not in `keep` beyond the `keep_recent` most recently
    /// written (so that rolling back to a recent version stays near-instant). Returns how many
    /// files were removed; failures are logged, never fatal.
    pub fn clean(&self, keep: &std::collections::BTreeSet<String>, keep_recent: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let suffix = format!("-{}.cwasm", self.engine_hash);
        let mut ours = Vec::new();
        let mut stale = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".cwasm") {
                continue;
            }
            match name.strip_suffix(&suffix) {
                Some(hash) if keep.contains(hash) => {}
                Some(_) => {
                    let written = entry.metadata().and_then(|m| m.modified()).ok();
                    ours.push((written, entry.path()));
                }
                None => stale.push(entry.path()),
            }
        }
        ours.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        stale.extend(ours.into_iter().skip(keep_recent).map(|(_, path)| path));
        let mut removed = 0;
        for path in stale {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a stale cache entry")
                }
            }
        }
        removed
    }

    /// The cache's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forget a module's entry (one that turned out not to be admissible).
    pub fn remove(&self, module_hash: &str) {
        if let Some(path) = self.path_for(module_hash) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Store a compiled component. Failing to write is logged, never fatal: the cache only
    /// saves time.
    pub fn store(&self, module_hash: &str, component: &Component) {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let Some(path) = self.path_for(module_hash) else {
            tracing::warn!(module_hash, "not a SHA-256 hash; not cached");
            return;
        };
        let write = WRITES.fetch_add(1, Ordering::Relaxed);
        let temporary = path.with_extension(format!("tmp.{}.{write}", std::process::id()));
        let written = component
            .serialize()
            .map_err(|error| error.to_string())
            .and_then(|bytes| std::fs::write(&temporary, bytes).map_err(|e| e.to_string()))
            .and_then(|()| std::fs::rename(&temporary, &path).map_err(|e| e.to_string()));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            tracing::warn!(path = %path.display(), %error, "could not write cache entry");
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(unix)]
fn check_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(dir)?;
    let ours = metadata.uid() == rustix::process::geteuid().as_raw();
    let shared = metadata.mode() & 0o022 != 0;
    if !ours || shared {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "owned by uid {} with mode {:o}; it must be this user's and writable by no one else",
                metadata.uid(),
                metadata.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_folder_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = dir.path().join("cache");
        assert!(ArtifactCache::new(&cache, &engine).is_ok());
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = ArtifactCache::new(&cache, &engine).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("mode 777"), "{error}");
    }

    /// Artifacts are machine code of one compiler: a cache filled by a Cranelift build (Haven
    /// before it compiled with Winch) misses under Winch, and `clean` removes those entries.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn entries_of_another_compiler_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let engine = |strategy| {
            let mut config = wasmtime::Config::new();
            config.strategy(strategy);
            Engine::new(&config).unwrap()
        };
        let cranelift = engine(wasmtime::Strategy::Cranelift);
        let winch = engine(wasmtime::Strategy::Winch);
        let old = ArtifactCache::new(dir.path(), &cranelift).unwrap();
        let new = ArtifactCache::new(dir.path(), &winch).unwrap();
        assert_ne!(old.engine_hash, new.engine_hash);

        // An empty component: the preamble, component-model version 0xd, layer 1.
        let empty = b"\0asm\x0d\0\x01\0";
        let component = Component::new(&cranelift, empty).unwrap();
        let hash = "00".repeat(32);
        old.store(&hash, &component);
        assert!(old.load(&cranelift, &hash).is_some());
        assert!(new.load(&winch, &hash).is_none());
        assert_eq!(new.clean(&[hash].into(), 8), 1);
    }

    #[test]
    fn only_a_sha256_hash_names_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(&dir.path().join("cache"), &Engine::default()).unwrap();
        let hash = "0123456789abcdef".repeat(4);
        let path = cache.path_for(&hash).unwrap();
        assert_eq!(path.parent(), Some(dir.path().join("cache").as_path()));
        for bad in [
            "../../etc/passwd",
            "",
            &hash[1..],
            &hash.to_uppercase(),
            &format!("{hash}/x"),
        ] {
            assert_eq!(cache.path_for(bad), None, "{bad}");
            assert!(cache.load(&Engine::default(), bad).is_none());
        }
    }
}
