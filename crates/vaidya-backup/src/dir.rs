//! A local directory as a backup target: for development, tests, and a second copy on another
//! disk. Objects are files named by their keys (`/` makes subdirectories). A put never replaces
//! a file; but nothing stops someone with the account's rights from deleting or altering
//! files, which is why `check` never calls a directory safe.

use crate::target::{ObjectVersion, Safety, Target, TargetError};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct DirTarget {
    name: String,
    root: PathBuf,
}

impl DirTarget {
    pub fn new(name: &str, root: &Path) -> DirTarget {
        DirTarget { name: name.to_string(), root: root.to_path_buf() }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, TargetError> {
        // Keys are made by this crate, but a listing or a command line may hand one back:
        // nothing may climb out of the root.
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(TargetError::Refused { target: self.name.clone(), message: format!("'{key}' is not an object name") });
        }
        Ok(self.root.join(key))
    }

    fn io(&self, e: std::io::Error) -> TargetError {
        TargetError::Io(e, self.name.clone())
    }
}

impl Target for DirTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), TargetError> {
        let path = self.path_of(key)?;
        let dir = path.parent().expect("an object path has a parent");
        fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("object"), std::process::id()));
        let mut f = File::create(&tmp).map_err(|e| self.io(e))?;
        f.write_all(body).and_then(|()| f.sync_all()).map_err(|e| self.io(e))?;
        drop(f);
        // A hard link fails if the name exists: an object is never replaced.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(TargetError::Exists { target: self.name.clone(), key: key.to_string() });
            }
            Err(e) => return Err(self.io(e)),
        }
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| self.io(e))
    }

    fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, TargetError> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out).map_err(|e| self.io(e))?;
        out.retain(|v| v.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn get(&self, key: &str, version_id: Option<&str>) -> Result<Vec<u8>, TargetError> {
        if version_id.is_some() {
            return Err(TargetError::Refused { target: self.name.clone(), message: "a directory keeps no versions".into() });
        }
        match fs::read(self.path_of(key)?) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(TargetError::NotFound { target: self.name.clone(), key: key.to_string() })
            }
            Err(e) => Err(self.io(e)),
        }
    }

    fn check(&self) -> Result<Safety, TargetError> {
        fs::create_dir_all(&self.root).map_err(|e| self.io(e))?;
        let mut safety = Safety::default();
        safety.facts.push(format!("directory {}", self.root.display()));
        safety.problems.push(
            "a directory keeps no locked versions: anyone who gets the server's account can delete or alter its files; \
             use it only as a second copy beside an object-locked bucket"
                .into(),
        );
        Ok(safety)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectVersion>) -> std::io::Result<()> {
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for item in listing {
        let item = item?;
        let path = item.path();
        let meta = item.metadata()?;
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.starts_with('.') {
            continue; // a put in progress
        }
        let Ok(rel) = path.strip_prefix(root) else { continue };
        let Some(key) = rel.to_str() else { continue };
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64);
        out.push(ObjectVersion { key: key.to_string(), version_id: None, delete_marker: false, size: meta.len(), last_modified_ms: modified });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_written_once_listed_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let t = DirTarget::new("copy", tmp.path());
        t.put("h/data/a.seg", b"one").unwrap();
        t.put("h/keys/k.age", b"key").unwrap();
        assert!(matches!(t.put("h/data/a.seg", b"two"), Err(TargetError::Exists { .. })));
        assert_eq!(t.get("h/data/a.seg", None).unwrap(), b"one");
        let keys: Vec<String> = t.list_versions("h/data/").unwrap().into_iter().map(|v| v.key).collect();
        assert_eq!(keys, ["h/data/a.seg"]);
        assert_eq!(t.list_versions("h/").unwrap().len(), 2);
        assert!(matches!(t.get("h/data/none.seg", None), Err(TargetError::NotFound { .. })));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(matches!(t.put(bad, b"x"), Err(TargetError::Refused { .. })), "{bad}");
        }
        assert!(!t.check().unwrap().problems.is_empty(), "a directory is never called safe");
    }
}
