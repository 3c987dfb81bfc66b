//! The shared model store (`model_store`: a directory every instance mounts): how a service's
//! models follow it from one otelwatch instance to another when the load balancer in front
//! moves it (an instance added or removed).
//!
//! - **Saved per service.** Every `save_interval` and at shutdown, an instance writes one file
//!   per service that had traffic there since its last save: the models of all the service's
//!   series (its own, its calls, its groups, its logs and metrics), with the instance's name
//!   (`owner`) and the latest window in which the service had traffic there (`traffic_ns`).
//! - **Loaded on arrival.** The first window of a service an instance holds no model for makes
//!   it look in the store; a file whose traffic is within `series_ttl` of that window gives
//!   the service's models, so a moved service does not start cold or alarm while warming up.
//!   A loaded series' first window here began at the other instance: it is scored as partial
//!   (its counts are low bounds, and it is not learned).
//! - **Ownership by recency.** Before writing, an instance reads the file there: if another
//!   instance has written it with later traffic, the service has moved away. Nothing is
//!   written, and the models of the service are dropped here. The service's windows that keep
//!   coming here (its series, silent) are scored by fresh models that stay in warm-up, and are
//!   never saved. The two instances' windows of the same series and start are joined into one
//!   by the `records` processor of the incidents aggregator.
//!
//! Reads happen on the pipeline's thread (off the runtime's scheduling, `block_in_place`), once
//! per arriving service; writes on a blocking thread. Two instances writing the same file at
//! once each write whole files (a temporary file renamed), and the later one wins until the next
//! save.

use super::persist::{ModelError, SavedSeries};
use super::SeriesModel;
use crate::model::window::SeriesKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FORMAT: &str = "otelwatch-iforest-service";
pub const VERSION: u32 = 1;

/// One service's models in the store.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceFile {
    pub format: String,
    pub version: u32,
    pub service: String,
    /// The instance that wrote it (`otlp::records::instance_id`).
    pub owner: String,
    /// The latest window start in which the service had traffic at its owner.
    pub traffic_ns: u64,
    pub series: Vec<SavedSeries>,
}

/// Only the header, for the ownership check before a write.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
    service: String,
    owner: String,
    traffic_ns: u64,
}

/// The file of `service` in `dir`: its name hashed (service names may hold any character);
/// the name inside tells a collision apart.
pub fn path_of(dir: &Path, service: &str) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in service.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    dir.join(format!("service-{h:016x}.json"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &Path) -> impl Fn(serde_json::Error) -> ModelError + '_ {
    move |source| ModelError::Format {
        path: path.display().to_string(),
        source,
    }
}

/// The store's file for `service`, if there is one (and it is this format and service).
pub fn read(dir: &Path, service: &str) -> Result<Option<ServiceFile>, ModelError> {
    let path = path_of(dir, service);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let header: Header = serde_json::from_slice(&text).map_err(format_err(&path))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(ModelError::Version {
            path: path.display().to_string(),
            format: header.format,
            version: header.version,
        });
    }
    if header.service != service {
        return Ok(None);
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(format_err(&path))
}

/// What writing a file found.
#[derive(Debug, PartialEq)]
pub enum Written {
    Saved,
    /// Another instance wrote it with later traffic: the service has moved there.
    MovedTo(String),
}

/// The instance that owns `service` now, if it is not `owner`: one that wrote it with
/// traffic later than `traffic_ns`.
pub fn taken_by(dir: &Path, service: &str, owner: &str, traffic_ns: u64) -> Option<String> {
    let text = std::fs::read(path_of(dir, service)).ok()?;
    let h = serde_json::from_slice::<Header>(&text).ok()?;
    (h.service == service && h.owner != owner && h.traffic_ns > traffic_ns).then_some(h.owner)
}

/// Writes `file` unless another instance owns the service now (see the module's doc).
pub fn write(dir: &Path, file: &ServiceFile) -> Result<Written, ModelError> {
    let path = path_of(dir, &file.service);
    if let Some(owner) = taken_by(dir, &file.service, &file.owner, file.traffic_ns) {
        return Ok(Written::MovedTo(owner));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // A name of its own per writer: two instances writing at once do not share a temporary.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("service"),
        std::process::id()
    ));
    let text = serde_json::to_vec(file).map_err(format_err(&path))?;
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(Written::Saved)
}

/// The files one save writes.
pub fn files(
    owner: &str,
    models: &HashMap<Arc<SeriesKey>, SeriesModel>,
    services: &[(Arc<str>, u64)],
) -> Vec<ServiceFile> {
    let mut by_service: HashMap<&str, Vec<&Arc<SeriesKey>>> = HashMap::new();
    for k in models.keys() {
        by_service.entry(&k.service).or_default().push(k);
    }
    services
        .iter()
        .map(|(service, traffic_ns)| {
            let mut keys = by_service.remove(&**service).unwrap_or_default();
            keys.sort();
            ServiceFile {
                format: FORMAT.into(),
                version: VERSION,
                service: service.to_string(),
                owner: owner.to_string(),
                traffic_ns: *traffic_ns,
                series: keys.into_iter().map(|k| models[k].save(k)).collect(),
            }
        })
        .collect()
}

