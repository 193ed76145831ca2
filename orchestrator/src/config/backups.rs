//! `[sites.X]` cold-site backup objectives: each needs the directory it measures, and none may
//! be zero; refused at load with file:line:column otherwise.

use super::raw::RawSite;
use super::{ConfigError, Loader};
use crate::topology::backups::Objectives;

impl Loader<'_> {
    pub(super) fn backup_objectives(&self, s: &RawSite) -> Result<Objectives, ConfigError> {
        let checks = [
            (
                &s.max_base_backup_age,
                s.backup_dir.is_some(),
                "max_base_backup_age",
                "backup_dir",
            ),
            (
                &s.max_wal_archive_age,
                s.wal_archive.is_some(),
                "max_wal_archive_age",
                "wal_archive",
            ),
        ];
        for (key, has_dir, name, dir) in checks {
            if let (Some(k), false) = (key, has_dir) {
                return Err(self.err(
                    k.span(),
                    format!("{name} needs {dir} on the same site: say where the backups it measures live"),
                ));
            }
        }
        let mut out = Objectives::default();
        for (key, slot, name) in [
            (
                &s.max_base_backup_age,
                &mut out.max_base_backup_age,
                "max_base_backup_age",
            ),
            (
                &s.max_wal_archive_age,
                &mut out.max_wal_archive_age,
                "max_wal_archive_age",
            ),
            (
                &s.max_restore_test_age,
                &mut out.max_restore_test_age,
                "max_restore_test_age",
            ),
        ] {
            if let Some(k) = key {
                if k.get_ref().0.is_zero() {
                    return Err(
                        self.err(k.span(), format!("{name} must be more than 0, like \"2h\""))
                    );
                }
                *slot = Some(k.get_ref().0);
            }
        }
        Ok(out)
    }
}
