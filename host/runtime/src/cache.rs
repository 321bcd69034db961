//! The on-disk cache of compiled policies, so a restart or reload of a known module skips
//! Cranelift: a component is compiled once per (module bytes, engine settings) and afterwards
//! loaded by mapping the artifact (about 50 µs).
//!
//! Entries are named `<sha256 of the module>-<engine hash>.cwasm`. The engine hash covers
//! wasmtime's version and every setting that affects code generation, so an upgrade or a config
//! change simply misses. Files are written to a temporary name and renamed, so a crash never
//! leaves a half-written artifact under a real name.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_hash: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing, mode 0700: artifacts are executable code).
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        create_private_dir(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_hash: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, module_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{module_hash}-{}.cwasm", self.engine_hash))
    }

    /// The compiled component for a module, if cached.
    pub fn load(&self, engine: &Engine, module_hash: &str) -> Option<Component> {
        let path = self.path_for(module_hash);
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

    /// Store a compiled component. Failing to write is logged, never fatal: the cache only
    /// saves time.
    pub fn store(&self, module_hash: &str, component: &Component) {
        let path = self.path_for(module_hash);
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
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