/// Services with the latest window start in which they had traffic here.
pub type Traffic = Vec<(Arc<str>, u64)>;
/// Services found owned elsewhere, with their owner.
pub type Moved = Arc<Mutex<Vec<(Arc<str>, String)>>>;

/// The instance's side of the store: what it has looked up, what traffic it has seen, what it
/// saved, and what the last background save found moved away.
pub struct Store {
    pub dir: PathBuf,
    /// The name this instance writes as a service's owner.
    pub owner: String,
    /// Services already looked up (loaded, missing, or moved away): not looked up again.
    pub looked_up: std::collections::HashSet<Arc<str>>,
    /// Per service, the latest window start with traffic here.
    pub traffic: HashMap<Arc<str>, u64>,
    /// Per service, the traffic last written to the store.
    pub saved: HashMap<Arc<str>, u64>,
    /// Series loaded from the store whose first window here is still to come.
    pub resumed: std::collections::HashSet<Arc<SeriesKey>>,
    /// Services that moved to another instance: their silent windows here are not judged.
    pub away: std::collections::HashSet<Arc<str>>,
    /// Services a background save found owned elsewhere (taken by the processor).
    pub moved: Moved,
    pub pending: Option<tokio::task::JoinHandle<()>>,
}

impl Store {
    pub fn new(dir: &str) -> Self {
        Self {
            dir: PathBuf::from(dir),
            owner: crate::otlp::records::instance_id().to_string(),
            looked_up: Default::default(),
            traffic: HashMap::new(),
            saved: HashMap::new(),
            resumed: Default::default(),
            away: Default::default(),
            moved: Default::default(),
            pending: None,
        }
    }

    /// The services with traffic here since they were last saved (to write), and those
    /// without (to check: a service that went quiet here may have moved).
    pub fn to_save(&self) -> (Traffic, Traffic) {
        let (mut write, mut check): (Vec<_>, Vec<_>) = self
            .traffic
            .iter()
            .map(|(s, t)| (s.clone(), *t))
            .partition(|(s, t)| self.saved.get(s).is_none_or(|saved| saved < t));
        write.sort();
        check.sort();
        (write, check)
    }

    /// Writes `files` and checks the quiet services (on the caller's thread), and notes what
    /// moved away.
    pub fn write_all(
        dir: &Path,
        owner: &str,
        files: &[ServiceFile],
        check: &[(Arc<str>, u64)],
        moved: &Mutex<Vec<(Arc<str>, String)>>,
    ) {
        let note = |service: Arc<str>, to: String| {
            moved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((service, to))
        };
        for f in files {
            match write(dir, f) {
                Ok(Written::Saved) => {}
                Ok(Written::MovedTo(to)) => note(f.service.as_str().into(), to),
                Err(e) => {
                    tracing::warn!(error = %e, "saving a service's models to the store failed")
                }
            }
        }
        for (service, traffic_ns) in check {
            if let Some(to) = taken_by(dir, service, owner, *traffic_ns) {
                note(service.clone(), to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(owner: &str, traffic_ns: u64) -> ServiceFile {
        ServiceFile {
            format: FORMAT.into(),
            version: VERSION,
            service: "checkout".into(),
            owner: owner.into(),
            traffic_ns,
            series: Vec::new(),
        }
    }

    #[test]
    fn the_instance_with_the_latest_traffic_owns_a_service() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "checkout").unwrap(), None);
        assert_eq!(write(dir.path(), &file("a", 10)).unwrap(), Written::Saved);
        // b has seen the service since: it takes it over.
        assert_eq!(write(dir.path(), &file("b", 20)).unwrap(), Written::Saved);
        // a's later save, with older traffic, finds it moved and writes nothing.
        assert_eq!(
            write(dir.path(), &file("a", 15)).unwrap(),
            Written::MovedTo("b".into())
        );
        assert_eq!(read(dir.path(), "checkout").unwrap(), Some(file("b", 20)));
        // The owner itself always writes; another service's file is another file.
        assert_eq!(write(dir.path(), &file("b", 21)).unwrap(), Written::Saved);
        assert_eq!(read(dir.path(), "cart").unwrap(), None);
        assert_ne!(path_of(dir.path(), "checkout"), path_of(dir.path(), "cart"));
    }

    #[test]
    fn a_file_of_another_format_is_an_error_not_a_model() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            path_of(dir.path(), "checkout"),
            r#"{"format":"x","version":9,"service":"checkout","owner":"a","traffic_ns":1}"#,
        )
        .unwrap();
        assert!(matches!(
            read(dir.path(), "checkout"),
            Err(ModelError::Version { .. })
        ));
    }
}
