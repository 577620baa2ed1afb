//! The AWF simulator run inside the collector process by a config's `[awf_simulator]` section
//! (the embedded default config does, for demos). Present with the `awf-sim` cargo feature
//! (on by default); without it the section is refused with a reason.

#[cfg(feature = "awf-sim")]
pub use sluice_awf_sim::{SimConfig, SimHandle, start_simulator};

#[cfg(not(feature = "awf-sim"))]
pub use absent::{SimConfig, SimHandle, start_simulator};

#[cfg(not(feature = "awf-sim"))]
mod absent {
    use std::net::SocketAddr;

    const REASON: &str =
        "this sluice was built without the AWF simulator (cargo feature `awf-sim`)";

    /// Never built: deserializing refuses the section.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SimConfig {
        pub listen: SocketAddr,
    }

    impl<'de> serde::Deserialize<'de> for SimConfig {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(serde::de::Error::custom(REASON))
        }
    }

    impl SimConfig {
        pub fn validate(&self) -> Result<(), sluice_core::InvalidConfig> {
            Ok(())
        }
    }

    pub struct SimHandle;

    impl SimHandle {
        pub fn base_url(&self) -> String {
            String::new()
        }

        pub async fn stop(self) -> anyhow::Result<()> {
            Ok(())
        }
    }

    pub async fn start_simulator(_: SimConfig) -> anyhow::Result<SimHandle> {
        Err(anyhow::anyhow!(REASON))
    }
}
