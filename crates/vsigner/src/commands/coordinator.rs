//! `vsigner coordinator`: the coordinator with its logs on stderr (text, filtered by
//! `RUST_LOG`, `info` by default), so that broker trouble, refused requests and its shutdown
//! are seen.

/// Runs `vsigner coordinator …` (serve or `init`) on a multi-threaded runtime.
pub(crate) fn run(args: vsigner_coordinator::CoordinatorArgs) -> anyhow::Result<()> {
    let _logs = vsigner_signer::telemetry::init_stderr("info")?;
    tokio::runtime::Runtime::new()?.block_on(vsigner_coordinator::run(args))
}
