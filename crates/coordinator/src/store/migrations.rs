//! The schema migrations, embedded in the binary and run at start.
//!
//! They are listed here rather than found by `sqlx::migrate!`: the macro would build a
//! second copy of the SQL drivers (and of SQLite's C source) for the compiler. Each
//! migration is `(version, description, SQL)` exactly as `sqlx` reads a file
//! `<version>_<description>.sql`, so the checksums stored in `_sqlx_migrations` are the
//! same; a test checks that every file in `migrations/` is listed.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlStr;

use super::Backend;

type Listed = (i64, &'static str, &'static str);

const SQLITE: &[Listed] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (
        2,
        "unique identity keys",
        include_str!("../../migrations/sqlite/0002_unique_identity_keys.sql"),
    ),
    (
        3,
        "idempotency per client",
        include_str!("../../migrations/sqlite/0003_idempotency_per_client.sql"),
    ),
    (
        4,
        "device records",
        include_str!("../../migrations/sqlite/0004_device_records.sql"),
    ),
    (
        5,
        "api client rotation",
        include_str!("../../migrations/sqlite/0005_api_client_rotation.sql"),
    ),
    (
        6,
        "human approvals",
        include_str!("../../migrations/sqlite/0006_human_approvals.sql"),
    ),
    (
        7,
        "console",
        include_str!("../../migrations/sqlite/0007_console.sql"),
    ),
    (
        8,
        "free presignatures",
        include_str!("../../migrations/sqlite/0008_free_presignatures.sql"),
    ),
];

const POSTGRES: &[Listed] = &[
    (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        "unique identity keys",
        include_str!("../../migrations/postgres/0002_unique_identity_keys.sql"),
    ),
    (
        3,
        "idempotency per client",
        include_str!("../../migrations/postgres/0003_idempotency_per_client.sql"),
    ),
    (
        4,
        "device records",
        include_str!("../../migrations/postgres/0004_device_records.sql"),
    ),
    (
        5,
        "api client rotation",
        include_str!("../../migrations/postgres/0005_api_client_rotation.sql"),
    ),
    (
        6,
        "human approvals",
        include_str!("../../migrations/postgres/0006_human_approvals.sql"),
    ),
    (
        7,
        "console",
        include_str!("../../migrations/postgres/0007_console.sql"),
    ),
    (
        8,
        "free presignatures",
        include_str!("../../migrations/postgres/0008_free_presignatures.sql"),
    ),
];

fn listed(backend: Backend) -> &'static [Listed] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The migrator of `backend`'s schema.
pub(super) fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        listed(backend)
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Every file of `migrations/<backend>/` is listed, with the version and description
    /// `sqlx` derives from its name and the same SQL.
    #[test]
    fn every_migration_file_is_listed() {
        for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
                    let (version, description) = name.split_once('_').unwrap();
                    (
                        version.parse().unwrap(),
                        description.replace('_', " "),
                        std::fs::read_to_string(&p).unwrap(),
                    )
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = listed(backend)
                .iter()
                .map(|&(v, d, s)| (v, d.to_owned(), s.to_owned()))
                .collect();
            assert_eq!(listed, files, "migrations/{dir}");
        }
    }
}
