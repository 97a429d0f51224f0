//! The cluster state on disk: one small JSON document under `meta/`,
//! replaced atomically (write, fsync, rename, fsync the directory).
//! Blocking: the controller calls [`save`] off its executor.

use std::io::Write;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::state::ClusterMeta;
use crate::error::{BrokerError, IoContext, Result};

const FILE: &str = "cluster.json";

pub fn meta_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meta")
}

/// Reads the state, or starts a new cluster id for an empty data dir.
pub fn load_or_init(data_dir: &Path) -> Result<ClusterMeta> {
    let path = meta_dir(data_dir).join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::Parse {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meta = ClusterMeta::empty(&Uuid::new_v4().simple().to_string()[..22]);
            save(&meta, data_dir)?;
            Ok(meta)
        }
        Err(e) => Err(BrokerError::io(format!("reading {}", path.display()), e)),
    }
}

/// Durably replaces the stored state.
pub fn save(meta: &ClusterMeta, data_dir: &Path) -> Result<()> {
    let dir = meta_dir(data_dir);
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let json = serde_json::to_vec_pretty(meta).expect("the state serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().context(|| format!("saving {}", dir.join(FILE).display()))
}
