//! Which off-site targets hold a complete copy of which backup, and each target's last
//! failure (`offsite`): kept in the set so `status` answers without the network.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

const RECORD: &str = ".pgmirror-offsite.json";

/// Per target: the backups it holds whole, and the last failure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OffsiteRecord {
    pub targets: BTreeMap<String, TargetRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetRecord {
    pub complete: Vec<String>,
    pub last_error: Option<String>,
    pub last_error_time: Option<String>,
}

impl OffsiteRecord {
    pub fn load(dir: &Path) -> OffsiteRecord {
        super::read_record(dir, RECORD).unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::compress::write_private_json(&dir.join(RECORD), self)
    }

    /// The names of the targets holding backup `id` whole.
    pub fn holders(&self, id: &str) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, t)| t.complete.iter().any(|c| c == id))
            .map(|(name, _)| name.clone())
            .collect()
    }
}
