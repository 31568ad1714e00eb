//! One module per subcommand.

pub(crate) mod api_clients;
pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod broker;
pub(crate) mod client;
pub(crate) mod console;
pub(crate) mod coordinator;
pub(crate) mod demo;
pub(crate) mod dev;
pub(crate) mod keystore;
pub(crate) mod passphrase;
pub(crate) mod primes;
pub(crate) mod recipient;
pub(crate) mod recover;
