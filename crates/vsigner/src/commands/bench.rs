//! `vsigner bench`.

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
