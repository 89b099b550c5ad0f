//! Which paths open as databases.
//!
//! A database is a directory. [`crate::Database::open`] creates one only
//! where asked for something new: a path that does not exist or an empty
//! directory. An existing directory holding other files and no EntiDB file
//! (`MANIFEST`, `WAL`, `LOCK`) is refused, and so is a plain file, so
//! `Database::open("/tmp")` or `entidb notes.txt` never turns something else
//! into a database.

use std::path::Path;

/// The files whose presence marks a directory as an EntiDB database.
const MARKERS: [&str; 4] = ["MANIFEST", "WAL", "LOCK", "MANIFEST.tmp"];

/// `Ok` when `path` may be opened (or created) as a database.
///
/// # Errors
/// A message saying why not.
pub(crate) fn check_database_path(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(format!(
            "{shown} is a file, not an EntiDB database (a database is a directory; give a new path to create one)"
        ));
    }
    if MARKERS.iter().any(|m| path.join(m).exists()) {
        return Ok(());
    }
    let empty = std::fs::read_dir(path)
        .map(|mut entries| entries.next().is_none())
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if empty {
        Ok(())
    } else {
        Err(format!(
            "{shown} is a directory that is not an EntiDB database (it has other files and no MANIFEST); give a new or empty directory"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_empty_paths_open_files_and_foreign_directories_do_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_database_path(&dir.path().join("new")).is_ok());
        assert!(check_database_path(dir.path()).is_ok(), "empty");
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let err = check_database_path(dir.path()).unwrap_err();
        assert!(err.contains("not an EntiDB database"), "{err}");
        let err = check_database_path(&dir.path().join("notes.txt")).unwrap_err();
        assert!(err.contains("is a file"), "{err}");
        std::fs::write(dir.path().join("MANIFEST"), "x").unwrap();
        assert!(check_database_path(dir.path()).is_ok());
    }
}
