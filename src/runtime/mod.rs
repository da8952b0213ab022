//! TEMP stub of the runtime (the real one lands from the `runtime` branch; drop this file at
//! merge).

/// Runs the switch until shutdown.
pub async fn serve(config: crate::config::Config) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("the switch runtime is not in this build (TEMP stub)")
}
