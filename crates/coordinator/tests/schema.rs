//! The committed `schema.graphql` must match the code.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn schema_graphql_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = vsigner_coordinator::graphql::schema_sdl();
    if std::env::var_os("VSIGNER_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "crates/coordinator/schema.graphql is out of date with the code; regenerate it with\n\
         VSIGNER_UPDATE_SCHEMA=1 cargo test -p vsigner-coordinator --test schema\nand commit it"
    );
}
