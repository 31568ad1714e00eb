//! Transport tests: real protocols among devices over real brokers (the embedded rumqttd and
//! the Mosquitto at `VSIGNER_TEST_MQTT_URL`), and a hostile broker / participant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adversarial;
mod common;
mod private_broker;
mod protocols;
mod restart;
mod tls;
