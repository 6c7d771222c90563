//! The audio the commands need by default — what John and a phone say in the in-process
//! emulator, the demo's prompt, the seed's service-hosted prompts — built into the binary, so
//! that an installed `appmedia` works from any folder.
//!
//! `--media-samples DIR` names a directory explicitly. Without it, `media-samples/` in the
//! current directory is used when it has every default file (a checkout of the repository);
//! otherwise the built-in files are written once to a cache directory
//! (`$XDG_CACHE_HOME/appmedia/media-samples-VERSION`, else `~/.cache/…`, else the temporary
//! directory) and that directory is used. Each file is written to a temporary name and
//! renamed, so a reader never sees half a file, and one already there with the same bytes is
//! left alone.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The built-in files: name and bytes.
const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "john-speech.wav",
        include_bytes!("../media-samples/john-speech.wav"),
    ),
    (
        "jane-speech.wav",
        include_bytes!("../media-samples/jane-speech.wav"),
    ),
    ("prompt.wav", include_bytes!("../media-samples/prompt.wav")),
    (
        "tone-1khz-16k.wav",
        include_bytes!("../media-samples/tone-1khz-16k.wav"),
    ),
];

/// The directory in the current folder that is used when it has every default file.
const LOCAL: &str = "media-samples";

/// Where the media samples are: `explicit` if given, else the local `media-samples/` when
/// complete, else the built-in files written to the cache.
pub fn dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let local = Path::new(LOCAL);
    if EMBEDDED.iter().all(|(name, _)| local.join(name).is_file()) {
        return Ok(local.to_owned());
    }
    let cache = cache_dir();
    extract(&cache)?;
    Ok(cache)
}

fn cache_dir() -> PathBuf {
    let leaf = format!("media-samples-{}", env!("CARGO_PKG_VERSION"));
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        });
    match base {
        Some(base) => base.join("appmedia").join(leaf),
        None => std::env::temp_dir().join(format!("appmedia-{leaf}")),
    }
}

/// Writes the built-in files into `dir` (created if needed); files already there with the
/// same bytes are kept.
fn extract(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create {} for the built-in media samples: {e} (or pass --media-samples DIR)",
            dir.display()
        )
    })?;
    for (name, bytes) in EMBEDDED {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|on_disk| on_disk == *bytes) {
            continue;
        }
        let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let written = std::fs::File::create(&partial)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_written_once_whole_and_a_damaged_one_is_rewritten() {
        let dir = std::env::temp_dir().join(format!("appmedia-samples-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        extract(&dir).unwrap();
        for (name, bytes) in EMBEDDED {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), *bytes, "{name}");
        }
        // A truncated file (a crash elsewhere, a full disk) is replaced; no partial is left.
        std::fs::write(dir.join("prompt.wav"), b"RIFF").unwrap();
        extract(&dir).unwrap();
        assert_eq!(
            std::fs::read(dir.join("prompt.wav")).unwrap().len(),
            EMBEDDED[2].1.len()
        );
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_a_clear_error() {
        let err = extract(Path::new("/dev/null/appmedia")).unwrap_err();
        assert!(err.contains("--media-samples"), "{err}");
    }
}
